"""Hold, resume and abort (with the PLC), losing the PLC mid-run, and the training gate."""

from __future__ import annotations

from typing import Any

import pytest

from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import BatchHeld, DeviationOpen, NotTrained, ReleaseBlocked
from hmi.batch.model import BatchStatus, DeviationKind, DeviationStatus
from hmi.site import Site
from plc_sim.model import Fault
from tests.integration.batch.support import (
    RECIPE_ID,
    RECIPE_VERSION,
    Driver,
    audit_actions,
    eventually,
    monitoring,
    retry,
    verify_chain,
)

BATCH = "B-2026-0200"


async def plc_state(gateway: Any) -> str:
    return str((await gateway.read("state")).value)


async def test_hold_resume_and_abort_through_the_plc(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any
) -> None:
    driver.start(BATCH)
    session = driver.operator()
    held = await engine.hold(session, BATCH, "OPERATOR", "waiting for the sieve to be cleaned")
    assert held.status is BatchStatus.HELD
    [hold] = engine.deviations(BATCH)
    assert hold.kind is DeviationKind.HOLD and hold.status is DeviationStatus.CLOSED
    assert engine.record(BATCH).plc_commands == ()  # nothing runs: the blender is left alone
    with pytest.raises(BatchHeld):
        await engine.complete_step(session, BATCH, "line-clearance", {"confirmed": True})
    with pytest.raises(PermissionDenied):
        await engine.resume(session, BATCH, "sieve cleaned and checked")
    supervisor = driver.people.login("sup1")
    await engine.resume(supervisor, BATCH, "sieve cleaned and checked")
    driver.session = None
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        supervisor = driver.people.login("sup1")
        await engine.hold(supervisor, BATCH, "EQUIPMENT", "unusual noise from the drive")
        assert await plc_state(gateway) in ("Holding", "Held")
        await engine.resume(supervisor, BATCH, "drive inspected, noise gone")
        assert await plc_state(gateway) in ("Unholding", "Execute", "Completing", "Complete")
        aborted = await engine.abort(supervisor, BATCH, "EQUIPMENT", "drive bearing failing")
    assert aborted.status is BatchStatus.ABORTED
    assert await plc_state(gateway) in ("Aborting", "Aborted")
    commands = [(c.command, c.result) for c in engine.record(BATCH).plc_commands]
    assert [c for c in commands if c[0] in ("hold", "unhold", "abort")] == [
        ("hold", "ok"), ("unhold", "ok"), ("abort", "ok"),
    ]  # fmt: skip
    abort = engine.deviations(BATCH)[-1]
    assert abort.kind is DeviationKind.ABORT and abort.status is DeviationStatus.AWAITING_COSIGN
    qa = driver.people.login("qa1")
    ref = engine.batch_record_ref(BATCH)
    review = driver.people.sign(qa, ref, Meaning.AUDIT_TRAIL_REVIEWED)
    with pytest.raises(ReleaseBlocked, match="still open"):
        engine.review_audit_trail(qa, BATCH, review)
    supervisor = driver.people.login("sup1")
    request = driver.people.sign(supervisor, engine.deviation_record(abort.deviation_id),
                                 Meaning.REQUESTED)  # fmt: skip
    cosigned = driver.people.cosign(supervisor, request, "sup2", Meaning.COSIGNED)
    await engine.cosign_deviation(supervisor, abort.deviation_id, request, cosigned)
    qa = driver.people.login("qa1")
    for item in engine.deviations(BATCH):
        driver.disposition(qa, item.deviation_id, "accepted", "documented in QA-DEV-2026-07")
    ref = engine.batch_record_ref(BATCH)
    engine.review_audit_trail(qa, BATCH, driver.people.sign(qa, ref, Meaning.AUDIT_TRAIL_REVIEWED))
    with pytest.raises(ReleaseBlocked, match="aborted batch can only be rejected"):
        engine.release(qa, BATCH, driver.people.sign(qa, ref, Meaning.RELEASED))
    rejected = engine.reject(
        qa, BATCH, driver.people.sign(qa, ref, Meaning.REJECTED), "aborted: drive failure"
    )
    assert rejected.status is BatchStatus.REJECTED
    actions = [a for a, _e, _r in audit_actions(site, "batch.")]
    for expected in (
        "batch.held",
        "batch.resumed",
        "batch.aborted",
        "batch.release.refused",
        "batch.rejected",
        "batch.plc.command.intent",
        "batch.plc.command.result",
    ):
        assert expected in actions  # fmt: skip
    assert verify_chain(site).ok


async def test_losing_the_plc_mid_run_holds_the_batch(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any, sim: Any
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        await sim.acall(lambda server: server.inject_fault(Fault.COMM_FREEZE, 0.0))
        try:
            await eventually(
                lambda: engine.get(BATCH).status is BatchStatus.HELD, timeout=15, what="hold"
            )
        finally:
            await sim.acall(lambda server: server.clear_fault(Fault.COMM_FREEZE))
        [lost] = engine.deviations(BATCH)
        assert lost.kind is DeviationKind.PLC_LOST and lost.step_id == "blend"
        assert "communication with the PLC lost" in (engine.get(BATCH).hold_reason or "")
        await eventually(
            lambda: (
                ("batch.plc.reconnected", BATCH, None)
                in audit_actions(site, "batch.plc.reconnected")
            ),
            timeout=15,
            what="reconnection recorded",
        )
        session = driver.operator()
        engine.give_reason(session, lost.deviation_id, "UTILITIES", "network switch rebooted")
        supervisor = driver.people.login("sup1")
        await engine.resume(supervisor, BATCH, "PLC back, values checked")
        driver.session = None
        await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=30)
    assert engine.current_step(BATCH).step_id == "stopped"  # type: ignore[union-attr]
    assert verify_chain(site).ok


async def test_untrained_user_is_refused(site: Site, engine: BatchEngine, driver: Driver) -> None:
    stranger = driver.people.login("op2")
    with pytest.raises(NotTrained, match="not recorded as trained"):
        engine.start_batch(stranger, RECIPE_ID, RECIPE_VERSION, BATCH)
    assert engine.list_batches() == []
    driver.start(BATCH)
    stranger = driver.people.login("op2")
    with pytest.raises(NotTrained):
        await engine.complete_step(stranger, BATCH, "line-clearance", {"confirmed": True})
    refusals = audit_actions(site, "batch.")
    assert ("batch.start.refused", BATCH, "not trained") in refusals
    assert ("batch.step.refused", BATCH, "not trained") in refusals
    assert engine.current_step(BATCH).step_id == "line-clearance"  # type: ignore[union-attr]


async def test_hold_is_immediate_and_its_reason_comes_right_after(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any
) -> None:
    """One key during the blend: the PLC holds the drum first, then the batch is held by the
    person who pressed it (not taken for the PLC holding by itself); the hold's deviation has
    no reason yet and blocks resume until it has one."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        held = await engine.hold(driver.operator(), BATCH)
        assert held.status is BatchStatus.HELD
        assert await plc_state(gateway) in ("Holding", "Held")
        [hold] = engine.deviations(BATCH)
        assert (hold.kind, hold.status, hold.reason_text) == (
            DeviationKind.HOLD, DeviationStatus.OPEN, None
        )  # fmt: skip
        assert hold.opened_by == "op1" and hold.blocking
        supervisor = driver.people.login("sup1")
        with pytest.raises(DeviationOpen):
            await engine.resume(supervisor, BATCH, "drive inspected, noise gone")
        engine.give_reason(supervisor, hold.deviation_id, "EQUIPMENT", "unusual noise, drive")
        await engine.resume(supervisor, BATCH, "drive inspected, noise gone")
        assert engine.get(BATCH).status is BatchStatus.RUNNING
    held_events = audit_actions(site, "batch.held")
    assert len(held_events) == 1  # the PLC's Held was this hold, not a second one
    [hold_command] = [c for c in engine.record(BATCH).plc_commands if c.command == "hold"]
    assert hold_command.result == "ok" and hold_command.intent_by == "op1"
    assert len(engine.deviations(BATCH)) == 1
    assert verify_chain(site).ok
