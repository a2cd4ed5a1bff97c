"""Checking values against the tag map: nothing implausible is shown or sent as good."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hmi.plc.errors import PlcValueRejected
from hmi.plc.settings import ArgSpec, TagSpec
from hmi.plc.tagmap import check_arguments, check_value, check_write, received, same_value
from hmi.plc.types import Quality

NOW = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)
SPEED = TagSpec(path="Blender/Speed", type="float", unit="rpm", low=0, high=35)
SETPOINT = TagSpec(
    path="Blender/SpeedSetpoint", type="float", unit="rpm", low=0, high=30, writable=True
)
MODE = TagSpec(path="Blender/Mode", type="str", choices=("production", "service"))


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("float", 12, 12.0),
        ("float", 12.5, 12.5),
        ("int", 7, 7),
        ("bool", False, False),
        ("str", "Idle", "Idle"),
        ("str_list", ["ESTOP", "TEMP_HIGH"], ("ESTOP", "TEMP_HIGH")),
        ("str_list", [], ()),
    ],
)
def test_values_of_the_right_type_pass_as_python_values(
    kind: str, value: object, expected: object
) -> None:
    assert check_value(kind, value) == expected
    assert type(check_value(kind, value)) is type(expected)


@pytest.mark.parametrize(
    ("kind", "value", "fragment"),
    [
        ("float", "12", "expected a number"),
        ("float", True, "expected a number"),
        ("float", float("nan"), "finite"),
        ("int", 7.0, "expected an integer"),
        ("int", False, "expected an integer"),
        ("bool", 1, "true/false"),
        ("str", 3, "expected text"),
        ("str_list", ["A", 1], "list of texts"),
        ("float", None, "no value"),
    ],
)
def test_values_of_the_wrong_type_are_refused_with_a_reason(
    kind: str, value: object, fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_value(kind, value)


def test_range_and_choices_are_enforced_inclusively() -> None:
    assert check_value("float", 0.0, low=0, high=30) == 0.0
    assert check_value("float", 30.0, low=0, high=30) == 30.0
    with pytest.raises(ValueError, match=r"above the valid range 0\.\.30"):
        check_value("float", 30.01, low=0, high=30)
    with pytest.raises(ValueError, match=r"below the valid range -10\.\.100"):
        check_value("float", -10.5, low=-10, high=100)
    with pytest.raises(ValueError, match="not one of production, service"):
        check_value("str", "maintenance", choices=("production", "service"))


def test_received_value_is_good_only_when_status_type_and_range_check_out() -> None:
    good = received("speed", SPEED, 12.3, status_good=True, status_name="Good", timestamp=NOW)
    assert good.good and good.value == 12.3 and good.unit == "rpm" and good.timestamp == NOW
    out_of_range = received(
        "speed", SPEED, 40.0, status_good=True, status_name="Good", timestamp=NOW
    )
    wrong_type = received(
        "speed", SPEED, "fast", status_good=True, status_name="Good", timestamp=NOW
    )
    bad_status = received(
        "speed", SPEED, 12.3, status_good=False, status_name="BadSensorFailure", timestamp=NOW
    )
    for update, fragment in (
        (out_of_range, "above the valid range"),
        (wrong_type, "expected a number"),
        (bad_status, "BadSensorFailure"),
    ):
        assert update.quality is Quality.BAD
        assert update.value is None  # never a number that looks good
        assert fragment in update.reason


def test_writes_are_checked_before_anything_is_sent() -> None:
    assert check_write("speed_setpoint", SETPOINT, 14) == 14.0
    with pytest.raises(PlcValueRejected, match="read-only"):
        check_write("speed", SPEED, 10.0)
    with pytest.raises(PlcValueRejected, match="above the valid range") as info:
        check_write("speed_setpoint", SETPOINT, 31.0)
    assert info.value.tag == "speed_setpoint" and info.value.value == 31.0
    with pytest.raises(PlcValueRejected, match="expected a number"):
        check_write("speed_setpoint", SETPOINT, "12")


def test_method_arguments_are_checked_by_count_type_and_range() -> None:
    quantity = ArgSpec(name="quantity", type="float", unit="kg", low=0.01, high=500)
    assert check_arguments("charge", [quantity], [180]) == [180.0]
    with pytest.raises(PlcValueRejected, match="expects 1 argument"):
        check_arguments("charge", [quantity], [])
    with pytest.raises(PlcValueRejected, match=r"charge\(quantity\): 0 is below"):
        check_arguments("charge", [quantity], [0])
    mode = ArgSpec(name="mode", type="str", choices=("production", "service"))
    with pytest.raises(PlcValueRejected, match="not one of"):
        check_arguments("set_mode", [mode], ["repair"])


def test_read_back_comparison_tolerates_float32_rounding_only() -> None:
    assert same_value(12.3, 12.300000190734863)  # 12.3 stored in a Float node
    assert not same_value(12.3, 12.4)
    assert same_value(600, 600)
    assert not same_value(600, 600.0)  # an int tag reading back a float is not confirmed
    assert not same_value(True, None)
    assert same_value("service", "service")
    assert MODE.choices == ("production", "service")
