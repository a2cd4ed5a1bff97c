"""Changes during a batch, driven on the batch screen against the real simulator: a parameter
change within its limits and one outside them (co-signed), a skip request that the requester
cannot co-sign, and the correction of an entered value (old, new, who, when, why)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import Input, OptionList, Select, Static

from hmi.app import HmiApp
from hmi.audit.tables import audit_event
from hmi.batch.errors import StepDataInvalid
from hmi.batch.model import BatchStatus, DeviationKind, DeviationStatus, StepStatus
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.modals.choice import ChoiceDialog
from hmi.screens.modals.deviation import DeviationDialog
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import FormDialog
from plc_sim.server import SimulatorServer, SimulatorThread
from tests.ui import test_batch_flow, test_excursion
from tests.ui.conftest import Kiosk, PlcClient
from tests.ui.helpers import idle_group, login, settle, text_of
from tests.ui.test_batch_flow import cosign, sign, start_batch, wait_until


def events(kiosk: Kiosk, action: str) -> list[Mapping[str, Any]]:
    with kiosk.site.engine.connect() as conn:
        rows = conn.execute(
            select(audit_event).where(audit_event.c.action == action).order_by(audit_event.c.id)
        ).mappings()
        return [dict(r) for r in rows]


async def open_app(pilot: Pilot[None], kiosk: Kiosk, app: HmiApp) -> None:
    await login(pilot, "operator", kiosk.users["operator"].password)
    await wait_until(pilot, lambda: app.ctx.plc_state.value == "connected", "PLC")


async def choose(pilot: Pilot[None], key: str, containing: str) -> list[str]:
    """Press ``key``, then pick the item whose label contains ``containing``; return the
    labels offered."""
    app = pilot.app
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(app.screen, ChoiceDialog), "choice dialog")
    options = app.screen.query_one(OptionList)
    labels = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
    found = [i for i, label in enumerate(labels) if containing in label]
    assert found, labels
    options.highlighted = found[0]
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, FormDialog), "form dialog")
    return labels


def dialog_text(pilot: Pilot[None]) -> str:
    """Everything the current dialog shows as text (title, note, messages)."""
    return "\n".join(str(w.render()) for w in pilot.app.screen.query(Static))


async def fill_form(pilot: Pilot[None], values: dict[str, str]) -> None:
    for name, value in values.items():
        pilot.app.screen.query_one(f"#field-{name}", Input).value = value
    await pilot.pause()


async def submit_form(pilot: Pilot[None]) -> None:
    await pilot.press("f2")
    await pilot.pause()
    await settle(pilot)


def speed_setpoint(sim: SimulatorThread) -> float:
    async def read(server: SimulatorServer) -> float:
        return float(server.model.speed_setpoint)

    return sim.call(read)


async def test_parameter_change_within_limits_then_outside_cosigned(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    batch_id = test_batch_flow.BATCH
    async with app.run_test(size=(120, 40)) as pilot:
        await open_app(pilot, kiosk, app)
        await start_batch(pilot, app)
        screen = app.screen
        assert isinstance(screen, BatchRunScreen)
        # within the limits: a number is demanded as typed, then the change is written
        await choose(pilot, "f4", "blend_speed")
        assert "limits 10..14 rpm" in dialog_text(pilot)
        await fill_form(pilot, {"value": "fast", "text": "granulate bridges at 12 rpm"})
        assert text_of(pilot, "#form-message") == (
            "blend_speed: 'fast' is not a number as entered here: write digits with one"
            " decimal point or comma (180.5 or 180,5)"
        )
        await submit_form(pilot)
        assert isinstance(app.screen, FormDialog)  # refused: nothing was sent
        await fill_form(pilot, {"value": "13"})
        await submit_form(pilot)
        await idle_group(pilot, "batch")
        assert app.screen is screen
        assert (
            text_of(pilot, "#batch-message")
            == "blend_speed changed to 13 rpm: written to the PLC and read back."
        )
        assert speed_setpoint(sim) == 13.0
        [changed] = events(kiosk, "batch.parameter.changed")
        assert (changed["field"], changed["new_value"]) == ("blend_speed", "13")
        assert changed["reason"] == "granulate bridges at 12 rpm"
        assert changed["actor_id"] == "operator"
        # outside the limits: a deviation, the operator's request, a supervisor's co-signature
        await choose(pilot, "f4", "blend_speed")
        await fill_form(pilot, {"value": "16", "code": "EQUIPMENT", "text": "trial at 16 rpm"})
        await submit_form(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, ESignatureDialog), "request")
        assert "Parameter changed outside its limits" in text_of(pilot, "#esign-record")
        assert speed_setpoint(sim) == 13.0  # not written before the co-signature
        await sign(pilot, kiosk, "operator", first=True)
        assert await cosign(pilot, kiosk, "supervisor") == ""
        await wait_until(
            pilot,
            lambda: batches.deviations(batch_id)[0].status is DeviationStatus.CLOSED,
            "co-signed",
        )
        await wait_until(pilot, lambda: speed_setpoint(sim) == 16.0, "written after co-sign")
        assert "outside its limits (deviation" in text_of(pilot, "#batch-message")
        # the record of a setpoint sent to the PLC is not offered for correction
        await pilot.press("f11")
        await settle(pilot)
        assert text_of(pilot, "#batch-message").startswith("No entered value to correct")
        assert batches.correctable_values(batch_id) == []
        record = next(v for v in batches.values(batch_id) if v.name == "parameter:blend_speed")
        session = kiosk.auth.sessions.current
        with pytest.raises(StepDataInvalid, match="change the parameter again instead"):
            batches.correct_value(session, batch_id, record.value_id, "12", "wrong value typed")
    [deviation] = batches.deviations(batch_id)
    assert deviation.kind is DeviationKind.PARAMETER_CHANGE and deviation.critical
    assert (deviation.expected, deviation.actual) == ("10..14", "16")
    assert (deviation.reason_code, deviation.reason_by) == ("EQUIPMENT", "operator")
    assert deviation.cosigned_by == "supervisor"
    [requested] = events(kiosk, "batch.parameter.change_requested")
    assert (Decimal(requested["old_value"]), requested["new_value"]) == (13, "16")
    assert requested["reason"] == "trial at 16 rpm"
    applied = events(kiosk, "batch.parameter.changed")[-1]
    assert (Decimal(applied["old_value"]), applied["new_value"]) == (13, "16")
    assert json.loads(applied["details"])["deviation_id"] == deviation.deviation_id


async def test_skip_request_refused_for_the_requester_and_cosigned_by_supervisor(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    batch_id = test_batch_flow.BATCH
    async with app.run_test(size=(120, 40)) as pilot:
        await open_app(pilot, kiosk, app)
        await start_batch(pilot, app)
        screen = app.screen
        assert isinstance(screen, BatchRunScreen)
        assert screen.current is not None and screen.current.step_id == "line-clearance"
        await pilot.press("f10")
        await pilot.pause()
        assert isinstance(app.screen, FormDialog)
        await fill_form(pilot, {"text": "n/a"})
        assert "Explain the reason in 10 to 1000 characters" in text_of(pilot, "#form-message")
        await submit_form(pilot)
        assert isinstance(app.screen, FormDialog)
        assert batches.deviations(batch_id) == []
        await fill_form(pilot, {"text": "line cleared and checked by the previous shift"})
        await submit_form(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, ESignatureDialog), "e-signature")
        # the operator signs a request: nothing is skipped before the co-signature
        shown = text_of(pilot, "#esign-record")
        assert shown.startswith(
            "Skip requested for step 'Line clearance' (needs a supervisor's co-signature)"
        ), shown
        assert "skipped" not in shown
        await sign(pilot, kiosk, "operator", first=True)
        refusal = await cosign(pilot, kiosk, "operator")
        assert refusal == "Refused: A co-signature must come from a different person."
        assert batches.get(batch_id).current_step == 0  # nothing skipped yet
        assert await cosign(pilot, kiosk, "supervisor") == ""
        await wait_until(
            pilot,
            lambda: screen.current is not None and screen.current.step_id == "charge-granulate",
            "next step",
        )
        assert text_of(pilot, "#batch-message").startswith(
            "Skip of step 'Line clearance' requested (deviation "
        )
        assert "↷  1. Line clearance" in str(screen.query_one("#steps").render())
    [deviation] = batches.deviations(batch_id)
    assert deviation.kind is DeviationKind.SKIP and deviation.status is DeviationStatus.CLOSED
    assert deviation.reason_text == "line cleared and checked by the previous shift"
    assert (deviation.reason_by, deviation.cosigned_by) == ("operator", "supervisor")
    assert batches.record(batch_id).steps[0].status is StepStatus.SKIPPED
    [refused] = events(kiosk, "esignature.cosign.refused")
    assert refused["entity_id"] == "operator"
    assert json.loads(refused["details"])["failure"] == "same_person"
    [cosigned] = events(kiosk, "deviation.cosigned")
    assert cosigned["actor_id"] == "supervisor"
    assert json.loads(cosigned["details"])["requested_by"] == "operator"


async def test_correction_of_an_entered_value_keeps_old_new_who_when_why(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    batch_id = test_excursion.BATCH
    async with app.run_test(size=(120, 40)) as pilot:
        await open_app(pilot, kiosk, app)
        await test_excursion.prepare_until_blend(kiosk, app, gateway, pilot)
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("3")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BatchRunScreen)
        await choose(pilot, "f11", "quantity = 0.90 kg")
        note = dialog_text(pilot)
        assert "Old value: Step 3 Charge magnesium stearate: quantity = 0.90 kg" in note
        assert "Accepted 0.882..0.918 kg" in note
        # no reason: impossible, the dialog stays open and nothing is recorded
        await fill_form(pilot, {"value": "0.91"})
        await submit_form(pilot)
        assert isinstance(app.screen, FormDialog)
        assert text_of(pilot, "#form-message") == "Fill in: Reason for the correction."
        assert events(kiosk, "batch.value.corrected") == []
        await fill_form(pilot, {"text": "transcription error, bench scale printout 0.91"})
        await submit_form(pilot)
        await wait_until(pilot, lambda: app.screen is screen, "back to the batch")
        await settle(pilot)
        message = text_of(pilot, "#batch-message")
        assert message.startswith("quantity corrected from 0.90 to 0.91 kg (value ")
        assert "the original stays in the record" in message
        # the list now offers the corrected value (marked), not the replaced one
        labels = await choose(pilot, "f11", "quantity = 0.91 kg")
        [quantity] = [label for label in labels if "quantity" in label]
        assert quantity.endswith(" - corrected")
        await pilot.press("escape")
        await settle(pilot)
    [corrected] = events(kiosk, "batch.value.corrected")
    assert corrected["actor_id"] == "operator"
    assert (corrected["field"], corrected["old_value"], corrected["new_value"]) == (
        "quantity",
        "0.90",
        "0.91",
    )
    assert corrected["reason"] == "transcription error, bench scale printout 0.91"
    assert corrected["ts"]
    values = [v for v in batches.values(batch_id) if v.name == "quantity" and v.source == "entered"]
    old, new = values
    assert (old.value, old.replaced_by) == ("0.90", new.value_id)
    assert (new.value, new.replaces_id, new.recorded_by) == ("0.91", old.value_id, "operator")
    assert new.in_limits is True and batches.deviations(batch_id) == []
    assert batches.get(batch_id).status is BatchStatus.RUNNING


async def test_correction_outside_limits_opens_a_deviation(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    batch_id = test_excursion.BATCH
    async with app.run_test(size=(120, 40)) as pilot:
        await open_app(pilot, kiosk, app)
        await test_excursion.prepare_until_blend(kiosk, app, gateway, pilot)
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("3")
        await settle(pilot)
        await choose(pilot, "f11", "quantity = 0.90 kg")
        await fill_form(pilot, {"value": "0,95", "text": "re-weighed: 0.95 kg on the bench"})
        await submit_form(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, DeviationDialog), "deviation")
        assert "corrected quantity: 0.95 kg" in text_of(pilot, "#deviation-what")
        app.screen.query_one("#reason-code", Select).value = "MATERIAL"
        app.screen.query_one("#reason-text", Input).value = "second weighing is the right one"
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, BatchRunScreen), "back")
        assert "outside its limits: a deviation was opened" in text_of(pilot, "#batch-message")
    [deviation] = batches.deviations(batch_id)
    assert deviation.kind is DeviationKind.OUT_OF_TOLERANCE
    assert (deviation.parameter, deviation.actual) == ("quantity", "0.95")
    assert deviation.reason_by == "operator" and deviation.status is DeviationStatus.CLOSED
    [corrected] = events(kiosk, "batch.value.corrected")
    assert (corrected["old_value"], corrected["new_value"]) == ("0.90", "0.95")
