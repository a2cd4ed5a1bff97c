"""One snapshot per screen at 80x24 (fixed clock, fixed time zone, fixed demo secrets, no
PLC so nothing moves). Update with ``pytest tests/ui/test_snapshots.py --snapshot-update``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from hmi.screens.context import DemoAccount
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle

SIZE = (80, 24)


@pytest.fixture(autouse=True)
def steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor is caught on or off at random: keep it on for the pictures."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)


FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
BANNER = (
    DemoAccount("operator", "operator", "copper-lantern-meadow-42"),
    DemoAccount("supervisor", "supervisor", "violet-harbor-engine-7", FIXED_SECRET),
)


def as_operator(then: str | None = None) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        kiosk: Kiosk = pilot.app.kiosk  # type: ignore[attr-defined]
        await login(pilot, "operator", kiosk.users["operator"].password)
        if then is not None:
            await pilot.app.run_action("menu")
            await pilot.pause()
            await pilot.press(then)
        await settle(pilot)

    return run


def as_user(user: str, then: str | None = None) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run(pilot: Pilot[None]) -> None:
        kiosk: Kiosk = pilot.app.kiosk  # type: ignore[attr-defined]
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, user, kiosk.users[user].password, kiosk.code(user))
        if then is not None:
            await pilot.app.run_action("menu")
            await pilot.pause()
            await pilot.press(then)
        await settle(pilot)

    return run


def make(kiosk: Kiosk) -> Any:
    app = kiosk.app(demo_accounts=BANNER)
    app.kiosk = kiosk  # type: ignore[attr-defined]
    return app


async def settle_only(pilot: Pilot[None]) -> None:
    await settle(pilot)


async def locked(pilot: Pilot[None]) -> None:
    await as_operator()(pilot)
    await pilot.press("f12")
    await settle(pilot)


async def menu(pilot: Pilot[None]) -> None:
    await as_operator()(pilot)
    await pilot.press("f1")
    await settle(pilot)


async def audit_trail(pilot: Pilot[None]) -> None:
    await as_user("qa", "7")(pilot)
    pilot.app.screen.query_one("#f-action").value = "user.created"  # type: ignore[attr-defined]
    await pilot.press("f2")
    # The chain check runs in a thread: under load it can outlast settle(); wait for its verdict.
    for _ in range(200):
        await settle(pilot)
        if not getattr(pilot.app.screen, "verifying", False):
            break
        await pilot.pause(0.05)
    assert not getattr(pilot.app.screen, "verifying", False), "verification did not finish"
    await settle(pilot)


@pytest.mark.parametrize(
    ("name", "run_before"),
    [
        ("login", settle_only),
        ("overview", as_operator()),
        ("menu", menu),
        ("recipes", as_operator("2")),
        ("batch", as_operator("3")),
        ("alarms", as_operator("4")),
        ("lock", locked),
        ("qa_review", as_user("qa", "5")),
        ("users", as_user("admin")),
        ("service_mode", as_user("maint", "6")),
        ("audit_trail", audit_trail),
    ],
)
def test_screen(
    name: str, run_before: Any, kiosk: Kiosk, snap_compare: Callable[..., bool]
) -> None:
    assert snap_compare(make(kiosk), terminal_size=SIZE, run_before=run_before)
