"""A fresh terminal started on a site with a batch in progress: the App recovers the batch at
start-up (after the PLC connects, or without it when it cannot be reached), the batch screen
shows it at the step it was on, and the audit trail records the restart."""

from __future__ import annotations

import json
import socket
from datetime import UTC
from typing import Any

from sqlalchemy import select

from hmi.app import HmiApp, make_app
from hmi.audit.tables import audit_event
from hmi.auth.services import build_auth_services
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.screens.batch_run import BatchRunScreen
from plc_sim.server import SimulatorThread
from tests.ui.conftest import CHEAP_ARGON2, Kiosk, PlcClient
from tests.ui.helpers import login, settle, text_of
from tests.ui.test_batch_flow import wait_until
from tests.ui.test_excursion import BATCH, prepare_until_blend


async def blend_in_progress(kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient) -> None:
    """The first terminal: the batch driven through the engine up to a running blend, then the
    terminal goes away (the process 'dies' with the batch in progress)."""
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await wait_until(pilot, lambda: app.ctx.plc_state.value == "connected", "PLC")
        await prepare_until_blend(kiosk, app, gateway, pilot)
        batches = app.ctx.batches
        assert batches is not None
        await batches.start_step(kiosk.auth.sessions.current, BATCH, "blend")  # type: ignore[arg-type]
        current = batches.current_step(BATCH)
        assert current is not None and current.step_id == "blend"
        # a crash, not a clean exit: nothing watches the PLC link go down
        for worker in [w for w in app.workers if w.group in ("monitor", "plc")]:
            worker.cancel()
        await pilot.pause()
    assert batches.get(BATCH).status is BatchStatus.RUNNING


def restarted(kiosk: Kiosk, gateway: Any, *, wait_s: float = 10.0) -> HmiApp:
    """A new process on the same site: its own services, nothing carried over in memory."""
    auth = build_auth_services(
        kiosk.site.settings, kiosk.site.engine, kiosk.site.audit, kiosk.site.clock,
        argon2=CHEAP_ARGON2,
    )  # fmt: skip
    return make_app(
        kiosk.site, auth=auth, gateway=gateway, tz=UTC, watch_idle=False, recovery_wait_s=wait_s
    )


def recovered_events(kiosk: Kiosk) -> list[dict[str, Any]]:
    with kiosk.site.engine.connect() as conn:
        rows = conn.execute(
            select(audit_event.c.details).where(audit_event.c.action == "batch.recovered")
        ).all()
    return [json.loads(r[0]) if isinstance(r[0], str) else dict(r[0]) for r in rows]


async def open_batch_screen(pilot: Any, app: HmiApp, kiosk: Kiosk) -> BatchRunScreen:
    await login(pilot, "operator", kiosk.users["operator"].password)
    await app.run_action("menu")
    await pilot.pause()
    await pilot.press("3")  # Batch execution
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, BatchRunScreen)
    return screen


async def test_restart_recovers_the_running_batch_after_the_plc_connects(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    await blend_in_progress(kiosk, sim, plc_client)
    assert recovered_events(kiosk) == []
    app = restarted(kiosk, plc_client.gateway(sim.endpoint))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: recovered_events(kiosk), "batch.recovered", timeout=30)
        screen = await open_batch_screen(pilot, app, kiosk)
        await wait_until(pilot, lambda: screen.current is not None, "current step")
        assert screen.current is not None and screen.current.step_id == "blend"
        assert f"Batch {BATCH}" in text_of(pilot, "#batch-title")
        assert "RUNNING" in text_of(pilot, "#batch-title")
    [event] = recovered_events(kiosk)
    assert event["status"] == "running" and event["step_id"] == "blend"
    assert event["run_in_progress"] is True and event["plc_state"] is not None
    batches = app.ctx.batches
    assert batches is not None
    assert batches.get(BATCH).status is BatchStatus.RUNNING


def dead_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"opc.tcp://127.0.0.1:{port}"


async def test_restart_without_the_plc_holds_the_batch_from_the_hmi_side(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    await blend_in_progress(kiosk, sim, plc_client)
    app = restarted(kiosk, plc_client.gateway(dead_endpoint()), wait_s=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: recovered_events(kiosk), "batch.recovered", timeout=30)
        screen = await open_batch_screen(pilot, app, kiosk)
        await wait_until(pilot, lambda: screen.current is not None, "current step")
        assert screen.current is not None and screen.current.step_id == "blend"
        assert "HELD" in text_of(pilot, "#batch-title")
    [event] = recovered_events(kiosk)
    # held by recovery, or by the new terminal's monitor seeing the link down first
    assert event["step_id"] == "blend" and event["status"] in ("running", "held")
    assert event["plc_state"] is None and event["run_in_progress"] is True
    batches = app.ctx.batches
    assert batches is not None
    assert batches.get(BATCH).status is BatchStatus.HELD
    kinds = [d.kind for d in batches.deviations(BATCH)]
    assert DeviationKind.PLC_LOST in kinds
    assert "batch.held" in kiosk.actions()
