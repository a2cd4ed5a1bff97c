"""The recipes shipped in recipes/ validate, and read the way a batch engine will use them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from hmi.recipe.loader import load_recipe_file
from hmi.recipe.model import ChargeStep, Recipe, RunStep, SampleStep, SetParametersStep, WaitStep

SHIPPED = Path(__file__).resolve().parents[3] / "recipes"


def test_at_least_three_recipes_ship_and_all_validate() -> None:
    loaded = [load_recipe_file(path) for path in sorted(SHIPPED.glob("*.toml"))]
    assert {item.recipe.id for item in loaded} == {"PARA500-FB", "IBU200-PB", "CLV-BLENDER-01"}
    assert len({item.sha256 for item in loaded}) == len(loaded)


def final_blend() -> Recipe:
    return load_recipe_file(SHIPPED / "paracetamol-final-blend.toml").recipe


def test_final_blend_procedure_in_order() -> None:
    recipe = final_blend()
    assert (recipe.id, recipe.version) == ("PARA500-FB", 4)
    assert [step.kind for step in recipe.steps] == [
        "check", "charge", "charge", "check", "wait", "set_parameters", "run", "wait",
        "sample", "discharge", "signature", "signature",
    ]  # fmt: skip
    assert recipe.steps[0].verified_by_role == "supervisor"  # type: ignore[union-attr]


def test_engine_reads_charge_tolerances_in_kilograms() -> None:
    granulate = final_blend().step("charge-granulate")
    assert isinstance(granulate, ChargeStep)
    assert granulate.acceptance_range() == (Decimal("179.10"), Decimal("180.90"))
    assert granulate.accepts(Decimal("180.85")) and not granulate.accepts(Decimal("180.95"))
    assert granulate.lot_required and granulate.weighing == "load_cell"
    mgst = final_blend().step("charge-mgst")
    assert isinstance(mgst, ChargeStep)
    assert mgst.acceptance_range() == (Decimal("0.8820"), Decimal("0.9180"))
    assert mgst.weighing == "manual" and mgst.verified_by_role == "supervisor"


def test_engine_converts_setpoints_to_plc_units() -> None:
    recipe = final_blend()
    setting = recipe.step("set-blend")
    assert isinstance(setting, SetParametersStep)
    writes = {
        recipe.parameter(name).write_tag: recipe.parameter(name).setpoint_for_plc()
        for name in setting.parameters
    }
    assert writes == {"speed_setpoint": Decimal(12), "blend_time_setpoint": Decimal(900)}
    speed = recipe.parameter("blend_speed")
    assert speed.critical and speed.limits_for_tag("speed") == (Decimal(10), Decimal(14))
    assert speed.within_limits(Decimal("13.9")) and not speed.within_limits(Decimal("14.1"))


def test_engine_reads_run_monitoring_and_wait_conditions() -> None:
    recipe = final_blend()
    run = recipe.step("blend")
    assert isinstance(run, RunStep)
    assert (run.speed, run.duration, run.revolutions) == ("blend_speed", "blend_time", None)
    monitored = {name: recipe.parameter(name).monitor_tag for name in run.monitor}
    assert monitored == {
        "blend_speed": "speed",
        "motor_current": "motor_current",
        "product_temperature": "product_temperature",
    }
    lid = recipe.step("lid-interlock")
    assert isinstance(lid, WaitStep)
    assert lid.is_met(True) and not lid.is_met(False) and lid.timeout_s == 300
    stopped = recipe.step("stopped")
    assert isinstance(stopped, WaitStep)
    assert stopped.is_met(Decimal(0)) and not stopped.is_met(Decimal("0.5"))
    samples = recipe.step("bu-samples")
    assert isinstance(samples, SampleStep)
    assert samples.sample_ids == ("TOP", "MIDDLE", "BOTTOM")
    assert samples.accepts(Decimal("98.7")) and not samples.accepts(Decimal("110.1"))


def test_pre_blend_ends_on_revolutions_and_weighs_grams() -> None:
    recipe = load_recipe_file(SHIPPED / "ibuprofen-pre-blend.toml").recipe
    run = recipe.step("pre-blend")
    assert isinstance(run, RunStep) and run.revolutions == "blend_revolutions"
    assert recipe.parameter("product_temperature").unit == "°C"  # written as degC
    silica = recipe.step("charge-csd")
    assert isinstance(silica, ChargeStep)
    assert silica.acceptance_range("kg") == (Decimal("1.47"), Decimal("1.53"))


def test_recipe_model_is_frozen_and_enforces_rules_without_a_file() -> None:
    recipe = final_blend()
    with pytest.raises(ValidationError):
        recipe.version = 4  # type: ignore[misc]
    data = recipe.canonical_data()
    data["parameters"]["blend_speed"]["setpoint"] = Decimal(20)
    with pytest.raises(ValidationError, match="outside its limits"):
        Recipe.model_validate(data)
    assert Recipe.model_validate(recipe.canonical_data()) == recipe
