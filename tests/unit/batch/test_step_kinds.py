"""What each step kind of the shipped recipes asks of a person (hmi.batch.step_kinds): the
entries, the data they make, and the signatures; the screen and the engine both use these."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from hmi.auth.roles import Meaning
from hmi.batch import step_kinds
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
