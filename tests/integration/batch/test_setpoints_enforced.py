"""The blend's critical parameters are enforced where they act (against the bundled simulator):
the setpoints are read back right before Start and at the completion of the blend, the time
blended is checked against the recipe's limits, and a change made at the PLC behind the HMI's
back (a panel edit, a PLC restart) is a deviation, a critical one holding the batch."""

from __future__ import annotations

from typing import Any

import pytest

from hmi.batch.engine import BatchEngine
from hmi.batch.errors import StepNotReady
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.site import Site
from tests.integration.batch.support import (
    TIME_SCALE,
    Driver,
    audit_actions,
    retry,
    set_model,
    verify_chain,
)

BATCH = "B-2026-0710"


async def plc_state(gateway: Any) -> str:
    return str((await gateway.read("state")).value)


async def test_a_blend_time_changed_at_the_plc_before_start_is_never_run(
    engine: BatchEngine, driver: Driver, sim: Any, gateway: Any, site: Site
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await set_model(sim, blend_time_setpoint=120.0)  # someone at the PLC panel
    refusal = r"blend_time at the PLC is 120\.0 s before the start, the batch set 900 s"
    with pytest.raises(StepNotReady, match=refusal):
        await engine.start_step(driver.operator(), BATCH, "blend")
    assert await plc_state(gateway) == "Idle"  # the blender never started
    [mismatch] = [d for d in engine.deviations(BATCH) if d.kind is DeviationKind.PLC_MISMATCH]
    found = (mismatch.parameter, mismatch.expected, mismatch.actual)
    assert found == ("blend_time", "900", "120.0")
    assert mismatch.critical and mismatch.step_id == "blend"
    info = engine.get(BATCH)
    assert info.status is BatchStatus.HELD
    refused = audit_actions(site, "batch.step.refused")
    assert refused and refused[-1][2] == "setpoints at the PLC differ from the batch's"
    assert verify_chain(site).ok


async def test_a_blend_cut_short_at_the_plc_is_a_deviation_at_completion(
    engine: BatchEngine, driver: Driver, sim: Any, gateway: Any
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await set_model(sim, time_scale=TIME_SCALE / 10)
    await engine.start_step(driver.operator(), BATCH, "blend")
    await set_model(sim, blend_time_setpoint=120.0)  # cut short while it runs
    await set_model(sim, time_scale=TIME_SCALE)
    await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=60)
    deviations = {d.kind: d for d in engine.deviations(BATCH) if d.step_id == "blend"}
    short = deviations[DeviationKind.OUT_OF_TOLERANCE]
    assert short.parameter == "blend_time" and short.expected == "840..960"
    assert float(short.actual or "0") < 840 and short.critical
    changed = deviations[DeviationKind.PLC_MISMATCH]
    assert "at the completion" in changed.description and changed.actual == "120.0"
    [elapsed] = [v for v in engine.values(BATCH) if v.name == "elapsed_time"]
    assert elapsed.in_limits is False and (elapsed.low, elapsed.high) == ("840", "960")
    assert engine.get(BATCH).status is BatchStatus.HELD  # critical: held before the next step


async def test_a_parameter_changed_during_the_batch_is_the_one_written_and_checked(
    engine: BatchEngine, driver: Driver, sim: Any, gateway: Any
) -> None:
    """F4 before the set-parameters step: that step writes the changed value, not the recipe's,
    and the start check compares with it; the blend runs at it."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="lid-interlock")
    change = await engine.change_parameter(
        driver.operator(), BATCH, "blend_speed", "13", "granule size of this lot is coarser"
    )
    assert change.applied
    await driver.run(BATCH, stop_after="set-blend")
    assert (await gateway.read("speed_setpoint")).value == pytest.approx(13.0)
    [written] = [v for v in engine.values(BATCH) if v.name == "blend_speed"]
    assert written.value == "13.0"
    await engine.start_step(driver.operator(), BATCH, "blend")
    assert not [d for d in engine.deviations(BATCH) if d.kind is DeviationKind.PLC_MISMATCH]


async def test_a_time_based_blend_is_never_ended_by_a_count_left_at_the_plc(
    engine: BatchEngine, driver: Driver, sim: Any, gateway: Any
) -> None:
    """A revolution-based batch left 200 in the PLC's revolutions setpoint: before this 15-min
    blend starts the engine writes 0 there (recorded), so the blend runs its time."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await set_model(sim, revolutions_setpoint=200)
    await driver.run(BATCH, stop_after="blend")
    writes = [
        c for c in engine.record(BATCH).plc_commands
        if c.command == "write" and c.arguments.get("tag") == "revolutions_setpoint"
    ]  # fmt: skip
    assert len(writes) == 1 and writes[0].result == "ok"
    assert int((await gateway.read("revolutions_setpoint")).value) == 0
    [elapsed] = [v for v in engine.values(BATCH) if v.name == "elapsed_time"]
    assert elapsed.in_limits and float(elapsed.value) >= 900
    assert not [d for d in engine.deviations(BATCH) if d.step_id == "blend"]
