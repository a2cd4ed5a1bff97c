"""The [plc] settings: defaults match the simulator, bad combinations are refused clearly."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from hmi.config import ConfigError, parse_settings
from hmi.plc.settings import DEFAULT_METHODS, DEFAULT_TAGS, PlcSettings, TagSpec
from hmi.site import CONFIG_TEMPLATE

REQUIRED_BY_THE_HMI = {
    "state",
    "mode",
    "speed_setpoint",
    "speed",
    "blend_time_setpoint",
    "elapsed_time",
    "revolutions",
    "motor_current",
    "product_temperature",
    "weight",
    "lid_closed",
    "discharge_valve_open",
    "estop",
    "heartbeat",
}
COMMANDS_USED_BY_THE_BATCH_ENGINE = {
    "start", "hold", "unhold", "stop", "abort", "reset", "clear", "charge", "discharge",
    "open_lid", "close_lid", "jog", "calibration_check", "set_mode",
}  # fmt: skip


def test_defaults_are_secure_and_name_every_logical_tag_and_command() -> None:
    settings = PlcSettings()
    assert settings.security_mode == "SignAndEncrypt" and not settings.allow_insecure
    assert settings.secure
    assert settings.username == "hmi"
    assert settings.tags.keys() >= REQUIRED_BY_THE_HMI
    assert settings.methods.keys() >= COMMANDS_USED_BY_THE_BATCH_ENGINE
    assert {n for n, t in settings.tags.items() if t.writable} == {
        "speed_setpoint",
        "blend_time_setpoint",
        "revolutions_setpoint",
    }
    assert settings.tags["speed"].unit == "rpm" and settings.tags["weight"].unit == "kg"


def test_the_init_template_writes_exactly_the_documented_defaults() -> None:
    text = CONFIG_TEMPLATE.format(
        terminal_id="KIOSK-01", site_name="Site", line_name="Line", mode="production"
    )
    written = PlcSettings.model_validate(tomllib.loads(text)["plc"])
    assert written == PlcSettings()
    assert written.tags == DEFAULT_TAGS and written.methods == DEFAULT_METHODS


def test_insecure_needs_an_explicit_flag() -> None:
    with pytest.raises(ValidationError, match="allow_insecure"):
        PlcSettings(security_mode="None")
    settings = PlcSettings(security_mode="None", allow_insecure=True)
    assert not settings.secure


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"endpoint": "http://plc:4840"}, "opc.tcp://"),
        ({"tags": {"speed": DEFAULT_TAGS["speed"]}}, "needs a 'state' tag"),
        ({"heartbeat_tag": "speed"}, "heartbeat tag must be an int"),
        ({"last_result_tag": "nope"}, "not in the tag map"),
        ({"reconnect_initial_s": 20, "reconnect_max_s": 10}, "must not exceed"),
        ({"heartbeat_timeout_s": 0.2, "publishing_interval_ms": 100}, "three publishing"),
        ({"tags": {**DEFAULT_TAGS, "Bad-Name": DEFAULT_TAGS["speed"]}}, "lower-case"),
        ({"username": ""}, "username is required"),
    ],
)
def test_inconsistent_settings_are_refused_with_a_reason(
    changes: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ValidationError, match=fragment):
        PlcSettings.model_validate(changes)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"type": "float"}, "exactly one of path"),
        ({"path": "A/B", "node": "ns=2;s=B", "type": "float"}, "exactly one of path"),
        ({"path": "A/B", "type": "bool", "low": 0}, "only apply to float and int"),
        ({"path": "A/B", "type": "float", "low": 5, "high": 1}, "above high"),
        ({"path": "A/B", "type": "int", "choices": ["a"]}, "choices only apply"),
        ({"path": "A/B", "type": "str_list", "writable": True}, "cannot be written"),
        ({"path": "A/B", "type": "double"}, "Input should be"),
    ],
)
def test_bad_tag_specs_are_refused(spec: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        TagSpec.model_validate(spec)


def test_a_bad_plc_key_in_hmi_toml_is_reported_with_its_section(tmp_path: Path) -> None:
    raw = {"plc": {"security_mode": "None", "publishing_intervall_ms": 50}}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, tmp_path, tmp_path / "hmi.toml")
    text = str(info.value)
    assert "[plc] publishing_intervall_ms: unknown key" in text


def test_the_password_is_never_printed() -> None:
    settings = PlcSettings(password="hunter2-hunter2")
    assert "hunter2" not in repr(settings)
    assert settings.password.get_secret_value() == "hunter2-hunter2"
