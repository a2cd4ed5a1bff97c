"""Live monitoring of a run (a non-critical excursion) and reconciliation at restart."""

from __future__ import annotations

from typing import Any

import pytest

from hmi.alarms.service import AlarmService
from hmi.auth.roles import Meaning
from hmi.auth.services import AuthServices
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import PlcCommandFailed
from hmi.batch.model import BatchStatus, DeviationKind, DeviationStatus
from hmi.clock import ManualClock
from hmi.plc.errors import PlcNotConnected
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.integration.batch.support import (
    REPO_ROOT,
    Driver,
    audit_actions,
    build_engine,
    eventually,
    monitoring,
    record_training,
    retry,
    set_model,
    verify_chain,
)

BATCH = "B-2026-0500"


async def test_non_critical_excursion_is_recorded_with_its_end_and_the_run_goes_on(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any, sim: Any
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    seen: list[str] = []
    engine.on_deviation(lambda info: seen.append(info.deviation_id))
    with monitoring(engine):
        await set_model(sim, time_scale=20.0)  # a 45 s blend: time to act during the run
        try:
            await engine.start_step(driver.operator(), BATCH, "blend")
            await eventually(
                lambda: "product_temperature" in engine.armed_parameters(),
                what="the monitor has seen the temperature inside its limits",
            )
            await set_model(sim, temperature=37.0)
            [excursion] = await eventually(lambda: engine.deviations(BATCH), what="excursion")
            assert excursion.kind is DeviationKind.EXCURSION and not excursion.critical
            assert excursion.parameter == "product_temperature" and excursion.unit == "°C"
            assert excursion.expected == "15..35" and float(excursion.actual or 0) > 35
            assert engine.get(BATCH).status is BatchStatus.RUNNING  # not critical: no hold
            await set_model(sim, temperature=25.0)
            await eventually(
                lambda: engine.deviation(excursion.deviation_id).ended_at is not None,
                what="excursion end",
            )
        finally:
            await set_model(sim, time_scale=300.0)
        assert seen == [excursion.deviation_id]
        session = driver.operator()
        engine.give_reason(
            session, excursion.deviation_id, "PROCESS", "jacket heating left on; switched off"
        )
        await retry(lambda: engine.complete_step(session, BATCH, "blend", {}), timeout=30)
    assert engine.deviation(excursion.deviation_id).status is DeviationStatus.CLOSED
    assert "deviation.excursion_ended" in [a for a, _e, _r in audit_actions(site, "deviation.")]
    assert verify_chain(site).ok


async def test_restart_finds_a_run_the_plc_no_longer_knows(
    site: Site,
    auth: AuthServices,
    recipes: RecipeService,
    alarms: AlarmService,
    engine: BatchEngine,
    driver: Driver,
    gateway: Any,
    sim: Any,
) -> None:
    assert await engine.recover() is None  # nothing in progress: nothing to do
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await engine.start_step(driver.operator(), BATCH, "blend")
    await sim.acall(lambda server: server.reset_simulation())  # the PLC was power-cycled
    restarted = build_engine(site, auth, gateway)
    recovered = await restarted.recover()
    assert recovered is not None and recovered.batch_id == BATCH
    [mismatch] = restarted.deviations(BATCH)
    assert mismatch.kind is DeviationKind.PLC_MISMATCH and mismatch.step_id == "blend"
    assert (mismatch.expected, mismatch.actual) == ("Execute", "Stopped")
    assert mismatch.description.startswith("PLC lost state")
    assert recovered.status is BatchStatus.HELD  # Resume restores the PLC first
    assert ("batch.recovered", BATCH, None) in audit_actions(site, "batch.recovered")
    assert verify_chain(site).ok


async def test_restart_holds_a_blender_the_hmi_had_held(
    site: Site,
    auth: AuthServices,
    recipes: RecipeService,
    alarms: AlarmService,
    engine: BatchEngine,
    driver: Driver,
    gateway: Any,
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await engine.start_step(driver.operator(), BATCH, "blend")
    real_call = gateway.call

    async def hold_lost(method: str, *args: Any) -> Any:
        if method == "hold":
            raise PlcNotConnected("connection dropped while holding")
        return await real_call(method, *args)

    gateway.call = hold_lost
    with pytest.raises(PlcCommandFailed):
        await engine.hold(driver.operator(), BATCH, "OPERATOR", "material spill near the blender")
    assert engine.get(BATCH).status is BatchStatus.HELD
    assert str((await gateway.read("state")).value) in ("Starting", "Execute")
    gateway.call = real_call
    restarted = build_engine(site, auth, gateway)
    await restarted.recover()
    assert str((await gateway.read("state")).value) in ("Holding", "Held")
    results = [(c.command, c.result) for c in restarted.record(BATCH).plc_commands]
    assert results[-2:] == [("hold", "failed"), ("hold", "ok")]
    assert verify_chain(site).ok


async def test_a_wait_step_completes_by_itself_once_the_plc_meets_its_condition(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site
) -> None:
    """'Lid interlock made' is the PLC's to answer: under the monitor the step completes,
    performed by the system, with the PLC value seen, as soon as the lid is closed; nobody
    presses a key; until then it waits."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="charge-mgst")
    refusals = len(audit_actions(site, "batch.step.refused"))
    await gateway.call("close_lid")
    with monitoring(engine):
        await engine.complete_step(driver.operator(), BATCH, "close-lid", {"confirmed": True})
        await eventually(
            lambda: engine.current_step(BATCH).step_id == "set-blend",  # type: ignore[union-attr]
            timeout=15,
            what="the wait step completed by itself",
        )
    [step] = [s for s in engine.record(BATCH).steps if s.step_id == "lid-interlock"]
    assert step.performed_by == "system" and step.status.value == "completed"
    [seen] = [v for v in engine.values(BATCH) if v.step_id == "lid-interlock"]
    assert (seen.name, seen.value, seen.source) == ("lid_closed", "true", "plc")
    assert len(audit_actions(site, "batch.step.refused")) == refusals  # nothing tried in vain
    assert verify_chain(site).ok


async def test_a_wait_step_whose_time_runs_out_is_a_deviation_then_still_completes(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site, clock: ManualClock
) -> None:
    """'Lid interlock made' not met within its 300 s: a deviation with what the PLC showed;
    once the lid is closed and the reason given, the step completes by itself."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="close-lid")
    await gateway.call("open_lid")  # opened again right after it was confirmed closed
    with monitoring(engine):
        clock.advance(301)
        late = await eventually(
            lambda: [d for d in engine.deviations(BATCH) if d.step_id == "lid-interlock"],
            timeout=15,
            what="the time-out deviation",
        )
        [timeout] = late
        assert timeout.kind is DeviationKind.PLC_MISMATCH and timeout.parameter == "lid_closed"
        assert timeout.expected == "true within 300 s" and timeout.actual == "false"
        assert "lid_closed was not true within 300 s" in timeout.description
        await gateway.call("close_lid")
        # the open deviation blocks: the step does not complete before its reason
        assert engine.current_step(BATCH).step_id == "lid-interlock"  # type: ignore[union-attr]
        engine.give_reason(
            driver.operator(), timeout.deviation_id, "EQUIPMENT", "latch sensor was dirty, cleaned"
        )
        await eventually(
            lambda: engine.current_step(BATCH).step_id == "set-blend",  # type: ignore[union-attr]
            timeout=15,
            what="the wait step completed by itself",
        )
    assert len([d for d in engine.deviations(BATCH) if d.step_id == "lid-interlock"]) == 1
    assert verify_chain(site).ok


async def test_the_engine_resets_a_stopped_blender_for_a_step_that_waits_for_idle(
    site: Site,
    engine: BatchEngine,
    driver: Driver,
    recipes: RecipeService,
    auth: AuthServices,
    gateway: Any,
) -> None:
    """IBU200-PB waits for "Blender idle"; the simulator powers up Stopped. The engine sends
    Reset (a recorded command of the system, once) and the step completes by itself at Idle."""
    people = driver.people
    importer = people.login("sup1")
    recipes.import_file(importer, REPO_ROOT / "recipes" / "ibuprofen-pre-blend.toml")
    qa = people["qa1"]
    session = people.login(qa)
    recipes.approve(
        session, "IBU200-PB", 2, password=qa.password, user_id=qa.user_id,
        totp=people.code(qa), accept_statement=True,
    )  # fmt: skip
    record_training(auth, session, "op1", "IBU200-PB")
    assert str((await gateway.read("state")).value) == "Stopped"
    operator = driver.operator()
    engine.start_batch(operator, "IBU200-PB", 2, BATCH)
    data = {"confirmed": True}
    ref = engine.step_record(BATCH, "line-clearance", data)
    performed = people.sign(operator, ref, Meaning.PERFORMED)
    verified = people.cosign(operator, performed, "sup1", Meaning.VERIFIED)
    with monitoring(engine):
        await engine.complete_step(
            operator, BATCH, "line-clearance", data, signatures=[performed, verified]
        )
        await eventually(
            lambda: engine.current_step(BATCH).step_id == "charge-mcc",  # type: ignore[union-attr]
            timeout=15,
            what="the blender reset and the wait step completed",
        )
    [reset] = [c for c in engine.record(BATCH).plc_commands if c.command == "reset"]
    assert (reset.intent_by, reset.result, reset.step_index) == ("system", "ok", 1)
    assert str((await gateway.read("state")).value) == "Idle"
    [step] = [s for s in engine.record(BATCH).steps if s.step_id == "bin-ready"]
    assert step.performed_by == "system"
    assert verify_chain(site).ok
