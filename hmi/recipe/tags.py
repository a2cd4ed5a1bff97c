"""The logical PLC tags a recipe may name.

Recipes never name OPC UA node IDs: they name these logical tags, and the batch engine maps
them to the PLC gateway. The validator checks every tag a recipe mentions against this list,
that a written tag is writable, and that a parameter's unit is in the tag's unit family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TagKind = Literal["number", "bool", "text"]


@dataclass(frozen=True)
class TagSpec:
    """One logical tag: its value kind, its unit (numbers only) and whether recipes may write it."""

    name: str
    kind: TagKind
    unit: str | None
    writable: bool
    description: str


_TAG_LIST = (
    TagSpec("state", "text", None, False, "PackML state of the blender (Idle, Execute, Held...)"),
    TagSpec("mode", "text", None, False, "control mode (production, maintenance)"),
    TagSpec("speed_setpoint", "number", "rpm", True, "rotation speed setpoint"),
    TagSpec("speed", "number", "rpm", False, "measured rotation speed"),
    TagSpec("blend_time_setpoint", "number", "s", True, "blend duration setpoint"),
    TagSpec("elapsed_time", "number", "s", False, "time blended in the current run"),
    TagSpec("revolutions_setpoint", "number", "count", True, "revolutions to blend (0: time)"),
    TagSpec("revolutions", "number", "count", False, "revolutions in the current run"),
    TagSpec("motor_current", "number", "A", False, "drive motor current"),
    TagSpec("product_temperature", "number", "°C", False, "product temperature in the bin"),
    TagSpec("weight", "number", "kg", False, "load cell: gross weight in the bin"),
    TagSpec("lid_closed", "bool", None, False, "lid closed and latched (interlock)"),
    TagSpec("discharge_valve_open", "bool", None, False, "discharge valve open"),
    TagSpec("estop", "bool", None, False, "emergency stop pressed"),
    TagSpec("heartbeat", "number", "count", False, "PLC liveness counter"),
)

#: Every logical tag a recipe may name, by name.
PLC_TAGS: dict[str, TagSpec] = {tag.name: tag for tag in _TAG_LIST}


def tag_names() -> list[str]:
    return list(PLC_TAGS)
