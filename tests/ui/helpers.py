"""Driving the App by keys, as an operator would."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input, Static


LONG_LIVED = ("plc", "monitor")
"""Workers that run for the App's lifetime (never waited for)."""


async def settle(pilot: Pilot[None]) -> None:
    """Let thread workers finish and their results be painted."""
    for _ in range(3):
        busy = [w for w in pilot.app.workers if w.group not in LONG_LIVED]
        if busy:  # an empty list would mean "every worker"
            await pilot.app.workers.wait_for_complete(busy)
        await pilot.pause()


async def type_into(pilot: Pilot[None], selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = text
    await pilot.pause()


async def login(pilot: Pilot[None], user_id: str, password: str, totp: str = "") -> None:
    await type_into(pilot, "#user-id", user_id)
    await type_into(pilot, "#password", password)
    await type_into(pilot, "#totp", totp)
    await pilot.press("f2")
    await settle(pilot)


def text_of(pilot: Pilot[None], selector: str) -> str:
    return str(pilot.app.screen.query_one(selector, Static).render())
