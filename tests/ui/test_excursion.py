"""A critical excursion during the blend: the engine holds the batch, the deviation dialog
appears by itself, the reason is given, and the co-signature is refused for the same person and
accepted from a supervisor."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot
from textual.widgets import Input, Select

from hmi.auth.roles import Meaning
from hmi.batch.model import BatchStatus, DeviationKind, DeviationStatus
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.modals.deviation import DeviationDialog
from plc_sim.server import SimulatorThread
from tests.ui.conftest import TIME_SCALE, Kiosk, PlcClient
from tests.ui.helpers import login, settle, text_of
from tests.ui.test_batch_flow import cosign, sign, wait_until

BATCH = "B-UI-0003"


def signer(kiosk: Kiosk, app: Any) -> Any:
    """Signs a step's record as the operator, co-signed by the supervisor (engine level)."""
    batches = app.ctx.batches
    session = kiosk.auth.sessions.current
    auth = kiosk.auth

    def signed(step_id: str, data: dict[str, Any]) -> list[Any]:
        ref = batches.step_record(BATCH, step_id, data)
        mine = auth.signatures.sign(
            session,
            ref,
            Meaning.PERFORMED,
            password=kiosk.users["operator"].password,
            user_id="operator",
            accept_statement=True,
        )
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        other = auth.signatures.cosign(
            session,
            mine,
            cosigner_id="supervisor",
            password=kiosk.users["supervisor"].password,
            totp=kiosk.code("supervisor"),
            meaning=Meaning.VERIFIED,
            accept_statement=True,
        )
        return [mine, other]

    return signed


async def through_line_clearance(kiosk: Kiosk, app: Any) -> None:
    """Start the batch and complete step 1 through the engine."""
    batches = app.ctx.batches
    session = kiosk.auth.sessions.current
    batches.start_batch(session, "PARA500-FB", 4, BATCH)
    data: dict[str, Any] = {"confirmed": True}
    signed = signer(kiosk, app)
    await batches.complete_step(
        session, BATCH, "line-clearance", data, signatures=signed("line-clearance", data)
    )


def plc_shows(app: Any, tag: str) -> bool:
    """Whether the kiosk's live PLC values show the tag true (the engine reads it afresh)."""
    update = app.ctx.values.get(tag)
    return update is not None and update.value is True


async def prepare_until_blend(kiosk: Kiosk, app: Any, gateway: Any, pilot: Pilot[None]) -> None:
    """Steps 1-6 straight through the engine (the batch flow test covers them on screen); each
    step that waits on the equipment is done once the PLC shows it ready."""
    batches = app.ctx.batches
    session = kiosk.auth.sessions.current
    signed = signer(kiosk, app)
    await through_line_clearance(kiosk, app)
    await batches.start_step(session, BATCH, "charge-granulate")
    await gateway.call("open_lid")
    await gateway.call("charge", 180.0)
    await wait_until(pilot, lambda: plc_shows(app, "weight_stable"), "scale stable", timeout=60)
    await batches.complete_step(session, BATCH, "charge-granulate", {"lot": "IG-1"})
    data = {"lot": "MG-1", "quantity": "0.90"}
    await batches.complete_step(
        session, BATCH, "charge-mgst", data, signatures=signed("charge-mgst", data)
    )
    await gateway.call("close_lid")
    await batches.complete_step(session, BATCH, "close-lid", {"confirmed": True})
    # the wait step completes by itself once the PLC shows the lid interlock made
    await wait_until(
        pilot,
        lambda: getattr(batches.current_step(BATCH), "step_id", None) == "set-blend",
        "lid interlock",
        timeout=60,
    )
    await batches.complete_step(session, BATCH, "set-blend", {})
    current = batches.current_step(BATCH)
    assert current is not None and current.step_id == "blend", current


async def test_critical_excursion_cosigned_by_supervisor_not_same_user(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await wait_until(pilot, lambda: app.ctx.plc_state.value == "connected", "PLC")
        await prepare_until_blend(kiosk, app, gateway, pilot)
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, BatchRunScreen)

        async def slower(server: Any) -> None:
            server.model.time_scale = 20.0

        async def usual(server: Any) -> None:
            server.model.time_scale = TIME_SCALE

        # At the suite's pace the whole blend takes 3 s of wall time, too short a window to be
        # sure of catching it at speed on a busy machine: slower while the excursion is made.
        await sim.acall(slower)
        try:
            await pilot.press("f2")  # start the blend
            await wait_until(
                pilot,
                lambda: batches.current_step(BATCH).status.value == "running",
                "the blend started",
                timeout=60,
            )
            await wait_until(
                pilot,
                lambda: float(app.ctx.values["speed"].value or 0) > 11.5,  # type: ignore[arg-type]
                "blender at speed",
                timeout=60,
            )
            await wait_until(
                pilot,
                lambda: "blend_speed" in app.ctx.batches.armed_parameters(),
                "the monitor has seen the speed inside its limits",
            )

            async def overspeed(server: Any) -> None:
                server.model.speed_setpoint = 16.0

            await sim.acall(overspeed)
            await wait_until(pilot, lambda: isinstance(app.screen, DeviationDialog), "dialog")
        finally:
            await sim.acall(usual)
        assert "Blend speed: expected" in text_of(pilot, "#deviation-what")
        assert "CRITICAL" in text_of(pilot, "#deviation-what")
        assert batches.get(BATCH).status is BatchStatus.HELD
        app.screen.query_one("#reason-code", Select).value = "EQUIPMENT"
        app.screen.query_one("#reason-text", Input).value = "setpoint changed at the local panel"
        await pilot.press("f2")
        await sign(pilot, kiosk, "operator")
        refusal = await cosign(pilot, kiosk, "operator")
        assert refusal == "Refused: A co-signature must come from a different person."
        assert await cosign(pilot, kiosk, "supervisor") == ""
        await wait_until(
            pilot,
            lambda: batches.deviations(BATCH)[0].status is DeviationStatus.CLOSED,
            "co-signed",
        )
        [deviation] = batches.deviations(BATCH)
        assert deviation.kind is DeviationKind.EXCURSION and deviation.critical
        assert deviation.cosigned_by == "supervisor"
