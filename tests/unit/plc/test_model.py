"""The blender model on its own: PackML transitions, interlocks, physics, faults, determinism."""

from __future__ import annotations

import pytest

from plc_sim.model import (
    BlenderModel,
    CommandRejected,
    Fault,
    Mode,
    PackMLState,
    RejectKind,
)

S = PackMLState


def advance_until(model: BlenderModel, state: PackMLState, limit_s: float = 120.0) -> float:
    """Advance in 50 ms simulated steps until ``state``; return the simulated time it took."""
    start = model.sim_time
    while model.state is not state:
        if model.sim_time - start > limit_s:
            raise AssertionError(f"still {model.state} after {limit_s} s, expected {state}")
        model.run_for(0.05)
    return model.sim_time - start


def idle_model(**kwargs: object) -> BlenderModel:
    model = BlenderModel(seed=7, **kwargs)  # type: ignore[arg-type]
    model.reset()
    advance_until(model, S.IDLE)
    return model


def running_model(blend_time: float = 600.0) -> BlenderModel:
    model = idle_model()
    model.set_blend_time_setpoint(blend_time)
    model.start()
    advance_until(model, S.EXECUTE)
    return model


def rejected(kind: RejectKind, fn: object, *args: object) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.kind is kind
    return info.value


# ---------------------------------------------------------------- state machine


def test_powers_up_stopped_and_resets_to_idle_through_resetting() -> None:
    model = BlenderModel(seed=1)
    assert model.state is S.STOPPED
    model.reset()
    assert model.state is S.RESETTING
    model.run_for(0.5)
    assert model.state is S.RESETTING
    assert advance_until(model, S.IDLE) == pytest.approx(0.5, abs=0.06)


def test_full_batch_cycle_idle_to_complete_and_back() -> None:
    model = idle_model()
    model.set_speed_setpoint(12.0)
    model.set_blend_time_setpoint(120.0)
    model.start()
    assert model.state is S.STARTING
    advance_until(model, S.EXECUTE)
    advance_until(model, S.COMPLETING)
    assert model.elapsed_time >= 120.0
    # 2.4 s ramp at 5 rpm/s then 12 rpm: revolutions = (120 - 1.2) s x 12 rpm / 60
    assert model.revolutions == pytest.approx((120 - 1.2) * 12 / 60, abs=0.3)
    advance_until(model, S.COMPLETE)
    assert model.speed == 0.0
    model.reset()
    advance_until(model, S.IDLE)
    assert model.elapsed_time == 0.0
    assert model.revolutions == 0.0


def test_speed_ramps_at_the_ramp_rate_with_noise() -> None:
    model = running_model()
    model.run_for(1.0)
    assert model.speed == pytest.approx(5.0, abs=0.15)
    model.run_for(5.0)
    assert model.speed == pytest.approx(model.speed_setpoint, abs=0.15)
    readings = set()
    for _ in range(20):
        model.run_for(0.05)
        readings.add(model.speed)
    assert len(readings) > 10  # an encoder reading, not a constant


def test_time_scale_runs_a_fifteen_minute_blend_in_a_second() -> None:
    model = BlenderModel(seed=3, time_scale=900.0)
    model.reset()
    model.tick(0.01)
    model.tick(0.01)
    assert model.state is S.IDLE
    model.set_blend_time_setpoint(900.0)
    model.start()
    for _ in range(25):  # 25 scans of 50 ms of wall time
        model.tick(0.05)
    assert model.state in (S.COMPLETING, S.COMPLETE)
    assert model.elapsed_time >= 900.0


def test_revolutions_setpoint_ends_the_blend_by_count() -> None:
    model = idle_model()
    model.set_speed_setpoint(20.0)
    model.set_revolutions_setpoint(30)
    model.start()
    advance_until(model, S.COMPLETING)
    assert 30 <= model.revolutions < 30.5
    assert model.elapsed_time < model.blend_time_setpoint


def test_hold_stops_rotation_and_freezes_the_blend_timer() -> None:
    model = running_model()
    model.run_for(30)
    model.hold()
    assert model.state is S.HOLDING
    advance_until(model, S.HELD)
    frozen = model.elapsed_time
    model.run_for(60)
    assert model.elapsed_time == frozen
    assert model.speed == 0.0
    model.unhold()
    assert model.state is S.UNHOLDING
    advance_until(model, S.EXECUTE)
    model.run_for(10)
    assert model.elapsed_time > frozen


def test_stop_and_abort_and_clear_paths() -> None:
    model = running_model()
    model.stop()
    assert model.state is S.STOPPING
    advance_until(model, S.STOPPED)
    model.reset()
    advance_until(model, S.IDLE)
    model.set_blend_time_setpoint(600)
    model.start()
    advance_until(model, S.EXECUTE)
    model.run_for(5)
    model.abort()
    assert model.state is S.ABORTING
    braking = advance_until(model, S.ABORTED)
    assert braking < 1.0  # the brake stops the drum far faster than the ramp
    model.clear()
    assert model.state is S.CLEARING
    advance_until(model, S.STOPPED)


@pytest.mark.parametrize(
    ("setup", "command"),
    [
        ("stopped", "start"),
        ("stopped", "hold"),
        ("idle", "unhold"),
        ("idle", "clear"),
        ("execute", "reset"),
        ("execute", "start"),
        ("stopped", "stop"),
    ],
)
def test_commands_in_the_wrong_state_are_refused_and_change_nothing(
    setup: str, command: str
) -> None:
    model = {
        "stopped": lambda: BlenderModel(seed=1),
        "idle": idle_model,
        "execute": running_model,
    }[setup]()
    before = model.state
    error = rejected(RejectKind.STATE, getattr(model, command))
    assert model.state is before
    assert command.capitalize() in error.reason
    assert model.last_command_result.startswith("rejected:")


# ---------------------------------------------------------------- interlocks


def test_start_needs_lid_closed_valve_closed_and_estop_released() -> None:
    model = idle_model()
    model.open_lid()
    assert "lid open" in rejected(RejectKind.INTERLOCK, model.start).reason
    model.close_lid()
    model.discharge()
    assert "valve" in rejected(RejectKind.INTERLOCK, model.start).reason
    model.close_valve()
    model.start()
    assert model.state is S.STARTING


def test_start_is_refused_in_service_mode_and_mode_changes_only_at_rest() -> None:
    model = idle_model()
    model.set_mode("service")
    assert model.mode is Mode.SERVICE
    rejected(RejectKind.MODE, model.start)
    model.set_mode("production")
    model.start()
    rejected(RejectKind.STATE, model.set_mode, "service")
    rejected(RejectKind.ARGUMENT, BlenderModel(seed=1).set_mode, "maintenance")


def test_lid_cannot_open_while_the_drum_turns() -> None:
    model = running_model()
    rejected(RejectKind.INTERLOCK, model.open_lid)
    assert model.lid_closed


def test_charging_needs_the_lid_open_and_room_in_the_bin() -> None:
    model = idle_model()
    assert "open the lid" in rejected(RejectKind.INTERLOCK, model.charge, 50.0).reason
    model.open_lid()
    rejected(RejectKind.ARGUMENT, model.charge, 0.0)
    rejected(RejectKind.ARGUMENT, model.charge, 501.0)
    model.charge(400.0)
    assert "remaining capacity" in rejected(RejectKind.ARGUMENT, model.charge, 150.0).reason


def test_estop_aborts_and_must_be_released_before_clear() -> None:
    model = running_model()
    model.run_for(5)
    model.inject_fault(Fault.ESTOP)
    model.run_for(0.05)
    assert model.state is S.ABORTING
    assert model.estop
    advance_until(model, S.ABORTED)
    assert [a.code for a in model.active_alarms] == ["ESTOP"]
    assert "emergency stop" in rejected(RejectKind.INTERLOCK, model.clear).reason
    rejected(RejectKind.INTERLOCK, model.discharge)
    model.clear_fault(Fault.ESTOP)
    model.run_for(0.05)
    assert model.active_alarms == ()
    model.clear()
    advance_until(model, S.STOPPED)


def test_estop_while_idle_also_aborts() -> None:
    model = idle_model()
    model.inject_fault(Fault.ESTOP)
    advance_until(model, S.ABORTED, limit_s=1.0)


def test_lid_opened_while_running_trips_and_latches_until_clear() -> None:
    model = running_model()
    model.run_for(5)
    model.inject_fault(Fault.LID_OPEN)
    model.run_for(0.05)
    assert not model.lid_closed
    assert model.state is S.ABORTING
    advance_until(model, S.ABORTED)
    model.clear_fault(Fault.LID_OPEN)
    model.run_for(1)
    assert [a.code for a in model.active_alarms] == ["LID_OPEN_RUNNING"]
    model.clear()
    advance_until(model, S.STOPPED)
    assert model.active_alarms == ()


def test_discharge_valve_open_while_turning_trips() -> None:
    model = idle_model()
    model.set_mode("service")
    model.jog(3.0)
    model.run_for(1)
    model.discharge_valve_open = True  # a valve that opened by itself
    model.run_for(0.05)
    assert model.state is S.ABORTING


# ---------------------------------------------------------------- process physics


def test_charged_material_lands_over_time_and_the_reading_settles() -> None:
    model = idle_model()
    model.open_lid()
    model.run_for(2)
    assert model.weight_stable
    model.charge(180.0)
    assert not model.weight_stable
    peak = 0.0
    for _ in range(int(30 / 0.05)):
        model.run_for(0.05)
        peak = max(peak, model.weight)
    assert model.mass == pytest.approx(180.0)
    assert peak > 180.5  # impact and spring: the reading overshoots before settling
    assert model.weight == pytest.approx(180.0, abs=0.05)
    assert model.weight_stable


def test_discharge_empties_the_bin_and_closes_the_valve_itself() -> None:
    model = idle_model()
    model.open_lid()
    model.charge(100.0)
    model.run_for(20)
    model.close_lid()
    model.discharge()
    assert model.discharge_valve_open
    model.run_for(4)
    assert model.mass < 100.0
    model.run_for(10)
    assert model.mass == 0.0
    assert not model.discharge_valve_open


def test_motor_current_grows_with_load_and_speed() -> None:
    light, heavy = running_model(), idle_model()
    heavy.open_lid()
    heavy.charge(400.0)
    heavy.run_for(60)
    heavy.close_lid()
    heavy.set_blend_time_setpoint(600)
    heavy.start()
    advance_until(heavy, S.EXECUTE)
    light.run_for(10)
    heavy.run_for(10)
    assert 2.0 < light.motor_current < heavy.motor_current < 8.0
    assert idle_model().motor_current == 0.0


def test_product_warms_slightly_while_blending() -> None:
    model = running_model(blend_time=3600)
    start = model.product_temperature
    model.run_for(600)
    assert start + 0.5 < model.product_temperature < 40.0


def test_jog_is_limited_and_stops_by_itself() -> None:
    model = idle_model()
    rejected(RejectKind.MODE, model.jog, 2.0)
    model.set_mode("service")
    rejected(RejectKind.ARGUMENT, model.jog, 6.0)
    model.jog(3.0)
    model.run_for(2)
    assert model.speed == pytest.approx(3.0, abs=0.15)
    assert model.revolutions == 0.0  # jogging is not blending
    model.run_for(5)
    assert model.speed == 0.0


def test_blend_time_is_latched_while_the_blend_runs() -> None:
    model = running_model()
    rejected(RejectKind.STATE, model.set_blend_time_setpoint, 60.0)
    model.set_speed_setpoint(15.0)  # speed may change on the fly
    assert model.speed_setpoint == 15.0
    rejected(RejectKind.ARGUMENT, model.set_speed_setpoint, 31.0)


# ---------------------------------------------------------------- faults


def test_over_current_trips_the_motor_and_aborts() -> None:
    model = running_model()
    model.run_for(5)
    model.inject_fault(Fault.OVER_CURRENT)
    model.run_for(0.5)
    assert model.motor_current > 8.0
    assert model.state is S.EXECUTE  # the overload relay waits one second
    advance_until(model, S.ABORTED, limit_s=3)
    assert [a.code for a in model.active_alarms] == ["MOTOR_OVERCURRENT"]
    events = model.drain_alarm_events()
    assert [(e.code, e.active) for e in events] == [("MOTOR_OVERCURRENT", True)]
    assert events[0].severity == 900


def test_over_current_fault_does_nothing_while_the_drum_is_at_rest() -> None:
    model = idle_model()
    model.inject_fault(Fault.OVER_CURRENT)
    model.run_for(30)
    assert model.state is S.IDLE
    assert model.active_alarms == ()


def test_over_temperature_holds_the_batch_until_the_product_cools() -> None:
    model = running_model(blend_time=3600)
    model.inject_fault(Fault.OVER_TEMPERATURE)
    advance_until(model, S.HELD, limit_s=60)
    assert model.product_temperature >= 39.9
    assert [a.code for a in model.active_alarms] == ["TEMP_HIGH"]
    assert "temperature" in rejected(RejectKind.INTERLOCK, model.unhold).reason
    model.clear_fault(Fault.OVER_TEMPERATURE)
    model.run_for(60)
    assert model.product_temperature < 38.0
    assert model.active_alarms == ()
    model.unhold()
    advance_until(model, S.EXECUTE)
    events = [(e.code, e.active) for e in model.drain_alarm_events()]
    assert events == [("TEMP_HIGH", True), ("TEMP_HIGH", False)]


def test_load_cell_drift_raises_a_warning_and_fails_the_calibration_check() -> None:
    model = idle_model()
    model.set_mode("service")
    assert model.calibration_check().passed
    model.inject_fault(Fault.LOAD_CELL_DRIFT)
    model.run_for(30)
    assert [a.code for a in model.active_alarms] == ["LOADCELL_DRIFT"]
    assert model.weight > 0.5
    check = model.calibration_check()
    assert not check.passed
    assert check.measured_kg - check.reference_kg > 0.5
    model.clear_fault(Fault.LOAD_CELL_DRIFT)
    model.run_for(0.1)
    assert model.active_alarms == ()
    assert model.calibration_check().passed


def test_load_cell_failure_invalidates_the_weight() -> None:
    model = idle_model()
    model.run_for(2)
    assert model.weight_stable and model.load_cell_ok
    model.inject_fault(Fault.LOAD_CELL_FAILURE)
    model.run_for(0.1)
    assert not model.load_cell_ok
    assert not model.weight_stable
    assert [a.code for a in model.active_alarms] == ["LOADCELL_FAULT"]


def test_ignored_writes_keep_the_old_setpoints() -> None:
    model = idle_model()
    model.inject_fault(Fault.IGNORE_WRITES)
    model.set_speed_setpoint(20.0)
    model.set_blend_time_setpoint(60.0)
    assert (model.speed_setpoint, model.blend_time_setpoint) == (12.0, 900.0)
    model.clear_fault()
    model.set_speed_setpoint(20.0)
    assert model.speed_setpoint == 20.0
    assert model.active_faults == ()


# ---------------------------------------------------------------- determinism


def scripted_run(seed: int) -> list[tuple[object, ...]]:
    model = BlenderModel(seed=seed, time_scale=10.0)
    model.reset()
    trace = []
    for step in range(200):
        if step == 20:
            model.open_lid()
            model.charge(150.0)
        if step == 60:
            model.close_lid()
            model.start()
        if step == 150:
            model.inject_fault(Fault.OVER_TEMPERATURE)
        model.tick(0.05)
        snap = model.snapshot()
        trace.append(
            (snap.state, snap.speed, snap.weight, snap.motor_current, snap.product_temperature)
        )
    return trace


def test_same_seed_same_trace_and_another_seed_another_noise() -> None:
    first, again, other = scripted_run(42), scripted_run(42), scripted_run(43)
    assert first == again
    assert [t[0] for t in first] == [t[0] for t in other]  # same behaviour...
    assert first != other  # ...different measurement noise


def test_time_scale_must_be_positive() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        BlenderModel(time_scale=0)
    with pytest.raises(ValueError, match="backwards"):
        BlenderModel().tick(-1)
