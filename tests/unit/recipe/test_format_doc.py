"""docs/recipe-format.md stays true: its annotated example is a valid recipe that means what
its comments say, and its tag and unit tables list exactly what the validator accepts."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from hmi.recipe.loader import load_recipe_text
from hmi.recipe.model import STEP_KINDS, ChargeStep
from hmi.recipe.tags import PLC_TAGS
from hmi.recipe.units import UNIT_ALIASES, UNITS

DOC = (Path(__file__).resolve().parents[3] / "docs" / "recipe-format.md").read_text(
    encoding="utf-8"
)


def test_annotated_example_is_valid_and_means_what_it_says() -> None:
    example = DOC.split("## 9. Annotated example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    recipe = load_recipe_text(example, "docs/recipe-format.md").recipe
    assert recipe.parameter("blend_time").setpoint_for_plc() == Decimal(900)
    granulate = recipe.step("charge-granulate")
    lubricant = recipe.step("charge-lubricant")
    assert isinstance(granulate, ChargeStep) and isinstance(lubricant, ChargeStep)
    assert granulate.acceptance_range() == (Decimal("99.500"), Decimal("100.500"))
    assert lubricant.acceptance_range() == (Decimal(490), Decimal(510))
    assert {step.kind for step in recipe.steps} == set(STEP_KINDS)


def test_every_step_kind_tag_and_unit_is_documented() -> None:
    for kind in STEP_KINDS:
        assert f"### `{kind}`" in DOC, kind
    documented_tags = set(re.findall(r"^\| `([a-z_]+)` \| (?:text|number|true/false)", DOC, re.M))
    assert documented_tags == set(PLC_TAGS)
    for symbol in [*UNITS, *UNIT_ALIASES]:
        assert f"`{symbol}`" in DOC, symbol
