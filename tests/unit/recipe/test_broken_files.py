"""Broken recipe files: every problem is reported at once, naming file, place and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.recipe.errors import Problem, RecipeInvalid
from hmi.recipe.loader import load_recipe_file

BROKEN = Path(__file__).parent / "broken"

#: file -> every (where, field, message fragment) the validator must report, in order.
EXPECTED: dict[str, list[tuple[str, str | None, str]]] = {
    "unknown-keys.toml": [
        ("recipe", "descripton", "unknown key 'descripton' (did you mean 'description'?)"),
        ("parameter 'blend_speed'", "setpoint", "required but missing"),
        ("parameter 'blend_speed'", "setpiont", "unknown key 'setpiont'"),
        ("step 'confirm' (#1)", "text", "required but missing"),
        ("step 'confirm' (#1)", "txt", "expected one of: id, title, instructions, kind, text"),
    ],
    "duplicate-step-ids.toml": [
        ("step 'clearance' (#3)", "id", "duplicate step ID 'clearance' (first used by step #1)"),
    ],
    "limits.toml": [
        ("parameter 'blend_speed'", "low", "low 14 is above high 10"),
        ("parameter 'blend_time'", "setpoint", "setpoint 20 is outside its limits 14..16"),
        ("step 'bu' (#3)", "low", "low 110 is above high 90"),
    ],
    "unknown-references.toml": [
        ("parameter 'blend_speed'", "write_tag", "unknown PLC tag 'speed_sp'"),
        ("step 'set' (#1)", "parameters", "unknown parameter 'blend_tme'"),
        ("step 'lid' (#2)", "tag", "unknown PLC tag 'lid_shut'"),
        ("step 'blend' (#3)", "duration", "not set by an earlier set_parameters step"),
        ("step 'blend' (#3)", "monitor", "unknown parameter 'motor_amps'"),
    ],
    "wrong-units.toml": [
        ("parameter 'blend_speed'", "unit", "unit 'kg' (mass) does not fit write_tag"),
        ("parameter 'blend_time'", "unit", "unknown unit 'furlong'"),
        ("step 'charge' (#1)", "unit", "expected a mass unit (kg or g), got 'rpm'"),
        ("step 'cool' (#2)", "unit", "unit 'min' does not fit tag 'product_temperature'"),
        ("step 'blend' (#4)", "speed", "parameter 'rotation' is in 's'; a run's speed needs rpm"),
    ],
    "empty-procedure.toml": [
        ("recipe", "steps", "the procedure is empty"),
    ],
    "segregation.toml": [
        ("step 'clearance' (#1)", "verified_by_role", "the role 'operator' may not verify"),
        ("step 'weigh' (#2)", "verified_by_role", "needs a second-person check"),
        ("step 'admin-sign' (#3)", "role", "an administrator cannot sign"),
        ("step 'operator-verifies' (#4)", "role", "'operator' may not sign 'verified'"),
        ("step 'approve' (#5)", "meaning", "got 'approved'"),
    ],
    "not-toml.toml": [
        ("file", None, "is not valid TOML"),
    ],
}


def test_every_broken_file_has_expectations() -> None:
    assert sorted(p.name for p in BROKEN.glob("*.toml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_broken_file_reports_every_problem(name: str) -> None:
    path = BROKEN / name
    with pytest.raises(RecipeInvalid) as caught:
        load_recipe_file(path)
    problems = caught.value.problems
    assert [(p.where, p.field) for p in problems] == [(w, f) for w, f, _ in EXPECTED[name]]
    for problem, (_where, _field, fragment) in zip(problems, EXPECTED[name], strict=True):
        assert fragment in problem.message
        assert problem.file == str(path)
        assert str(problem).startswith(f"{path}: ")
    assert str(path) in str(caught.value)


def test_problem_text_names_file_place_and_field() -> None:
    problem = Problem("r.toml", "step 'blend' (#7)", "speed", "expected rpm")
    assert str(problem) == "r.toml: step 'blend' (#7), field 'speed': expected rpm"
    assert str(Problem("r.toml", "file", None, "is not UTF-8 text")) == "r.toml: is not UTF-8 text"
