"""Single validation rules, each shown by one change to a valid recipe."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.recipe.errors import RecipeInvalid
from hmi.recipe.loader import load_recipe_file, parse_recipe

SHIPPED = Path(__file__).resolve().parents[3] / "recipes"
FINAL_BLEND = (SHIPPED / "paracetamol-final-blend.toml").read_text(encoding="utf-8")


def problems_after(
    old: str, new: str, text: str = FINAL_BLEND
) -> list[tuple[str, str | None, str]]:
    assert old in text, f"test set-up: {old!r} is not in the recipe"
    with pytest.raises(RecipeInvalid) as caught:
        parse_recipe(text.replace(old, new, 1), "edited.toml")
    assert all(p.file == "edited.toml" for p in caught.value.problems)
    return [(p.where, p.field, p.message) for p in caught.value.problems]


def only(problems: list[tuple[str, str | None, str]]) -> tuple[str, str | None, str]:
    assert len(problems) == 1, problems
    return problems[0]


def test_the_unedited_recipe_is_valid() -> None:
    assert parse_recipe(FINAL_BLEND, "ok.toml").id == "PARA500-FB"


def test_setpoint_outside_its_limits() -> None:
    where, field, message = only(problems_after("setpoint = 12\n", "setpoint = 15\n"))
    assert (where, field) == ("parameter 'blend_speed'", "setpoint")
    assert "setpoint 15 is outside its limits 10..14" in message


def test_low_above_high() -> None:
    where, field, message = only(problems_after("low = 10\nhigh = 14", "low = 14\nhigh = 10"))
    assert (where, field) == ("parameter 'blend_speed'", "low")
    assert "low 14 is above high 10" in message


def test_speed_parameter_in_a_mass_unit() -> None:
    problems = problems_after('unit = "rpm"', 'unit = "kg"')
    assert [(where, field) for where, field, _ in problems] == [
        ("parameter 'blend_speed'", "unit")
    ] * 2
    assert "does not fit write_tag 'speed_setpoint'" in problems[0][2]
    assert "does not fit monitor_tag 'speed'" in problems[1][2]
    assert all("expected one of: rpm" in message for _, _, message in problems)


def test_minutes_and_seconds_are_one_family() -> None:
    text = FINAL_BLEND.replace(
        'unit = "min"\nsetpoint = 15\nlow = 14\nhigh = 16',
        'unit = "s"\nsetpoint = 900\nlow = 840\nhigh = 960',
    )
    recipe = parse_recipe(text, "seconds.toml")
    assert recipe.parameter("blend_time").setpoint_for_plc() == 900


def test_write_to_a_read_only_tag() -> None:
    problems = problems_after('write_tag = "speed_setpoint"', 'write_tag = "speed"')
    assert ("parameter 'blend_speed'", "write_tag") in [(w, f) for w, f, _ in problems]
    assert "read-only" in only([p for p in problems if p[1] == "write_tag"])[2]


def test_unknown_tag_in_a_wait_step() -> None:
    where, field, message = only(
        problems_after('tag = "lid_closed"\ncondition', 'tag = "lid_open"\ncondition')
    )
    assert (where, field) == ("step 'lid-interlock' (#5)", "tag")
    assert "unknown PLC tag 'lid_open'" in message


def test_wait_value_must_match_the_tag_kind() -> None:
    where, field, message = only(
        problems_after('condition = "equals"\nvalue = true', 'condition = "equals"\nvalue = "yes"')
    )
    assert (where, field) == ("step 'lid-interlock' (#5)", "value")
    assert "true/false" in message


def test_a_check_steps_plc_signal_is_a_true_false_tag() -> None:
    where, field, message = only(
        problems_after('{ tag = "lid_closed", value = true }', '{ tag = "speed", value = true }')
    )
    assert (where, field) == ("step 'close-lid' (#4)", "plc_signal.tag")
    assert "tag 'speed' is" in message and "true/false tag" in message


def test_unknown_step_kind_names_the_known_ones() -> None:
    where, field, message = only(problems_after('kind = "discharge"', 'kind = "empty"'))
    assert (where, field) == ("step 'discharge' (#10)", None)
    assert "unknown step kind 'empty'" in message and "discharge" in message


def test_run_needs_exactly_one_end_condition() -> None:
    where, field, message = only(
        problems_after('duration = "blend_time"', 'duration = "blend_time"\nrevolutions = "x"')
    )
    assert (where, field) == ("step 'blend' (#7)", "duration")
    assert "exactly one of duration" in message


def test_run_speed_must_be_set_first() -> None:
    problems = problems_after(
        'parameters = ["blend_speed", "blend_time"]', 'parameters = ["blend_time"]'
    )
    assert only(problems)[:2] == ("step 'blend' (#7)", "speed")
    assert "not set by an earlier set_parameters step" in problems[0][2]


def test_unused_parameter() -> None:
    where, field, message = only(
        problems_after(
            'monitor = ["blend_speed", "motor_current", "product_temperature"]',
            'monitor = ["blend_speed", "motor_current"]',
        )
    )
    assert (where, field) == ("parameter 'product_temperature'", None)
    assert "declared but not used" in message


def test_charge_needs_exactly_one_tolerance() -> None:
    where, field, message = only(
        problems_after("tolerance_pct = 0.5", "tolerance_abs = 0.5\ntolerance_pct = 0.5")
    )
    assert (where, field) == ("step 'charge-granulate' (#2)", "tolerance_pct")
    assert "exactly one of tolerance_pct" in message


def test_floats_never_appear_numbers_are_decimals() -> None:
    recipe = parse_recipe(FINAL_BLEND, "ok.toml")
    speed = recipe.parameter("motor_current")
    assert str(speed.setpoint) == "4.5" and type(speed.setpoint).__name__ == "Decimal"


def test_text_where_a_number_belongs() -> None:
    where, field, message = only(problems_after("target = 180.0", 'target = "180.0"'))
    assert (where, field) == ("step 'charge-granulate' (#2)", "target")
    assert "expected a number" in message


def test_format_version_is_checked() -> None:
    where, field, message = only(problems_after("format = 1", "format = 2"))
    assert (where, field) == ("recipe", "format")
    assert "format 1" in message


def test_empty_procedure() -> None:
    text = FINAL_BLEND[: FINAL_BLEND.index("[parameters.")]
    where, field, message = only(problems_after("version = 4", "version = 4", text))
    assert (where, field) == ("recipe", "steps")
    assert "empty" in message


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(
        FINAL_BLEND.replace("°C", "degC").encode("utf-8") + "# \xe9\n".encode("latin-1")
    )
    with pytest.raises(RecipeInvalid) as caught:
        load_recipe_file(path)
    assert [str(p) for p in caught.value.problems] == [
        f"{path}: is not UTF-8 text (byte {len(path.read_bytes()) - 2})"
    ]


def test_missing_file_is_a_clear_problem(tmp_path: Path) -> None:
    with pytest.raises(RecipeInvalid) as caught:
        load_recipe_file(tmp_path / "nope.toml")
    assert "cannot be read" in caught.value.problems[0].message
