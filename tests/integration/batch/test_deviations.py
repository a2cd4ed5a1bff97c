"""Deviations of every kind: opened automatically, reasons, co-signatures, and what they block."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from hmi.alarms.service import AlarmService
from hmi.auth.errors import PermissionDenied, SignatureRefused
from hmi.auth.roles import Meaning
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import (
    BatchHeld,
    DeviationOpen,
    InvalidReason,
    SignatureProblem,
    StepNotReady,
    StepOutOfOrder,
)
from hmi.batch.model import BatchStatus, DeviationKind, DeviationStatus, StepStatus
from hmi.site import Site
from plc_sim.model import Fault
from tests.integration.batch.support import (
    Driver,
    audit_actions,
    eventually,
    monitoring,
    retry,
    set_model,
    verify_chain,
)

BATCH = "B-2026-0100"


async def test_out_of_tolerance_entry_needs_a_reason_before_the_batch_proceeds(
    site: Site, engine: BatchEngine, driver: Driver
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="charge-granulate")
    session = driver.operator()
    data = {"lot": "MG-2026-117", "quantity": "0.80"}  # 0.90 kg ± 2 %: 0.882..0.918
    ref = engine.step_record(BATCH, "charge-mgst", data)
    performed = driver.people.sign(session, ref, Meaning.PERFORMED)
    verified = driver.people.cosign(session, performed, "sup1", Meaning.VERIFIED)
    await engine.complete_step(
        session, BATCH, "charge-mgst", data, signatures=[performed, verified]
    )
    [deviation] = engine.deviations(BATCH)
    assert deviation.kind is DeviationKind.OUT_OF_TOLERANCE
    assert (deviation.step_id, deviation.expected, deviation.actual, deviation.unit) == (
        "charge-mgst", "0.882..0.918", "0.80", "kg",
    )  # fmt: skip
    assert deviation.status is DeviationStatus.OPEN and not deviation.requires_cosign
    with pytest.raises(DeviationOpen) as blocked:
        await engine.complete_step(session, BATCH, "close-lid", {"confirmed": True})
    assert blocked.value.deviation_ids == (deviation.deviation_id,)
    with pytest.raises(InvalidReason):
        engine.give_reason(session, deviation.deviation_id, "NOT_A_CODE", "scale misread by op")
    with pytest.raises(InvalidReason):
        engine.give_reason(session, deviation.deviation_id, "MATERIAL", "short")
    closed = engine.give_reason(
        session, deviation.deviation_id, "MATERIAL", "container held 0.80 kg only; QA informed"
    )
    assert closed.status is DeviationStatus.CLOSED and closed.reason_by == "op1"
    await driver.gateway.call("close_lid")
    await engine.complete_step(session, BATCH, "close-lid", {"confirmed": True})
    refusals = [r for a, _e, r in audit_actions(site, "batch.step.refused")]
    assert "deviation open" in refusals
    assert [a for a, _e, _r in audit_actions(site, "deviation.")] == [
        "deviation.opened", "deviation.reason.refused", "deviation.reason.refused",
        "deviation.reason_given",
    ]  # fmt: skip
    assert verify_chain(site).ok


async def test_steps_only_in_order_and_skips_need_a_supervisor_cosignature(
    site: Site, engine: BatchEngine, driver: Driver
) -> None:
    driver.start(BATCH)
    session = driver.operator()
    with pytest.raises(StepOutOfOrder):
        await engine.complete_step(session, BATCH, "close-lid", {"confirmed": True})
    assert ("batch.step.refused", BATCH, "out of order") in audit_actions(site, "batch.step")
    skip = engine.request_skip(
        session, BATCH, "line-clearance", "PLANNED", "line cleared under change control CC-12"
    )
    assert skip.kind is DeviationKind.SKIP and skip.status is DeviationStatus.AWAITING_COSIGN
    with pytest.raises(DeviationOpen):
        await engine.complete_step(session, BATCH, "line-clearance", {"confirmed": True})
    ref = engine.deviation_record(skip.deviation_id)
    request = driver.people.sign(session, ref, Meaning.REQUESTED)
    with pytest.raises(SignatureRefused):  # the two-person rule: not the requester again
        driver.people.cosign(session, request, "op1", Meaning.COSIGNED)
    # A co-signature by a person without the right (another operator) is refused too.
    with pytest.raises(SignatureRefused):
        driver.people.cosign(session, request, "op2", Meaning.COSIGNED)
    cosigned = driver.people.cosign(session, request, "sup1", Meaning.COSIGNED)
    with pytest.raises(SignatureProblem, match="Cosigned"):  # a request is no co-signature
        await engine.cosign_deviation(session, skip.deviation_id, request, request)
    done = await engine.cosign_deviation(session, skip.deviation_id, request, cosigned)
    assert done.status is DeviationStatus.CLOSED and done.cosigned_by == "sup1"
    record = engine.record(BATCH)
    assert record.steps[0].status is StepStatus.SKIPPED
    assert record.steps[0].deviation_id == skip.deviation_id
    current = engine.current_step(BATCH)
    assert current is not None and current.step_id == "charge-granulate"
    # Override: complete the load-cell charge without taring (the scale is out of service).
    override = engine.request_override(
        session, BATCH, "charge-granulate", "EQUIPMENT",
        "load cell out of service; weighed on the floor scale",
        data={"lot": "IG-2026-0042", "quantity": "180.1"},
    )  # fmt: skip
    ref = engine.deviation_record(override.deviation_id)
    request = driver.people.sign(session, ref, Meaning.REQUESTED)
    cosigned = driver.people.cosign(session, request, "sup2", Meaning.COSIGNED)
    with pytest.raises(SignatureProblem):  # a request signature over another record
        other = engine.deviation_record(skip.deviation_id)
        await engine.cosign_deviation(
            session, override.deviation_id, driver.people.sign(session, other, Meaning.REQUESTED),
            cosigned,
        )  # fmt: skip
    await engine.cosign_deviation(session, override.deviation_id, request, cosigned)
    record = engine.record(BATCH)
    assert record.steps[1].status is StepStatus.OVERRIDDEN
    assert {(v.name, v.value) for v in record.values if v.step_id == "charge-granulate"} == {
        ("lot", "IG-2026-0042"), ("quantity", "180.1"),
    }  # fmt: skip
    assert [d.kind for d in engine.deviations(BATCH)] == [
        DeviationKind.SKIP,
        DeviationKind.OVERRIDE,
    ]
    assert any(a == "deviation.cosign.refused" for a, _e, _r in audit_actions(site, "deviation"))
    assert verify_chain(site).ok


async def test_alarm_during_a_step_is_a_deviation(
    site: Site, engine: BatchEngine, driver: Driver, alarms: AlarmService, gateway: Any, sim: Any
) -> None:
    driver.start(BATCH)
    feed = asyncio.get_running_loop().create_task(alarms.run(gateway))
    try:
        await sim.acall(lambda server: server.inject_fault(Fault.LOAD_CELL_DRIFT))
        deviation = await eventually(
            lambda: [d for d in engine.deviations(BATCH) if d.kind is DeviationKind.ALARM],
            what="alarm deviation",
        )
    finally:
        feed.cancel()
        await sim.acall(lambda server: server.clear_fault(Fault.LOAD_CELL_DRIFT))
    [item] = deviation
    assert item.actual == "LOADCELL_DRIFT" and item.step_id == "line-clearance"
    alarm = alarms.get(item.alarm_id or 0)
    assert alarm.code == "LOADCELL_DRIFT" and alarm.batch_id == BATCH and alarm.step_index == 0
    session = driver.operator()
    with pytest.raises(DeviationOpen):
        await engine.complete_step(session, BATCH, "line-clearance", {"confirmed": True})
    engine.give_reason(session, item.deviation_id, "EQUIPMENT", "load cell drift; recalibrated")
    await driver.step(BATCH, "line-clearance")
    assert verify_chain(site).ok


async def test_parameter_changes_within_limits_recorded_outside_only_cosigned(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any
) -> None:
    driver.start(BATCH)
    session = driver.operator()
    change = await engine.change_parameter(
        session, BATCH, "blend_speed", "13", "granulate flows poorly today"
    )
    assert change.applied and change.confirmed_value == "13.0"
    assert (await gateway.read("speed_setpoint")).value == 13.0
    [event] = [e for e in audit_actions(site, "batch.parameter.changed")]
    assert event[2] == "granulate flows poorly today"
    outside = await engine.change_parameter(
        session, BATCH, "blend_speed", "16", "trial of a faster blend requested by MSAT"
    )
    assert not outside.applied and outside.deviation_id is not None
    assert (await gateway.read("speed_setpoint")).value == 13.0
    item = engine.deviation(outside.deviation_id)
    assert item.kind is DeviationKind.PARAMETER_CHANGE and item.critical and item.requires_cosign
    ref = engine.deviation_record(item.deviation_id)
    request = driver.people.sign(session, ref, Meaning.REQUESTED)
    cosigned = driver.people.cosign(session, request, "sup1", Meaning.COSIGNED)
    await engine.cosign_deviation(session, item.deviation_id, request, cosigned)
    assert (await gateway.read("speed_setpoint")).value == 16.0
    assert engine.deviation(item.deviation_id).action_done
    changes = [v for v in engine.values(BATCH) if v.name == "parameter:blend_speed"]
    assert [(v.value, v.in_limits) for v in changes] == [("13", True), ("16", False)]
    viewer_like = driver.people.login("qa1")
    with pytest.raises(PermissionDenied):
        await engine.change_parameter(viewer_like, BATCH, "blend_speed", "12", "QA may not do it")
    assert verify_chain(site).ok


async def test_critical_excursion_holds_until_cosigned_then_resumes(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any, sim: Any
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        await eventually(lambda: engine.get(BATCH).status is BatchStatus.RUNNING)

        await eventually(
            lambda: "blend_speed" in engine.armed_parameters(),
            what="the monitor has seen the speed inside its limits",
        )
        await set_model(sim, speed_setpoint=16.0)
        await eventually(lambda: engine.get(BATCH).status is BatchStatus.HELD, what="hold")
        [excursion] = engine.deviations(BATCH)
        assert excursion.kind is DeviationKind.EXCURSION and excursion.critical
        assert excursion.parameter == "blend_speed" and Decimal(excursion.actual or "0") > 14
        await eventually(
            lambda: any(c.command == "hold" and c.result == "ok"
                        for c in engine.record(BATCH).plc_commands),
            what="PLC hold",
        )  # fmt: skip
        session = driver.operator()
        with pytest.raises(BatchHeld):
            await engine.complete_step(session, BATCH, "blend", {})
        engine.give_reason(
            session, excursion.deviation_id, "EQUIPMENT", "speed setpoint changed at the panel"
        )
        await engine.change_parameter(session, BATCH, "blend_speed", "12", "back to setpoint")
        ref = engine.deviation_record(excursion.deviation_id)
        request = driver.people.sign(session, ref, Meaning.REQUESTED)
        cosigned = driver.people.cosign(session, request, "sup1", Meaning.COSIGNED)
        await engine.cosign_deviation(session, excursion.deviation_id, request, cosigned)
        with pytest.raises(PermissionDenied):  # operators do not resume
            await engine.resume(session, BATCH, "deviation handled and co-signed")
        supervisor = driver.people.login("sup1")
        resumed = await engine.resume(supervisor, BATCH, "deviation handled and co-signed")
        assert resumed.status is BatchStatus.RUNNING
        driver.session = None
        await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=30)
    commands = [(c.command, c.result) for c in engine.record(BATCH).plc_commands]
    assert ("hold", "ok") in commands and ("unhold", "ok") in commands
    assert len(engine.deviations(BATCH)) == 1
    assert verify_chain(site).ok


async def test_a_result_out_of_specification_blocks_the_next_step_until_co_signed(
    engine: BatchEngine, driver: Driver, site: Site
) -> None:
    """An out-of-specification blend uniformity result is not closed by the operator's reason:
    the discharge stays refused until a supervisor or QA co-signs (hmi.batch.policy)."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="stopped")
    results = {"TOP": "99.4", "MIDDLE": "112.0", "BOTTOM": "98.8"}
    session = driver.operator()
    await engine.complete_step(session, BATCH, "bu-samples", {"results": results})
    [oos] = engine.deviations(BATCH)
    assert (oos.kind, oos.parameter, oos.actual) == (
        DeviationKind.OUT_OF_TOLERANCE, "result:MIDDLE", "112.0"
    )  # fmt: skip
    assert oos.requires_cosign and "out of specification" in oos.description
    engine.give_reason(session, oos.deviation_id, "MATERIAL", "segregation suspected; retest")
    assert engine.deviation(oos.deviation_id).status is DeviationStatus.AWAITING_COSIGN
    with pytest.raises(DeviationOpen):
        await engine.complete_step(session, BATCH, "discharge", {"container_id": "IBC-0042"})
    # QA co-signs here (a supervisor may too); then the batch goes on.
    ref = engine.deviation_record(oos.deviation_id)
    request = driver.people.sign(session, ref, Meaning.REQUESTED)
    cosigned = driver.people.cosign(session, request, "qa1", Meaning.COSIGNED)
    await engine.cosign_deviation(session, oos.deviation_id, request, cosigned)
    assert engine.deviation(oos.deviation_id).status is DeviationStatus.CLOSED
    await engine.complete_step(session, BATCH, "discharge", {"container_id": "IBC-0042"})
    assert engine.current_step(BATCH).step_id == "sign-performed"  # type: ignore[union-attr]
    assert verify_chain(site).ok


async def test_a_check_the_plc_contradicts_cannot_be_confirmed(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site
) -> None:
    """'Close and latch the lid' declares the PLC's lid_closed: confirmed with the lid open at
    the PLC it is refused, recorded, and names the signal; with the lid closed it completes and
    the record holds the PLC's value next to the confirmation."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="charge-mgst")
    await gateway.call("open_lid")
    session = driver.operator()
    with pytest.raises(StepNotReady, match="the PLC reports lid_closed false") as refused:
        await engine.complete_step(session, BATCH, "close-lid", {"confirmed": True})
    assert "override" in str(refused.value)
    assert audit_actions(site, "batch.step.refused")[-1][2] == str(refused.value)
    assert engine.current_step(BATCH).step_id == "close-lid"  # type: ignore[union-attr]
    await gateway.call("close_lid")
    await engine.complete_step(session, BATCH, "close-lid", {"confirmed": True})
    recorded = {
        (v.name, v.value, v.source) for v in engine.values(BATCH) if v.step_id == "close-lid"
    }
    assert recorded == {("confirmed", "true", "entered"), ("lid_closed", "true", "plc")}
