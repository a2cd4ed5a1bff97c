"""On a demo site the operator's hands are the simulator's: Ctrl+B opens the lid and tips in
the charge, each recorded as a PLC command of the batch; production sites never offer it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from textual.widgets import OptionList, Static

from hmi.audit.tables import audit_event
from hmi.batch.tables import plc_command
from hmi.clock import ManualClock
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.modals.choice import ChoiceDialog
from hmi.screens.modals.demo_codes import DemoCodesDialog
from hmi.site import Site, init_site, open_site
from plc_sim.server import SimulatorThread
from tests.ui.conftest import Kiosk, PlcClient
from tests.ui.helpers import idle_group, login, settle, text_of
from tests.ui.test_batch_flow import wait_until
from tests.ui.test_excursion import BATCH, through_line_clearance


@pytest.fixture
def site(site_dir: Path, clock: ManualClock) -> Iterator[Site]:
    """A demo site (the kiosk fixture seeds its demo cast on it)."""
    init_site(site_dir, terminal_id="KIOSK-01", site_name="Demo", mode="demo", clock=clock).close()
    opened = open_site(site_dir, clock=clock)
    yield opened
    opened.close()


async def by_hand(pilot: object, app: object, key: str) -> None:
    await pilot.press("ctrl+b")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    dialog = app.screen  # type: ignore[attr-defined]
    assert isinstance(dialog, ChoiceDialog), dialog
    options = dialog.query_one(OptionList)
    ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
    options.highlighted = ids.index(key)
    await pilot.press("enter")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    await idle_group(pilot, "batch")  # type: ignore[arg-type]


async def test_demo_operator_opens_the_lid_and_charges_by_hand(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None and app.ctx.demo
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await wait_until(pilot, lambda: app.ctx.plc_state.value == "connected", "PLC")
        await through_line_clearance(kiosk, app)
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BatchRunScreen)
        screen.reload()
        await wait_until(
            pilot,
            lambda: screen.current is not None and screen.current.step_id == "charge-granulate",
            "charge step",
        )
        await pilot.press("f2")  # start: tare
        await pilot.pause()
        await idle_group(pilot, "batch")
        await wait_until(pilot, lambda: app.ctx.values.get("lid_closed") is not None, "lid tag")
        await by_hand(pilot, app, "open-lid")
        assert text_of(pilot, "#batch-message") == "Lid opened."
        await wait_until(
            pilot,
            lambda: getattr(app.ctx.values.get("lid_closed"), "value", None) is False,
            "lid open on the PLC",
        )
        await by_hand(pilot, app, "charge")
        assert "180" in text_of(pilot, "#batch-message")
        screen.query_one("#in-lot").value = "IG-2026-0042"  # type: ignore[attr-defined]
        for _ in range(100):  # the charge settles on the load cell
            await pilot.press("f3")
            await pilot.pause()
            await idle_group(pilot, "batch")
            screen.reload()
            await settle(pilot)
            if screen.current is not None and screen.current.step_id != "charge-granulate":
                break
            await asyncio.sleep(0.2)
        assert screen.current is not None and screen.current.step_id == "charge-mgst"
    assert batches.get(BATCH).current_step == 2
    assert batches.deviations(BATCH) == [], "the target charged: nothing deviated"
    with kiosk.site.engine.connect() as conn:
        commands = [
            (r.command, r.arguments, r.intent_by)
            for r in conn.execute(select(plc_command).where(plc_command.c.batch_id == BATCH))
        ]
        events = [
            json.loads(r[0]) if isinstance(r[0], str) else r[0]
            for r in conn.execute(
                select(audit_event.c.details).where(audit_event.c.action.like("batch.plc.command%"))
            )
        ]
    assert ("open_lid", '{"args":[]}', "operator") in commands
    assert ("charge", '{"args":["180.0"]}', "operator") in commands
    assert any(e.get("command") == "charge" for e in events)


async def test_demo_codes_on_any_screen(kiosk: Kiosk) -> None:
    """A co-signature needs the supervisor's live code: Ctrl+O shows it over any screen."""
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        before = app.screen
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert isinstance(app.screen, DemoCodesDialog)
        shown = str(app.screen.query_one("#demo-codes-banner").render())
        assert f"code {kiosk.code('supervisor')}" in shown
        assert str(kiosk.site.data_dir) in text_of(pilot, "#demo-codes-where")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is before


async def test_quitting_a_throwaway_demo_says_it_is_deleted(kiosk: Kiosk) -> None:
    app = kiosk.app(quit_warning="This demo site and its batches are deleted when the HMI closes.")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
        shown = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "You will be logged out." in shown and "are deleted when the HMI closes" in shown
