"""What a recipe's numbers are checked against: the equipment's PLC tag ranges and capacities.

A recipe that asks the blender for 400 rpm where the PLC's speed setpoint accepts 0-30, or
charges 9,000 kg into a bin rated for 500 kg, is refused when it is validated, never found out
at the PLC. The ranges come from the site's tag map (``[plc.tags.NAME] low/high`` in
``hmi.toml``) and its ``[equipment]`` section; without a site they are the product's
documented defaults, which describe the bundled blender.

Limits reach the model through pydantic's validation context (``context={"limits": ...}``);
validation without a context uses :data:`DEFAULT_LIMITS`, so a recipe built in code gets the
same checks as one read from a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

from hmi.recipe.tags import PLC_TAGS
from hmi.recipe.units import UnitError, convert, normalise_unit

if TYPE_CHECKING:
    from hmi.config import Settings

CONTEXT_KEY = "limits"


@dataclass(frozen=True)
class TagRange:
    """The values a PLC tag accepts (or reports as good), in the recipe tag's unit."""

    low: Decimal | None
    high: Decimal | None
    unit: str | None

    def text(self) -> str:
        low = "-∞" if self.low is None else _plain(self.low)
        high = "∞" if self.high is None else _plain(self.high)
        unit = f" {self.unit}" if self.unit and self.unit != "count" else ""
        return f"{low}..{high}{unit}"

    def holds(self, value: Decimal) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)


@dataclass(frozen=True)
class EquipmentLimits:
    """The ranges and capacities a recipe is checked against, and where they come from."""

    tags: Mapping[str, TagRange] = field(default_factory=dict)
    #: the bin's rated load: no charge, nor all of a recipe's charges together, may exceed it
    max_charge_kg: Decimal | None = None
    #: names the source in messages: "hmi.toml" or "the product defaults"
    source: str = "the product defaults"
    #: the tags the site's tag map gives the PLC (None: every tag a recipe may name)
    exposed: frozenset[str] | None = None

    def tag(self, name: str) -> TagRange | None:
        return self.tags.get(name)

    def missing(self, name: str) -> str | None:
        """Why a recipe may not use PLC tag ``name`` here (not in the tag map), or None."""
        if self.exposed is None or name in self.exposed:
            return None
        return (
            f"PLC tag {name!r} is not in this site's tag map (no [plc.tags.{name}] in"
            f" {self.source}): the PLC does not expose it, so a batch would fail at this step"
        )

    def where_tag(self, name: str) -> str:
        """Where a tag's range is configured, for messages."""
        if self.source == "hmi.toml":
            return f"[plc.tags.{name}] in hmi.toml"
        return self.source

    def where_capacity(self) -> str:
        if self.source == "hmi.toml":
            return "[equipment] max_charge_kg in hmi.toml"
        return f"max_charge_kg, {self.source}"


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _decimal(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _recipe_unit(tag_name: str, configured: str) -> tuple[str | None, Decimal]:
    """The recipe tag's unit, and the factor from the configured unit to it (1 if the tag map
    gives no unit or the same one)."""
    spec = PLC_TAGS.get(tag_name)
    wanted = spec.unit if spec is not None else None
    if not configured or wanted is None:
        return wanted, Decimal(1)
    try:
        return wanted, convert(Decimal(1), normalise_unit(configured), wanted)
    except UnitError:
        return wanted, Decimal(1)  # a unit recipes do not know: taken as the tag's own


def limits_from_settings(settings: Settings, source: str | None = None) -> EquipmentLimits:
    """The limits of a site: its tag map's ranges, its Charge method and ``[equipment]``."""
    tags: dict[str, TagRange] = {}
    for name, spec in settings.plc.tags.items():
        if name not in PLC_TAGS or (spec.low is None and spec.high is None):
            continue
        unit, factor = _recipe_unit(name, spec.unit)
        low, high = _decimal(spec.low), _decimal(spec.high)
        tags[name] = TagRange(
            None if low is None else low * factor, None if high is None else high * factor, unit
        )
    return EquipmentLimits(
        tags=tags,
        max_charge_kg=_decimal(settings.equipment.max_charge_kg),
        source=source or "hmi.toml",
        exposed=frozenset(settings.plc.tags),
    )


@cache
def default_limits() -> EquipmentLimits:
    """The product's defaults: the bundled blender's tag map and ``[equipment]`` defaults."""
    from hmi.config import Settings

    return limits_from_settings(Settings(), source="the product defaults")


#: No equipment limits at all: for re-reading a version stored earlier, whose limits were
#: checked against the site when it was imported.
UNBOUNDED = EquipmentLimits(source="none")


def from_context(context: Any) -> EquipmentLimits:
    """The limits a validation runs with (see the module doc)."""
    if isinstance(context, Mapping):
        found = context.get(CONTEXT_KEY)
        if isinstance(found, EquipmentLimits):
            return found
    return default_limits()


def context(limits: EquipmentLimits | None) -> dict[str, Any]:
    """A pydantic validation context carrying ``limits`` (None: the product defaults)."""
    return {CONTEXT_KEY: limits or default_limits()}
