"""Fixtures for the Pilot tests: a real site with the demo cast (cheap argon2, tests only),
a fixed clock and time zone, and helpers to drive the App."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

import pytest
from sqlalchemy import select

from hmi.app import HmiApp, make_app
from hmi.audit.tables import audit_event
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.totp import code_at
from hmi.demo import DemoUser, seed_demo_site
from hmi.screens.context import DemoAccount
from hmi.site import Site

#: Far below the product floor: for tests only, never in a site configuration.
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@dataclass
class Kiosk:
    """A seeded site, its services and the demo cast (user ID -> DemoUser)."""

    site: Site
    auth: AuthServices
    users: dict[str, DemoUser]

    def app(self, **kwargs: object) -> HmiApp:
        accounts = tuple(
            DemoAccount(u.user_id, u.role, u.password, u.totp_secret) for u in self.users.values()
        )
        options: dict[str, object] = {"tz": UTC, "watch_idle": False, "demo_accounts": accounts}
        options.update(kwargs)
        return make_app(self.site, auth=self.auth, **options)  # type: ignore[arg-type]

    def code(self, user_id: str) -> str:
        secret = self.users[user_id].totp_secret
        assert secret is not None
        return code_at(secret, self.site.clock.now())

    def actions(self) -> list[str]:
        with self.site.engine.connect() as conn:
            return [
                r[0] for r in conn.execute(select(audit_event.c.action).order_by(audit_event.c.id))
            ]


@pytest.fixture
def kiosk(site: Site) -> Iterator[Kiosk]:
    users = {u.user_id: u for u in seed_demo_site(site, argon2=CHEAP_ARGON2)}
    auth = build_auth_services(
        site.settings, site.engine, site.audit, site.clock, argon2=CHEAP_ARGON2
    )
    yield Kiosk(site, auth, users)
