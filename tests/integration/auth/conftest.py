"""Fixtures for the auth integration tests: a real site (SQLite file, keys, witness), the auth
services with cheap argon2 parameters (tests only), a cast of users, and an audit trail probe."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hmi.audit.checkpoint import WitnessFile
from hmi.audit.store import trusted_keys, verify_database
from hmi.audit.tables import audit_event
from hmi.audit.verify import Kind
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.roles import Role, roles_require_totp
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.sessions import Session
from hmi.auth.totp import code_at, new_secret
from hmi.auth.users import IdentityVerification
from hmi.clock import ManualClock
from hmi.site import Site, init_site, open_site

#: Far below the product floor: for tests only, never in a site configuration.
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)

ADMIN = "ada"
ADMIN_PASSWORD = "violet tractor seventeen"
IDENTITY = IdentityVerification("HR officer P. Reyes", "ID card checked against the HR file")

#: user ID -> (full name, roles, password); privileged ones get an authenticator.
CAST: dict[str, tuple[str, tuple[Role, ...], str]] = {
    "olga": ("Olga Operator", (Role.OPERATOR,), "granite penguin umbrella seven"),
    "otto": ("Otto Second-Operator", (Role.OPERATOR,), "copper walrus lantern nineteen"),
    "sam": ("Sam Supervisor", (Role.SUPERVISOR,), "quiet harbour 42 melon"),
    "quinn": ("Quinn Quality", (Role.QA,), "saffron glacier ferry 8"),
    "max": ("Max Maintenance", (Role.MAINTENANCE,), "rusty anvil orbit 77"),
    "vera": ("Vera Viewer", (Role.VIEWER,), "lavender canyon bicycle ninety"),
    "bob": ("Bob Backup-Admin", (Role.ADMIN,), "orchid meteor pylon 31"),
}


def chain_verifies(site: Site, inserted_outside: frozenset[str] = frozenset()) -> None:
    """The chain and every business row verify; ``inserted_outside`` names the tables a test
    wrote a row into behind the product's back, whose rows are then the only problems."""
    report = verify_database(
        site.engine,
        trusted=trusted_keys([site.settings.public_key_path]),
        witness=WitnessFile(site.settings.witness_path),
        workers=1,
    )
    unexpected = [
        p
        for p in report.problems
        if not (p.kind == Kind.ROW_INSERTED and p.message.split(" row ", 1)[0] in inserted_outside)
    ]
    assert not unexpected, [p.to_json() for p in unexpected]


class Trail:
    """Reads the audit events written since a mark; every check also verifies the chain."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.seq = 0
        self.mark()

    def mark(self) -> None:
        with self.site.engine.connect() as conn:
            self.seq = int(conn.execute(select(func.max(audit_event.c.seq))).scalar() or 0)

    def events(self) -> list[dict[str, Any]]:
        with self.site.engine.connect() as conn:
            rows = conn.execute(
                select(audit_event).where(audit_event.c.seq > self.seq).order_by(audit_event.c.seq)
            ).mappings()
            return [dict(r) for r in rows]

    def actions(self) -> list[str]:
        return [e["action"] for e in self.events()]

    def expect(self, *actions: str) -> list[dict[str, Any]]:
        """The exact actions recorded since the mark, in order; the chain verifies; re-mark."""
        events = self.events()
        assert [e["action"] for e in events] == list(actions)
        chain_verifies(self.site)
        self.mark()
        return events


@dataclass
class World:
    """The site, its auth services, the users' secrets and a clock to step."""

    site: Site
    auth: AuthServices  # the kiosk
    console: AuthServices  # an administrator's console (``hmi users``) on the same terminal
    clock: ManualClock
    trail: Trail
    secrets: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    admin: Session | None = None
    #: tables a test wrote into behind the product's back (reported by verify, on purpose)
    inserted_outside: set[str] = field(default_factory=set)

    def code(self, user_id: str, *, advance: bool = True) -> str:
        """The user's current TOTP code, one step later than the last one (codes never repeat)."""
        if advance:
            self.clock.advance(30)
        return code_at(self.secrets[user_id], self.clock.now())

    def password(self, user_id: str) -> str:
        """The user's password as created (tests that change it keep track themselves)."""
        return self.passwords[user_id]

    def login(
        self, user_id: str, *, role: Role | None = None, services: AuthServices | None = None
    ) -> Session:
        """Log in at the kiosk (or on ``services``) with the user's password and code."""
        target = services or self.auth
        needs = target.sessions.totp_needed(user_id)
        return target.sessions.login(
            user_id, self.password(user_id), self.code(user_id) if needs else None, role=role
        )

    def admin_session(self) -> Session:
        """The administrator's session on the console (kept across kiosk logins)."""
        if self.admin is not None:
            self.console.sessions.check_idle(self.admin)
        if self.admin is None or not self.admin.is_active:
            self.admin = self.login(ADMIN, services=self.console)
        return self.admin

    def add_user(
        self,
        user_id: str,
        *,
        roles: Sequence[Role] | None = None,
        password: str | None = None,
        temporary: bool = False,
        totp: bool | None = None,
    ) -> None:
        name, cast_roles, cast_password = CAST.get(user_id, (user_id.title() + " Person", (), ""))
        chosen = tuple(roles or cast_roles)
        self.passwords[user_id] = password or cast_password
        admin = self.admin_session()
        self.console.users.create_user(
            admin,
            user_id=user_id,
            full_name=name,
            roles=chosen,
            password=password or cast_password,
            identity=IDENTITY,
            reason="joins the line",
            temporary=temporary,
        )
        if totp if totp is not None else roles_require_totp(chosen):
            users = self.console.users
            pending = users.begin_totp_enrolment(admin, user_id, reason="new device")
            self.secrets[user_id] = pending.secret
            users.confirm_totp_enrolment(admin, pending.enrolment_id, self.code(user_id))


def _first_admin(site: Site, clock: ManualClock) -> World:
    auth = build_auth_services(site.settings, site.engine, site.audit, clock, argon2=CHEAP_ARGON2)
    console = build_auth_services(
        site.settings, site.engine, site.audit, clock, argon2=CHEAP_ARGON2
    )
    secret = new_secret()
    auth.users.create_first_admin(
        user_id=ADMIN,
        full_name="Ada Admin",
        password=ADMIN_PASSWORD,
        identity=IDENTITY,
        totp_secret=secret,
        totp_code=code_at(secret, clock.now()),
    )
    return World(
        site=site,
        auth=auth,
        console=console,
        clock=clock,
        trail=Trail(site),
        secrets={ADMIN: secret},
        passwords={ADMIN: ADMIN_PASSWORD},
    )


@pytest.fixture
def world(site: Site, clock: ManualClock) -> Iterator[World]:
    """A site with a first administrator (``ada``, with an authenticator) and nobody else."""
    world = _first_admin(site, clock)
    yield world
    chain_verifies(site, frozenset(world.inserted_outside))


@dataclass(frozen=True)
class _Template:
    path: Path
    now: datetime
    secrets: dict[str, str]
    passwords: dict[str, str]


@pytest.fixture(scope="session")
def cast_template(tmp_path_factory: pytest.TempPathFactory) -> _Template:
    """A site with the whole cast, built once per test process and copied for each test."""
    root = tmp_path_factory.mktemp("cast-template") / "site"
    clock = ManualClock(datetime(2026, 3, 2, 7, 30, 0, tzinfo=UTC))
    init_site(root, terminal_id="KIOSK-01", site_name="Test Site", clock=clock).close()
    site = open_site(root, clock=clock)
    try:
        world = _first_admin(site, clock)
        for user_id in CAST:
            world.add_user(user_id)
        assert world.admin is not None
        world.console.sessions.logout(world.admin)
        chain_verifies(site)
    finally:
        site.close()
    return _Template(root, clock.now(), dict(world.secrets), dict(world.passwords))


@pytest.fixture
def cast(cast_template: _Template, tmp_path: Path) -> Iterator[World]:
    """A site with a first administrator (``ada``) and the cast: two operators, a supervisor,
    QA, maintenance, a viewer and a second admin, all with their authenticators where their
    role needs one; nobody is logged in and the trail is marked."""
    target = tmp_path / "site"
    shutil.copytree(cast_template.path, target)
    clock = ManualClock(cast_template.now)
    site = open_site(target, clock=clock)
    world = World(
        site=site,
        auth=build_auth_services(
            site.settings, site.engine, site.audit, clock, argon2=CHEAP_ARGON2
        ),
        console=build_auth_services(
            site.settings, site.engine, site.audit, clock, argon2=CHEAP_ARGON2
        ),
        clock=clock,
        trail=Trail(site),
        secrets=dict(cast_template.secrets),
        passwords=dict(cast_template.passwords),
    )
    yield world
    chain_verifies(site, frozenset(world.inserted_outside))
    site.close()
