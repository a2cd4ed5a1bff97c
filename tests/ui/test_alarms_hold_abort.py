"""Alarms (banner, acknowledge, shelve with a reason) and hold/abort from the batch screen."""

from __future__ import annotations

from textual.widgets import Input, Select

from hmi.alarms.service import AlarmService
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.screens.alarms import AlarmsScreen
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.modals.deviation import DeviationDialog
from hmi.screens.modals.form import FormDialog
from plc_sim.server import SimulatorThread
from tests.ui.conftest import Kiosk, PlcClient
from tests.ui.helpers import idle_group, login, settle, text_of
from tests.ui.test_batch_flow import wait_until


async def open_screen(pilot: object, number: str) -> None:
    app = pilot.app  # type: ignore[attr-defined]
    await app.run_action("menu")
    await pilot.pause()  # type: ignore[attr-defined]
    await pilot.press(number)  # type: ignore[attr-defined]
    await settle(pilot)  # type: ignore[arg-type]


async def test_alarm_banner_acknowledge_and_shelve(kiosk: Kiosk) -> None:
    app = kiosk.app()
    alarms = app.ctx.alarms
    assert isinstance(alarms, AlarmService)
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "maint", kiosk.users["maint"].password, kiosk.code("maint"))
        alarms.raise_alarm("HIGH_TEMP", "Product temperature high", 700)
        alarms.raise_alarm("MOTOR_OVERLOAD", "Motor current above limit", 900)
        app.refresh_status()
        await settle(pilot)
        banner = text_of(pilot, "#alarm-banner")
        assert banner.startswith("ALARM: MOTOR_OVERLOAD Motor current above limit (+1 more)")
        assert "2 unack" in str(app.screen.query_one("#header-text").render())
        await open_screen(pilot, "4")
        assert isinstance(app.screen, AlarmsScreen)
        assert [r.code for r in app.screen.rows] == ["MOTOR_OVERLOAD", "HIGH_TEMP"]
        await pilot.press("f2")  # acknowledge the selected (most severe) alarm
        await settle(pilot)
        first = alarms.get(app.screen.rows[0].alarm_id)
        assert first.acknowledged_by == "maint"
        assert "active, acknowledged" in app.screen.query_one("#alarms-table").get_row_at(0)[4]
        app.screen.query_one("#alarms-table").move_cursor(row=1)  # type: ignore[attr-defined]
        await pilot.press("f3")  # shelve: a bounded time and a reason
        await pilot.pause()
        assert isinstance(app.screen, FormDialog)
        app.screen.query_one("#field-minutes", Input).value = "100000"
        app.screen.query_one("#field-reason", Input).value = "sensor replaced, WO-1234"
        await pilot.press("f2")
        await settle(pilot)
        notes = [n.message for n in app._notifications]  # type: ignore[attr-defined]
        assert notes == ["An alarm can be shelved for 1 to 480 minutes."]
        assert not alarms.get(app.screen.rows[1].alarm_id).shelved
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#field-minutes", Input).value = "30"
        app.screen.query_one("#field-reason", Input).value = "sensor replaced, WO-1234"
        await pilot.press("f2")
        await settle(pilot)
        shelved = next(r for r in alarms.history() if r.code == "HIGH_TEMP")
        assert shelved.shelved and shelved.shelve_reason == "sensor replaced, WO-1234"
    actions = kiosk.actions()
    assert "alarm.acknowledged" in actions and "alarm.shelved" in actions


async def test_hold_by_operator_abort_by_supervisor(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        batches.start_batch(kiosk.auth.sessions.current, "PARA500-FB", 4, "B-UI-0002")
        await open_screen(pilot, "3")
        assert isinstance(app.screen, BatchRunScreen)
        assert app.screen.check_action("abort", ()) is False  # operators do not abort
        assert app.screen.check_action("hold", ()) is True
        screen = app.screen
        # One key holds at once; the reason is asked right after, before anything else.
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(app.screen, DeviationDialog), "hold reason")
        assert batches.get("B-UI-0002").status is BatchStatus.HELD  # held before any typing
        [hold] = batches.deviations("B-UI-0002")
        assert hold.kind is DeviationKind.HOLD and hold.reason_text is None and hold.blocking
        app.screen.query_one("#reason-code", Select).value = "MATERIAL"
        app.screen.query_one("#reason-text", Input).value = "granulate lot on QA hold"
        await pilot.press("f2")
        await settle(pilot)
        await wait_until(pilot, lambda: app.screen is screen, "back to the batch")
        [hold] = batches.deviations("B-UI-0002")
        assert (hold.reason_code, hold.reason_text) == ("MATERIAL", "granulate lot on QA hold")
        assert not hold.blocking
        assert text_of(pilot, "#batch-message") == (
            "Batch B-UI-0002 is held. A supervisor resumes it (F6 when logged in)."
        )
        assert app.screen.check_action("hold", ()) is None  # held: Hold is greyed out
        await pilot.press("f12")
        await settle(pilot)
        await pilot.press("f3")
        await settle(pilot)
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(
            pilot, "supervisor", kiosk.users["supervisor"].password, kiosk.code("supervisor")
        )
        await open_screen(pilot, "3")
        assert "HELD" in text_of(pilot, "#batch-title")
        assert app.screen.check_action("resume", ()) is True
        assert app.screen.check_action("hold", ()) is None
        # a reason too short is said in the dialog, which keeps what was written
        await pilot.press("f6")
        await pilot.pause()
        app.screen.query_one("#field-text", Input).value = "ok now"
        await pilot.press("f2")
        await pilot.pause()
        assert "Explain the reason in" in text_of(pilot, "#form-message")
        assert app.screen.query_one("#field-text", Input).value == "ok now"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, BatchRunScreen)
        await pilot.press("f7")
        await pilot.pause()
        app.screen.query_one("#field-code", Input).value = "MATERIAL"
        app.screen.query_one("#field-text", Input).value = "granulate lot rejected by QA"
        await pilot.press("f2")
        await pilot.pause()
        await idle_group(pilot, "batch")
        assert batches.get("B-UI-0002").status is BatchStatus.ABORTED
    actions = kiosk.actions()
    assert "batch.held" in actions and "batch.aborted" in actions
