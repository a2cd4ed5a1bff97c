"""Driving the App by keys, as an operator would."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from rich.cells import cell_len
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static
from textual.worker import WorkerCancelled

LONG_LIVED = ("plc", "monitor", "batch", "deviations", "qa")
"""Workers that run for the App's lifetime or wait on dialogs (never waited for here)."""


async def settle(pilot: Pilot[None]) -> None:
    """Let thread workers finish and their results be painted. The screen on top is let
    mount first: its on_mount starts the workers that load it (on a busy machine a screen
    just pushed may not have mounted yet, and its table would be pictured before its rows)."""
    for _ in range(500):
        if pilot.app.screen.is_mounted:
            break
        await pilot.pause()  # waits for the screen's pending messages, its Mount among them
    for _ in range(3):
        for worker in [w for w in pilot.app.workers if w.group not in LONG_LIVED]:
            # cancelled: its screen closed as the result arrived (a login, a dismissed
            # dialog); the result was delivered before the screen went, nothing was lost
            with suppress(WorkerCancelled):
                await worker.wait()
        await pilot.pause()
    await tables_measured(pilot)


async def tables_measured(pilot: Pilot[None]) -> None:
    """Wait until every table on screen has measured its new rows and the screen has painted
    them: a table sizes its columns when its message queue is empty, which on a busy machine
    can come after the workers are done (a picture taken before shows header-wide columns);
    and only the screen on top repaints, so a dialog opened before the screen under it has
    painted shows it as it was, for as long as the dialog is open."""
    for _ in range(500):
        # every screen of the stack: a dialog's picture shows the screen behind it
        tables = [t for screen in pilot.app.screen_stack for t in screen.query(DataTable)]
        if all(_measured(t) for t in tables) and _painted(pilot.app.screen):
            return
        await pilot.pause(0.02)
    raise AssertionError("a table on screen did not finish measuring its rows")


def _painted(screen: Screen[Any]) -> bool:
    """No layout, scroll, repaint or widget update pending on the screen (Textual's own
    flags, cleared when its compositor has drawn them); an App that is closing paints nothing
    more, so there is nothing to wait for."""
    if screen.app._exit:
        return True
    return not (
        screen._layout_required
        or screen._scroll_required
        or screen._repaint_required
        or screen._recompose_required
        or screen._dirty_widgets
    )


def _measured(table: DataTable[Any]) -> bool:
    """No measurement pending, and every auto-width column as wide as its widest cell (rows
    replaced after a measurement show header-wide columns until the next one)."""
    if table._require_update_dimensions or table._updated_cells:
        return False
    for key, column in table.columns.items():
        if not column.auto_width:
            continue
        widest = max((cell_len(str(cell)) for cell in table.get_column(key)), default=0)
        if column.content_width < widest:
            return False
    return True


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = text
    await pilot.pause()


async def login(pilot: Pilot[None], user_id: str, password: str, totp: str = "") -> None:
    """Log in at the login screen and wait for the outcome: the home screen shown and its
    data loaded, or the login screen's answer (a refusal, a password change dialog)."""
    import asyncio

    from hmi.screens.login import LoginScreen

    start = pilot.app.screen
    assert isinstance(start, LoginScreen), f"not at the login screen: {start!r}"
    await type_into(pilot, "#user-id", user_id)
    await type_into(pilot, "#password", password)
    await type_into(pilot, "#totp", totp)
    await pilot.press("f2")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    # accepted: the home screen is pushed by a message the App handles after the worker ends,
    # which on a busy machine can outlast the rounds of settle()
    while start.busy or (start.accepted and start.is_attached):
        assert loop.time() < deadline, "the login did not finish within 30 s"
        await pilot.pause()  # until the App has handled what is pending, then look again
    await settle(pilot)


def text_of(pilot: Pilot[None], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())


async def idle_group(pilot: Pilot[None], group: str, timeout: float = 30.0) -> None:
    """Wait until no worker of ``group`` runs (a batch action finished or opened a dialog)."""
    import asyncio

    from textual.screen import ModalScreen

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while any(w.group == group and w.is_running for w in pilot.app.workers):
        if isinstance(pilot.app.screen, ModalScreen) or loop.time() > deadline:
            return
        await pilot.pause(0.05)
    await settle(pilot)
