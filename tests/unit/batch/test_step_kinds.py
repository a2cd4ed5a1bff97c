"""What each step kind of the shipped recipes asks of a person (hmi.batch.step_kinds): the
entries, the data they make, and the signatures; the screen and the engine both use these."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from hmi.auth.roles import Meaning
from hmi.batch import step_kinds
from hmi.batch.errors import StepDataInvalid, StepNotReady
from hmi.batch.outcome import NewValue
from hmi.recipe.loader import load_recipe_file
from hmi.recipe.model import Step

RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def steps_of(name: str) -> dict[str, Step]:
    recipe = load_recipe_file(RECIPES / name).recipe
    return {step.id: step for step in recipe.steps}


def test_entries_data_and_signatures_of_the_final_blend() -> None:
    steps = steps_of("paracetamol-final-blend.toml")
    manual = steps["charge-mgst"]
    [lot, quantity] = step_kinds.entries(manual)
    assert (lot.name, lot.number) == ("lot", False)
    assert (quantity.name, quantity.label, quantity.number) == ("quantity", "Quantity (kg)", True)
    assert (quantity.low, quantity.high) == (Decimal("0.882"), Decimal("0.918"))
    typed = {"lot": "MG-1", "quantity": "0,90"}
    assert step_kinds.step_data(manual, typed) == typed
    assert step_kinds.missing(manual, {"lot": " "}) == ["lot", "quantity"]
    plan = step_kinds.signatures(manual)
    assert (plan.meaning, plan.verifier_role, plan.signer_role) == (
        Meaning.PERFORMED, "supervisor", None,
    )  # fmt: skip
    samples = steps["bu-samples"]
    names = [e.name for e in step_kinds.entries(samples)]
    assert names == ["sample-TOP", "sample-MIDDLE", "sample-BOTTOM"]
    data = step_kinds.step_data(samples, {"sample-TOP": "99.1"})
    assert data == {"results": {"TOP": "99.1", "MIDDLE": "", "BOTTOM": ""}}
    assert step_kinds.step_data(steps["close-lid"], {}) == {"confirmed": True}
    assert step_kinds.entries(steps["blend"]) == []
    assert not step_kinds.signatures(steps["blend"]).needed
    verified = step_kinds.signatures(steps["sign-verified"])
    assert (verified.meaning, verified.signer_role) == (Meaning.VERIFIED, "supervisor")


def test_the_cleaning_records_review_is_signed_by_qa() -> None:
    steps = steps_of("blender-cleaning-verification.toml")
    plan = step_kinds.signatures(steps["sign-reviewed"])
    assert (plan.meaning, plan.signer_role, plan.verifier_role) == (Meaning.REVIEWED, "qa", None)


def test_what_was_entered_decides_a_sample_step_and_a_result_out_of_specification_deviates() -> (
    None
):
    steps = steps_of("paracetamol-final-blend.toml")
    samples = steps["bu-samples"]
    decided = step_kinds.entered_outcome(
        samples, {"results": {"TOP": "86,0", "MIDDLE": "100.3", "BOTTOM": "98.8"}}
    )
    assert decided is not None
    values, deviations = decided
    assert [(v.name, v.value, v.in_limits) for v in values] == [
        ("result:TOP", "86.0", False), ("result:MIDDLE", "100.3", True),
        ("result:BOTTOM", "98.8", True),
    ]  # fmt: skip
    [oos] = deviations
    assert oos.requires_cosign and oos.actual == "86.0"
    with pytest.raises(StepDataInvalid, match="missing BOTTOM"):
        step_kinds.entered_outcome(samples, {"results": {"TOP": "99", "MIDDLE": "99"}})
    assert step_kinds.entered_outcome(steps["blend"], {}) is None  # the equipment decides
    assert step_kinds.entered_outcome(steps["discharge"], {"container_id": " IBC-1 "}) == (
        [NewValue("container_id", "IBC-1", "entered")], [],
    )  # fmt: skip


def test_a_check_and_a_charge_are_decided_from_the_entries_and_the_readings() -> None:
    steps = steps_of("paracetamol-final-blend.toml")
    lid = steps["close-lid"]
    assert step_kinds.readings(lid) == ("lid_closed",)
    with pytest.raises(StepNotReady, match="the PLC reports lid_closed false"):
        step_kinds.evaluate(lid, {"confirmed": True}, {"lid_closed": False})
    decided = step_kinds.evaluate(lid, {"confirmed": True}, {"lid_closed": True})
    assert decided is not None
    assert [(v.name, v.value, v.source) for v in decided[0]] == [
        ("confirmed", "true", "entered"), ("lid_closed", "true", "plc"),
    ]  # fmt: skip
    with pytest.raises(StepDataInvalid, match="confirm 'Close and latch the lid'"):
        step_kinds.check_entries(lid, {})
    granulate = steps["charge-granulate"]
    assert step_kinds.readings(granulate) == ("weight_stable", "weight")
    with pytest.raises(StepNotReady, match="not stable"):
        step_kinds.evaluate(granulate, {"lot": "IG-1"}, {"weight_stable": False}, Decimal(0))
    decided = step_kinds.evaluate(
        granulate, {"lot": "IG-1"}, {"weight_stable": True, "weight": 195.5}, Decimal("10.0")
    )
    assert decided is not None
    values, [deviation] = decided
    assert [(v.name, v.value) for v in values] == [
        ("lot", "IG-1"), ("gross", "195.5"), ("quantity", "185.5"),
    ]  # fmt: skip
    assert deviation.parameter == "quantity" and deviation.actual == "185.5"
    assert not step_kinds.decides(steps["blend"])  # the engine runs the equipment itself
