"""The master recipe model: what a validated recipe file means, ready for a batch engine.

A :class:`Recipe` can only exist in a valid state: every rule the file format documents
(``docs/recipe-format.md``) is enforced here, by the model itself, so code that builds a recipe
without a file gets the same guarantees as the loader. All numbers are :class:`~decimal.Decimal`
(the audit trail refuses floats), all collections are tuples, every model is frozen.

The batch engine walks ``recipe.steps`` in order and dispatches on ``step.kind``; parameters are
looked up by name with :meth:`Recipe.parameter`; tags are the logical names in
:data:`hmi.recipe.tags.PLC_TAGS`; values for the PLC are converted with the helpers below.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hmi.audit import canonical
from hmi.auth.roles import ROLE_ORDER, Meaning, Role, may_sign
from hmi.recipe.limits import EquipmentLimits, from_context
from hmi.recipe.tags import PLC_TAGS, TagSpec
from hmi.recipe.units import UNITS, UnitError, convert, family, normalise_unit
from hmi.textcheck import text_problem

#: The file format this software reads and writes (``format = 1`` in every recipe file).
FORMAT_VERSION = 1

#: Signature meanings a recipe step may ask for (``approved``/``released`` belong to QA records).
STEP_SIGNATURE_MEANINGS: tuple[str, ...] = (
    Meaning.PERFORMED.value,
    Meaning.VERIFIED.value,
    Meaning.REVIEWED.value,
)

#: Roles that may sign a recipe step with one of those meanings (from the permission matrix).
SIGNING_ROLES: tuple[str, ...] = tuple(
    role.value
    for role in ROLE_ORDER
    if any(may_sign(role, meaning) for meaning in STEP_SIGNATURE_MEANINGS)
)

#: Roles that may second-person-verify a check or a manual entry (signature meaning "verified").
VERIFYING_ROLES: tuple[str, ...] = tuple(
    role.value for role in ROLE_ORDER if may_sign(role, Meaning.VERIFIED)
)

_RECIPE_ID = re.compile(r"^[A-Z0-9][A-Z0-9_.-]{1,39}$")
_STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SAMPLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,19}$")
_MATERIAL_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,39}$")


# -- rule errors -------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleIssue:
    """A broken rule found on validated pieces; the loader adds the file name to it."""

    field: str | None
    message: str
    step: int | None = None
    parameter: str | None = None


RULE_ERROR = "recipe_rule"


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError(RULE_ERROR, message)


def _raise_issues(issues: Sequence[RuleIssue]) -> None:
    """Raise one pydantic error carrying every issue (the loader expands them again)."""
    if issues:
        summary = "; ".join(
            f"{issue.field}: {issue.message}" if issue.field else issue.message for issue in issues
        )
        raise PydanticCustomError(RULE_ERROR, summary, {"issues": tuple(issues)})


# -- value types -------------------------------------------------------------------------


#: No number in a recipe is larger than this in size (a plausibility bound before any unit or
#: tag range: the equipment's own ranges are far narrower).
MAX_MAGNITUDE = Decimal(1_000_000_000)
#: Decimal places a number may have (0.000001 is the finest step any unit here needs).
MAX_DECIMALS = 6
#: Significant digits a number may have: the PLC receives it as a double-precision number,
#: which holds 15 exactly.
MAX_DIGITS = 15


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _fail(f"expected a number (e.g. 12 or 0.90), got {_show(value)}")
    if isinstance(value, int) and abs(value) > MAX_MAGNITUDE:
        raise _fail(f"expected a number of at most {MAX_MAGNITUDE} in size, got {value:.3e}")
    number = Decimal(value)
    if not number.is_finite():
        raise _fail(f"expected a finite number, got {value}")
    if abs(number) > MAX_MAGNITUDE:
        raise _fail(f"expected a number of at most {MAX_MAGNITUDE} in size, got {number:.3e}")
    if number != 0:
        _sign, digits, exponent = number.as_tuple()
        kept = list(digits)
        assert isinstance(exponent, int)
        while len(kept) > 1 and kept[-1] == 0:
            kept.pop()
            exponent += 1
        if exponent < -MAX_DECIMALS:
            raise _fail(f"expected at most {MAX_DECIMALS} decimal places, got {number}")
        if len(kept) > MAX_DIGITS:
            raise _fail(
                f"expected at most {MAX_DIGITS} significant digits (the PLC holds no more),"
                f" got {number}"
            )
    return number


def _one_line(value: str) -> str:
    problem = text_problem(value, multiline=False)
    if problem is not None:
        raise _fail(problem)
    return value


def _lines(value: str) -> str:
    problem = text_problem(value, multiline=True)
    if problem is not None:
        raise _fail(problem)
    return value


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"text {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    return repr(value) if not isinstance(value, Decimal) else str(value)


def _pattern(regex: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        if not regex.match(value):
            raise _fail(f"{what}, got {value!r}")
        return value

    return AfterValidator(check)


def _unit(value: str) -> str:
    try:
        return normalise_unit(value)
    except UnitError as exc:
        raise _fail(str(exc)) from None


def _tag(value: str) -> str:
    if value not in PLC_TAGS:
        raise _fail(f"unknown PLC tag {value!r}; expected one of: {', '.join(PLC_TAGS)}")
    return value


def _role(value: str) -> str:
    if value == Role.ADMIN:
        raise _fail(
            "an administrator cannot sign or verify production records (segregation of duties);"
            f" expected one of: {', '.join(SIGNING_ROLES)}"
        )
    if value not in SIGNING_ROLES:
        raise _fail(f"unknown signing role {value!r}; expected one of: {', '.join(SIGNING_ROLES)}")
    return value


def _verifying_role(value: str) -> str:
    _role(value)
    if value not in VERIFYING_ROLES:
        raise _fail(
            f"the role {value!r} may not verify (sign 'verified'); expected one of:"
            f" {', '.join(VERIFYING_ROLES)}"
        )
    return value


def _unique(value: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for item in value:
        if item in seen:
            raise _fail(f"{item!r} is listed twice")
        seen.add(item)
    return value


Number = Annotated[Decimal, BeforeValidator(_number)]
PositiveNumber = Annotated[Decimal, BeforeValidator(_number), Field(gt=0)]
Text = Annotated[str, Field(min_length=1, max_length=80, pattern=r"\S"), AfterValidator(_one_line)]
LongText = Annotated[str, Field(max_length=4000), AfterValidator(_lines)]
UnitSymbol = Annotated[str, AfterValidator(_unit)]
TagName = Annotated[str, AfterValidator(_tag)]
SigningRole = Annotated[str, AfterValidator(_role)]
VerifyingRole = Annotated[str, AfterValidator(_verifying_role)]
ParameterName = Annotated[
    str, _pattern(_NAME, "expected a lowercase name (a-z, 0-9, '_'; up to 40 characters)")
]
ParameterNames = Annotated[
    tuple[ParameterName, ...], BeforeValidator(_as_tuple), AfterValidator(_unique)
]
StepId = Annotated[
    str,
    _pattern(_STEP_ID, "expected a step ID of lowercase letters, digits, '-' or '_' (up to 40)"),
]
RecipeId = Annotated[
    str,
    _pattern(_RECIPE_ID, "expected 2-40 characters: A-Z, 0-9, '.', '-' or '_', e.g. 'PARA500-FB'"),
]
SampleId = Annotated[
    str, _pattern(_SAMPLE_ID, "expected a sample ID of letters, digits, '-' or '_' (up to 20)")
]
MaterialCode = Annotated[
    str, _pattern(_MATERIAL_CODE, "expected a material code of letters, digits, '.', '/', '-', '_'")
]


def _wait_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        if len(value) > 80:
            raise _fail("expected text of at most 80 characters")
        return _one_line(value)
    return _number(value)


WaitValue = Annotated[bool | Decimal | str, BeforeValidator(_wait_value)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# -- parameters --------------------------------------------------------------------------


class Parameter(_Model):
    """A process parameter: setpoint with limits and unit, written to and/or monitored on a tag.

    ``write_tag`` is where a ``set_parameters`` step writes the setpoint (converted to the tag's
    unit); ``monitor_tag`` is the live value a ``run`` step checks against ``low``..``high``.
    ``critical`` marks a critical process parameter (CPP): running outside its limits needs a
    supervisor co-signature.
    """

    unit: UnitSymbol
    setpoint: Number
    low: Number
    high: Number
    critical: bool = False
    write_tag: TagName | None = None
    monitor_tag: TagName | None = None
    description: LongText = ""

    @field_validator("high")
    @classmethod
    def _limits(cls, high: Decimal, info: ValidationInfo) -> Decimal:
        low, setpoint = info.data.get("low"), info.data.get("setpoint")
        if low is not None and low > high:
            _raise_issues([RuleIssue("low", f"low {low} is above high {high}")])
        if low is not None and setpoint is not None and not low <= setpoint <= high:
            _raise_issues(
                [RuleIssue("setpoint", f"setpoint {setpoint} is outside its limits {low}..{high}")]
            )
        return high

    @field_validator("write_tag", "monitor_tag")
    @classmethod
    def _tag_fits(cls, name: str | None, info: ValidationInfo) -> str | None:
        if name is None:
            return name
        field = str(info.field_name)
        spec = PLC_TAGS[name]
        issues: list[RuleIssue] = []
        if field == "write_tag" and not spec.writable:
            writable = ", ".join(t.name for t in PLC_TAGS.values() if t.writable)
            issues.append(RuleIssue(field, f"tag {name!r} is read-only; writable tags: {writable}"))
        unit = info.data.get("unit")
        if spec.kind != "number" or spec.unit is None:
            issues.append(
                RuleIssue(field, f"tag {name!r} is {spec.kind}, not a number with a unit")
            )
        elif unit is not None and family(spec.unit) != family(unit):
            issues.append(
                RuleIssue(
                    "unit",
                    f"unit {unit!r} ({family(unit)}) does not fit {field} {name!r}, which is in"
                    f" {spec.unit} ({family(spec.unit)}); expected one of:"
                    f" {', '.join(_same_family(spec.unit))}",
                )
            )
        _raise_issues(issues)
        return name

    @model_validator(mode="after")
    def _some_tag(self) -> Parameter:
        if self.write_tag is None and self.monitor_tag is None:
            _raise_issues(
                [
                    RuleIssue(
                        "write_tag",
                        "a parameter needs a write_tag (set on the PLC), a monitor_tag (checked"
                        " during a run) or both",
                    )
                ]
            )
        return self

    @model_validator(mode="after")
    def _plausible(self, info: ValidationInfo) -> Parameter:
        """A duration is longer than zero; the limits fit the range of each tag."""
        issues: list[RuleIssue] = []
        if family(self.unit) == "time" and self.low <= 0:
            issues.append(
                RuleIssue(
                    "low", f"a duration must be longer than zero, got low {self.low} {self.unit}"
                )
            )
        limits = from_context(info.context)
        for field in ("write_tag", "monitor_tag"):
            tag = getattr(self, field)
            missing = None if tag is None else limits.missing(tag)
            if missing is not None:
                issues.append(RuleIssue(field, missing))
        issues += self.tag_range_issues(limits)
        _raise_issues(issues)
        return self

    def tag_range_issues(self, limits: EquipmentLimits) -> list[RuleIssue]:
        """``low`` and ``high`` (so the setpoint between them) against the range of the
        write tag (what the PLC accepts) and of the monitor tag (what it reports as good)."""
        issues: list[RuleIssue] = []
        for field, verb in (("write_tag", "accepts"), ("monitor_tag", "reports as valid")):
            tag = getattr(self, field)
            found = None if tag is None else limits.tag(tag)
            if tag is None or found is None or found.unit is None:
                continue
            for name in ("low", "high"):
                value: Decimal = getattr(self, name)
                if not found.holds(convert(value, self.unit, found.unit)):
                    issues.append(
                        RuleIssue(
                            name,
                            f"{name} {value} {self.unit} is outside what PLC tag {tag!r} {verb}:"
                            f" {found.text()} ({limits.where_tag(tag)})",
                        )
                    )
        return issues

    def in_unit(self, value: Decimal, unit: str) -> Decimal:
        """Convert a value of this parameter to another unit of its family."""
        return convert(value, self.unit, unit)

    def setpoint_for_plc(self) -> Decimal:
        """The setpoint in the unit of ``write_tag`` (e.g. 15 min -> 900 s for the PLC)."""
        if self.write_tag is None:
            raise ValueError("this parameter has no write_tag")
        return self._to_tag(self.setpoint, self.write_tag)

    def limits_for_tag(self, tag: str) -> tuple[Decimal, Decimal]:
        """``(low, high)`` in the unit of one of this parameter's tags."""
        return self._to_tag(self.low, tag), self._to_tag(self.high, tag)

    def within_limits(self, value: Decimal, unit: str | None = None) -> bool:
        """Whether a value (in ``unit``, default the parameter's own) is within the limits."""
        own = value if unit is None else convert(value, unit, self.unit)
        return self.low <= own <= self.high

    def _to_tag(self, value: Decimal, tag: str) -> Decimal:
        unit = PLC_TAGS[tag].unit
        if unit is None:
            raise ValueError(f"tag {tag!r} has no unit")
        return convert(value, self.unit, unit)


def _kg(value: Decimal) -> str:
    return f"{format(value.normalize(), 'f')} kg"


def _same_family(unit: str) -> list[str]:
    wanted = family(unit)
    return [u.symbol for u in UNITS.values() if u.family == wanted]


# -- steps -------------------------------------------------------------------------------


class _Step(_Model):
    id: StepId
    title: Text
    instructions: LongText = ""


class PlcSignal(_Model):
    """A true/false PLC signal that must agree with what a check step states (the lid closed,
    the discharge valve closed, the e-stop released)."""

    tag: TagName
    value: bool

    @model_validator(mode="after")
    def _exposed(self, info: ValidationInfo) -> PlcSignal:
        missing = from_context(info.context).missing(self.tag)
        if missing is not None:
            _raise_issues([RuleIssue("tag", missing)])
        return self


class CheckStep(_Step):
    """The operator confirms ``text``; optionally a second person in ``verified_by_role`` too.

    With ``plc_signal`` the statement can only be confirmed while the PLC agrees with it."""

    kind: Literal["check"]
    text: Annotated[
        str, Field(min_length=1, max_length=4000, pattern=r"\S"), AfterValidator(_lines)
    ]
    verified_by_role: VerifyingRole | None = None
    #: Added after recipes were first approved: left out of the canonical data when unset, so
    #: the hash of every recipe approved before it stays what was signed.
    plc_signal: PlcSignal | None = Field(default=None, exclude_if=lambda value: value is None)

    @model_validator(mode="after")
    def _true_false_signal(self) -> CheckStep:
        signal = self.plc_signal
        if signal is not None and PLC_TAGS[signal.tag].kind != "bool":
            spec = PLC_TAGS[signal.tag]
            _raise_issues(
                [
                    RuleIssue(
                        "plc_signal.tag",
                        f"tag {signal.tag!r} is {_kind_text(spec)}; a check's PLC signal is a"
                        " true/false tag (e.g. lid_closed)",
                    )
                ]
            )
        return self


class ChargeStep(_Step):
    """Charge a weighed quantity of a material into the bin, with its lot number.

    The accepted range is ``target`` ± ``tolerance_pct`` % or ± ``tolerance_abs`` (in ``unit``).
    With ``weighing = "load_cell"`` the actual quantity is the weight gained on the ``weight``
    tag during the step; ``"manual"`` means it is typed in from a bench scale, and then a second
    person (``verified_by_role``) must verify the entry.
    """

    kind: Literal["charge"]
    material: Text
    material_code: MaterialCode | None = None
    target: PositiveNumber
    unit: UnitSymbol = "kg"
    tolerance_pct: PositiveNumber | None = None
    tolerance_abs: PositiveNumber | None = None
    lot_required: bool = True
    weighing: Literal["load_cell", "manual"] = "load_cell"
    verified_by_role: VerifyingRole | None = None

    @field_validator("unit")
    @classmethod
    def _mass(cls, unit: str) -> str:
        if family(unit) != "mass":
            raise _fail(f"a charge is weighed: expected a mass unit (kg or g), got {unit!r}")
        return unit

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> ChargeStep:
        issues: list[RuleIssue] = []
        if (self.tolerance_pct is None) == (self.tolerance_abs is None):
            issues.append(
                RuleIssue(
                    "tolerance_pct",
                    "give exactly one of tolerance_pct (percent of target) or tolerance_abs"
                    " (in the charge's unit)",
                )
            )
        if self.tolerance_pct is not None and self.tolerance_pct >= 100:
            issues.append(
                RuleIssue("tolerance_pct", f"expected below 100 %, got {self.tolerance_pct}")
            )
        if self.tolerance_abs is not None and self.tolerance_abs >= self.target:
            issues.append(
                RuleIssue(
                    "tolerance_abs",
                    f"tolerance {self.tolerance_abs} is not smaller than the target {self.target}",
                )
            )
        if self.weighing == "manual" and self.verified_by_role is None:
            issues.append(
                RuleIssue(
                    "verified_by_role",
                    "a manually entered weight needs a second-person check (EU GMP Annex 11 §6):"
                    f" set verified_by_role to one of {', '.join(VERIFYING_ROLES)}",
                )
            )
        if not issues:
            issues += self.capacity_issues(from_context(info.context))
        _raise_issues(issues)
        return self

    def most_kg(self) -> Decimal:
        """The most this charge may put in the bin (the top of its tolerance), in kg."""
        return self.acceptance_range("kg")[1]

    def capacity_issues(self, limits: EquipmentLimits) -> list[RuleIssue]:
        """This charge alone against the bin's rated load and the load cell's range."""
        most = self.most_kg()
        shown = f"target {self.target} {self.unit} (up to {_kg(most)} with its tolerance)"
        if limits.max_charge_kg is not None and most > limits.max_charge_kg:
            return [
                RuleIssue(
                    "target",
                    f"{shown} is more than the bin holds: {_kg(limits.max_charge_kg)}"
                    f" ({limits.where_capacity()})",
                )
            ]
        scale = limits.tag("weight")
        if (
            self.weighing == "load_cell"
            and scale is not None
            and scale.unit is not None
            and not scale.holds(convert(most, "kg", scale.unit))
        ):
            return [
                RuleIssue(
                    "target",
                    f"{shown} is beyond what the load cell (PLC tag 'weight') reads:"
                    f" {scale.text()} ({limits.where_tag('weight')})",
                )
            ]
        return []

    @property
    def tolerance(self) -> Decimal:
        """The allowed deviation from ``target``, in the charge's ``unit``."""
        if self.tolerance_abs is not None:
            return self.tolerance_abs
        assert self.tolerance_pct is not None
        return self.target * self.tolerance_pct / Decimal(100)

    def acceptance_range(self, unit: str | None = None) -> tuple[Decimal, Decimal]:
        """``(low, high)`` accepted actual quantity, in ``unit`` (default the charge's own)."""
        low, high = self.target - self.tolerance, self.target + self.tolerance
        if unit is None:
            return low, high
        return convert(low, self.unit, unit), convert(high, self.unit, unit)

    def accepts(self, actual: Decimal, unit: str | None = None) -> bool:
        """Whether an actual quantity (in ``unit``, default the charge's own) is in tolerance."""
        low, high = self.acceptance_range()
        value = actual if unit is None else convert(actual, unit, self.unit)
        return low <= value <= high


class SetParametersStep(_Step):
    """Write the setpoints of the listed parameters to their ``write_tag`` on the PLC."""

    kind: Literal["set_parameters"]
    parameters: Annotated[ParameterNames, Field(min_length=1)]


class RunStep(_Step):
    """Blend at the ``speed`` parameter for the ``duration`` parameter or ``revolutions`` count.

    During the run every parameter in ``monitor`` is checked live on its ``monitor_tag``
    against its limits; a value outside them is a deviation.
    """

    kind: Literal["run"]
    speed: ParameterName
    duration: ParameterName | None = None
    revolutions: ParameterName | None = None
    monitor: ParameterNames = ()

    @model_validator(mode="after")
    def _rules(self) -> RunStep:
        if (self.duration is None) == (self.revolutions is None):
            _raise_issues(
                [
                    RuleIssue(
                        "duration",
                        "give exactly one of duration (a time parameter) or revolutions"
                        " (a count parameter)",
                    )
                ]
            )
        return self


WaitCondition = Literal["equals", "at_least", "at_most"]


class WaitStep(_Step):
    """Wait until a PLC tag meets a condition, or time out after ``timeout_s`` seconds.

    ``value`` is true/false for a boolean tag, text for a text tag (``equals`` only) and a
    number for a numeric tag, in ``unit`` (default: the tag's own unit).
    """

    kind: Literal["wait"]
    tag: TagName
    condition: WaitCondition = "equals"
    value: WaitValue
    unit: UnitSymbol | None = None
    timeout_s: Annotated[int, Field(ge=1, le=86_400)]

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> WaitStep:
        spec = PLC_TAGS[self.tag]
        issues: list[RuleIssue] = []
        if spec.kind != "number":
            if not _value_fits(spec, self.value):
                issues.append(
                    RuleIssue(
                        "value", f"tag {self.tag!r} is {_kind_text(spec)}, got {_show(self.value)}"
                    )
                )
            if self.condition != "equals":
                issues.append(
                    RuleIssue(
                        "condition",
                        f"tag {self.tag!r} is {spec.kind}: only 'equals' applies,"
                        f" got {self.condition!r}",
                    )
                )
            if self.unit is not None:
                issues.append(RuleIssue("unit", f"tag {self.tag!r} has no unit; remove 'unit'"))
        else:
            if not isinstance(self.value, Decimal):
                issues.append(
                    RuleIssue("value", f"tag {self.tag!r} is a number, got {_show(self.value)}")
                )
            assert spec.unit is not None
            if self.unit is not None and family(self.unit) != family(spec.unit):
                issues.append(
                    RuleIssue(
                        "unit",
                        f"unit {self.unit!r} does not fit tag {self.tag!r} ({spec.unit});"
                        f" expected one of: {', '.join(_same_family(spec.unit))}",
                    )
                )
            if not issues:
                issues += self._range_issues(from_context(info.context))
        missing = from_context(info.context).missing(self.tag)
        if missing is not None:
            issues.append(RuleIssue("tag", missing))
        _raise_issues(issues)
        return self

    def _range_issues(self, limits: EquipmentLimits) -> list[RuleIssue]:
        """A number waited for must be one the tag can report, or the step never ends."""
        found = limits.tag(self.tag)
        target = self.target_for_plc()
        if found is None or found.unit is None or not isinstance(target, Decimal):
            return []
        if found.holds(convert(target, PLC_TAGS[self.tag].unit or found.unit, found.unit)):
            return []
        unit = self.unit or PLC_TAGS[self.tag].unit
        return [
            RuleIssue(
                "value",
                f"{self.value} {unit} is outside what PLC tag {self.tag!r} reports as valid:"
                f" {found.text()} ({limits.where_tag(self.tag)})",
            )
        ]

    def target_for_plc(self) -> bool | Decimal | str:
        """``value`` as compared with the tag: numbers converted to the tag's unit."""
        spec = PLC_TAGS[self.tag]
        if isinstance(self.value, Decimal) and self.unit is not None and spec.unit is not None:
            return convert(self.value, self.unit, spec.unit)
        return self.value

    def is_met(self, current: bool | Decimal | str) -> bool:
        """Whether a live tag value (in the tag's unit) satisfies the condition."""
        target = self.target_for_plc()
        if self.condition == "equals":
            return current == target
        if not isinstance(current, Decimal) or not isinstance(target, Decimal):
            return False
        return current >= target if self.condition == "at_least" else current <= target


def _value_fits(spec: TagSpec, value: bool | Decimal | str) -> bool:
    return isinstance(value, bool) if spec.kind == "bool" else isinstance(value, str)


def _kind_text(spec: TagSpec) -> str:
    return "true/false" if spec.kind == "bool" else "text (e.g. 'Idle')"


class SampleStep(_Step):
    """Take the listed samples; a result for each sample is entered and checked against limits."""

    kind: Literal["sample"]
    sample_ids: Annotated[
        tuple[SampleId, ...],
        BeforeValidator(_as_tuple),
        AfterValidator(_unique),
        Field(min_length=1),
    ]
    result: Text
    unit: UnitSymbol
    low: Number
    high: Number

    @field_validator("high")
    @classmethod
    def _limits(cls, high: Decimal, info: ValidationInfo) -> Decimal:
        low = info.data.get("low")
        if low is not None and low > high:
            _raise_issues([RuleIssue("low", f"low {low} is above high {high}")])
        return high

    def accepts(self, value: Decimal) -> bool:
        return self.low <= value <= self.high


class DischargeStep(_Step):
    """Discharge the blend to ``destination`` (container ID entered when required)."""

    kind: Literal["discharge"]
    destination: Text
    container_id_required: bool = True


class SignatureStep(_Step):
    """A person in ``role`` signs the batch record with ``meaning`` (21 CFR 11.50)."""

    kind: Literal["signature"]
    meaning: Literal["performed", "verified", "reviewed"]
    role: SigningRole

    @model_validator(mode="after")
    def _rules(self) -> SignatureStep:
        if not may_sign(self.role, self.meaning):
            allowed = [r for r in SIGNING_ROLES if may_sign(r, self.meaning)]
            _raise_issues(
                [
                    RuleIssue(
                        "role",
                        f"the role {self.role!r} may not sign {self.meaning!r} (permission"
                        f" matrix); expected one of: {', '.join(allowed)}",
                    )
                ]
            )
        return self


Step = Annotated[
    CheckStep
    | ChargeStep
    | SetParametersStep
    | RunStep
    | WaitStep
    | SampleStep
    | DischargeStep
    | SignatureStep,
    Field(discriminator="kind"),
]

#: Step kinds in the order the format documents them, with their model classes.
STEP_KINDS: dict[str, type[_Step]] = {
    "check": CheckStep,
    "charge": ChargeStep,
    "set_parameters": SetParametersStep,
    "run": RunStep,
    "wait": WaitStep,
    "sample": SampleStep,
    "discharge": DischargeStep,
    "signature": SignatureStep,
}


# -- the recipe --------------------------------------------------------------------------


class RecipeHeader(_Model):
    """The top-level fields of a recipe (validated on their own so one bad step hides nothing)."""

    format: Literal[1]
    id: RecipeId
    name: Text
    product: Text
    version: Annotated[int, Field(ge=1, le=9999)]
    description: LongText = ""


class Recipe(RecipeHeader):
    """A validated master recipe version (ISA-88): header, parameters and ordered procedure."""

    parameters: dict[ParameterName, Parameter] = Field(default_factory=dict)
    steps: Annotated[tuple[Step, ...], BeforeValidator(_as_tuple), Field(min_length=1)]

    @model_validator(mode="after")
    def _cross_rules(self, info: ValidationInfo) -> Recipe:
        _raise_issues(
            cross_check(
                declared=self.parameters.keys(),
                parameters=self.parameters,
                steps=[(step.id, step) for step in self.steps],
                limits=from_context(info.context),
            )
        )
        return self

    def parameter(self, name: str) -> Parameter:
        try:
            return self.parameters[name]
        except KeyError:
            raise KeyError(f"recipe {self.id} v{self.version} has no parameter {name!r}") from None

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"recipe {self.id} v{self.version} has no step {step_id!r}")

    def canonical_data(self) -> dict[str, Any]:
        """Every value of the recipe, defaults included, as canonical-JSON-ready data."""
        return self.model_dump(mode="python")

    def canonical_json(self) -> str:
        """The recipe's canonical JSON (sorted keys, decimals as text): what is hashed."""
        return canonical.dumps(self.canonical_data())

    def sha256(self) -> str:
        """The recipe's identity: SHA-256 (hex) of :meth:`canonical_json` in UTF-8."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()


def cross_check(
    *,
    declared: Any,
    parameters: Mapping[str, Parameter],
    steps: Sequence[tuple[object, Step | None]],
    limits: EquipmentLimits | None = None,
) -> list[RuleIssue]:
    """Rules between steps and parameters: IDs unique, references known and of the right kind,
    parameters set before they are run, every parameter used, a run's speed, duration and
    revolutions above zero, and all charges together within the bin's rated load
    (``limits``, default the product's).

    ``declared`` holds every parameter name in the file, ``parameters`` only those that are
    themselves valid (so a broken parameter is not reported again as unknown); ``steps`` holds
    each step's raw ID and its model, or ``None`` where the step itself is invalid.
    """
    names = set(declared)
    issues: list[RuleIssue] = []
    if not steps:
        issues.append(RuleIssue("steps", "the procedure is empty: at least one step is needed"))
    first_index: dict[str, int] = {}
    for index, (raw_id, _step) in enumerate(steps):
        if isinstance(raw_id, str) and raw_id:
            if raw_id in first_index:
                issues.append(
                    RuleIssue(
                        "id",
                        f"duplicate step ID {raw_id!r}"
                        f" (first used by step #{first_index[raw_id] + 1})",
                        step=index,
                    )
                )
            else:
                first_index[raw_id] = index
    used: set[str] = set()
    written: set[str] = set()

    def ref(index: int, field: str, name: str, need: str | None = None) -> Parameter | None:
        used.add(name)
        if name not in names:
            known = ", ".join(sorted(names)) or "none declared"
            issues.append(
                RuleIssue(field, f"unknown parameter {name!r}; declared: {known}", step=index)
            )
            return None
        param = parameters.get(name)
        if param is None or need is None:
            return param
        if need == "write" and param.write_tag is None:
            issues.append(
                RuleIssue(
                    field, f"parameter {name!r} has no write_tag, so it cannot be set", step=index
                )
            )
        if need == "monitor" and param.monitor_tag is None:
            issues.append(
                RuleIssue(
                    field,
                    f"parameter {name!r} has no monitor_tag, so it cannot be monitored",
                    step=index,
                )
            )
        return param

    for index, (_raw_id, step) in enumerate(steps):
        if isinstance(step, SetParametersStep):
            for name in step.parameters:
                if ref(index, "parameters", name, "write") is not None:
                    written.add(name)
        elif isinstance(step, RunStep):
            _check_run(step, index, ref, written, issues)
    issues += _check_load(steps, limits if limits is not None else from_context(None))
    if any(step is None for _raw_id, step in steps):
        return issues  # an invalid step's references are unknown: "unused" would be a guess
    for name in sorted(names - used):
        issues.append(
            RuleIssue(
                None,
                "declared but not used by any step (remove it or reference it from a step)",
                parameter=name,
            )
        )
    return issues


def _check_load(
    steps: Sequence[tuple[object, Step | None]], limits: EquipmentLimits
) -> list[RuleIssue]:
    """The charges of one batch all go into the bin: together (at the top of their
    tolerances) they must fit its rated load. Reported once, at the charge that overfills it
    (a charge too big on its own is reported by its step)."""
    capacity = limits.max_charge_kg
    if capacity is None:
        return []
    total = Decimal(0)
    for index, (_raw_id, step) in enumerate(steps):
        if not isinstance(step, ChargeStep):
            continue
        most = step.most_kg()
        total += most
        if most <= capacity < total:
            return [
                RuleIssue(
                    "target",
                    f"the charges up to this one put up to {_kg(total)} in the bin (at the top of"
                    f" their tolerances); it holds {_kg(capacity)} ({limits.where_capacity()})",
                    step=index,
                )
            ]
    return []


def _check_run(
    step: RunStep,
    index: int,
    ref: Any,
    written: set[str],
    issues: list[RuleIssue],
) -> None:
    wanted = (
        ("speed", step.speed, "speed", "rpm"),
        ("duration", step.duration, "time", "s or min"),
        ("revolutions", step.revolutions, "count", "count"),
    )
    for field, name, unit_family, example in wanted:
        if name is None:
            continue
        param = ref(index, field, name)
        if param is None:
            continue
        if param.low <= 0 and family(param.unit) != "time":  # a duration is checked as one
            issues.append(
                RuleIssue(
                    field,
                    f"parameter {name!r} allows {param.low} {param.unit}; a run's {field} must be"
                    " above zero (set its low limit above 0)",
                    step=index,
                )
            )
        if family(param.unit) != unit_family:
            issues.append(
                RuleIssue(
                    field,
                    f"parameter {name!r} is in {param.unit!r}; a run's {field} needs {example}",
                    step=index,
                )
            )
        if field == "speed" and param.write_tag is None:
            issues.append(
                RuleIssue(
                    field, f"parameter {name!r} has no write_tag to set the speed", step=index
                )
            )
        if param.write_tag is not None and name not in written:
            issues.append(
                RuleIssue(
                    field,
                    f"parameter {name!r} is not set by an earlier set_parameters step",
                    step=index,
                )
            )
    for name in step.monitor:
        ref(index, "monitor", name, "monitor")
        if name == step.duration:
            issues.append(
                RuleIssue(
                    "monitor",
                    f"the duration parameter {name!r} counts up during the run; it cannot be"
                    " monitored against its limits",
                    step=index,
                )
            )
