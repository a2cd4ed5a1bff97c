"""Fixtures for recipe lifecycle tests: real auth services, real accounts, one recipe service.

Accounts are created through the auth package's public services (first administrator, then
users with confirmed authenticators), with cheap argon2 parameters (tests only). Each TOTP
code is taken one 30 s step later than the previous one, so a code is never replayed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.sessions import Session
from hmi.auth.totp import code_at, new_secret
from hmi.auth.users import IdentityVerification
from hmi.clock import ManualClock
from hmi.recipe.service import RecipeService
from hmi.services import build_services
from hmi.site import Site

CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=1024, parallelism=1)
REPO_RECIPES = Path(__file__).resolve().parents[3] / "recipes"
IDENTITY = IdentityVerification("HR desk", "ID card checked against the HR file")


@dataclass
class Person:
    user_id: str
    password: str
    totp_secret: str | None


class People:
    """The site's accounts, and logging them in with fresh authenticator codes."""

    def __init__(self, auth: AuthServices, clock: ManualClock) -> None:
        self.auth = auth
        self.clock = clock
        secret = new_secret()
        self.admin = Person("admin1", "Adm1n-staple-orbit-77", secret)
        auth.users.create_first_admin(
            user_id="admin1",
            full_name="Ada Admin",
            password=self.admin.password,
            identity=IDENTITY,
            totp_secret=secret,
            totp_code=code_at(secret, clock.now()),
        )
        self._admin_session = self.login(self.admin)
        self.qa = self._create("qa1", "Quinn Quality", "qa", "Qa-lantern-pebble-58")
        self.qa2 = self._create("qa2", "Rita Review", "qa", "Qa2-marble-quartz-31")
        self.supervisor = self._create(
            "sup1", "Sam Supervisor", "supervisor", "Sup-violet-anchor-62"
        )
        self.operator = self._create(
            "op1", "Olga Operator", "operator", "operator-long-walnut-harbour-19"
        )
        auth.sessions.logout(self._admin_session)

    def code(self, person: Person) -> str:
        """The next authenticator code (one step later than any code used before)."""
        assert person.totp_secret is not None
        self.clock.advance(30)
        return code_at(person.totp_secret, self.clock.now())

    def login(self, person: Person) -> Session:
        code = self.code(person) if person.totp_secret else None
        return self.auth.sessions.login(person.user_id, person.password, code)

    def _create(self, user_id: str, name: str, role: str, password: str) -> Person:
        session = self._admin_session
        self.auth.users.create_user(
            session,
            user_id=user_id,
            full_name=name,
            roles=[role],
            password=password,
            identity=IDENTITY,
            reason="new starter",
            temporary=False,
        )
        secret: str | None = None
        if role != "operator":
            pending = self.auth.users.begin_totp_enrolment(session, user_id, reason="new starter")
            secret = pending.secret
            self.auth.users.confirm_totp_enrolment(
                session, pending.enrolment_id, code_at(secret, self.clock.now())
            )
        return Person(user_id, password, secret)


@pytest.fixture
def auth(site: Site) -> AuthServices:
    return build_auth_services(
        site.settings, site.engine, site.audit, site.clock, argon2=CHEAP_ARGON2
    )


@pytest.fixture
def people(auth: AuthServices, clock: ManualClock) -> People:
    return People(auth, clock)


@pytest.fixture
def recipes(site: Site, auth: AuthServices) -> RecipeService:
    """The site's recipe service as the kiosk and the command line build it."""
    return build_services(site, auth=auth).recipes


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Iterator[Path]:
    """A copy of the shipped recipes that a test may edit."""
    target = tmp_path / "recipes"
    shutil.copytree(REPO_RECIPES, target)
    yield target
