"""An authenticated exporter for the audit CLI tests: exports say who made them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import build_auth_services
from hmi.auth.totp import code_at, new_secret
from hmi.auth.users import IdentityVerification
from hmi.clock import ManualClock
from hmi.site import Site

EXPORTER_PASSWORD = "violet tractor seventeen"


@dataclass
class Exporter:
    user_id: str
    secret: str
    logins: int = 0


@pytest.fixture
def exporter(site: Site, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Exporter:
    """The site's administrator (may export); the CLI runs on the test clock and its prompts
    are answered with the administrator's credentials and a fresh code each time."""
    auth = build_auth_services(
        site.settings, site.engine, site.audit, clock, argon2=Argon2Parameters(1, 8, 1)
    )
    secret = new_secret()
    auth.users.create_first_admin(
        user_id="ada",
        full_name="Ada Admin",
        password=EXPORTER_PASSWORD,
        identity=IdentityVerification("HR officer P. Reyes", "ID card checked"),
        totp_secret=secret,
        totp_code=code_at(secret, clock.now()),
    )
    who = Exporter("ada", secret)

    def answer(prompt: str) -> str:
        if "user ID" in prompt:
            who.logins += 1
            return who.user_id
        if prompt.startswith("Password"):
            return EXPORTER_PASSWORD
        if "code" in prompt.lower():
            clock.advance(30)  # a code is never accepted twice
            return code_at(secret, clock.now())
        raise AssertionError(f"unexpected prompt {prompt!r}")

    monkeypatch.setattr("hmi.site.SystemClock", lambda: clock)
    monkeypatch.setattr("hmi.commands.users.ask", answer)
    monkeypatch.setattr("hmi.commands.users.ask_secret", answer)
    return who
