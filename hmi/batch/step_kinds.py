"""What each step kind asks of a person, in one place: the entries a person makes (with the
limits a number is checked against as it is typed), the data those entries make for the
engine, and the signatures the step needs. Domain only: no SQL, audit or PLC here.

The batch screen builds its form, its as-you-type checks and its signature dialogs from these;
the engine checks the signatures it is given against the same plan, so the two cannot
disagree on what a step needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hmi.auth.roles import Meaning
from hmi.batch.errors import StepDataInvalid, StepNotReady
from hmi.batch.model import DeviationKind
from hmi.batch.outcome import DeviationSpec, NewValue
from hmi.batch.policy import result_name
from hmi.batch.rows import decimal_of, entered_number, text_of
from hmi.plc.types import TagValue
from hmi.recipe.model import (
    ChargeStep,
    CheckStep,
    DischargeStep,
    SampleStep,
    SignatureStep,
    Step,
)
from hmi.recipe.units import convert


@dataclass(frozen=True)
class Entry:
    """One thing a person types for a step."""

    name: str
    label: str
    #: a number checked against ``low``..``high`` as it is typed (None: free text)
    low: Decimal | None = None
    high: Decimal | None = None
    number: bool = False


@dataclass(frozen=True)
class SignaturePlan:
    """The signatures completing a step needs: the logged-in person's own (``meaning``), and
    for a second-person check a co-signature (``verified``) by ``verifier_role``; for a
    signature step, ``signer_role`` is the role the recipe names."""

    meaning: Meaning | None = None
    verifier_role: str | None = None
    signer_role: str | None = None

    @property
    def needed(self) -> bool:
        return self.meaning is not None


NO_SIGNATURES = SignaturePlan()


def description(step: Step) -> list[str]:
    """What the batch screen says a step asks for, under its title and instructions."""
    if isinstance(step, CheckStep):
        return [f"Check: {step.text}"]
    if isinstance(step, ChargeStep):
        low, high = step.acceptance_range()
        how = (
            " - weighed on the load cell: F2 to start (tare), then charge"
            if step.weighing == "load_cell"
            else ""
        )
        return [f"Charge {step.material}: {step.target} {step.unit} (accepted {low}..{high}){how}"]
    if isinstance(step, SampleStep):
        return [f"{step.result}: accepted {step.low}..{step.high} {step.unit}"]
    if isinstance(step, DischargeStep):
        return [f"Discharge to {step.destination}"]
    if isinstance(step, SignatureStep):
        return [f"Sign '{step.meaning}' as {step.role} (F3)."]
    return []


def completion_permission(step: Step | None) -> str:
    """The permission completing ``step`` needs: a signature step is completed by the person
    who signs it (``batch.step.sign``), every other step by production."""
    return "batch.step.sign" if isinstance(step, SignatureStep) else "batch.step.complete"


def entries(step: Step) -> list[Entry]:
    """What a person types to complete ``step``, in the order the screen asks for it."""
    if isinstance(step, ChargeStep):
        low, high = step.acceptance_range()
        found: list[Entry] = []
        if step.lot_required:
            found.append(Entry("lot", "Lot number"))
        if step.weighing == "manual":
            found.append(Entry("quantity", f"Quantity ({step.unit})", low, high, number=True))
        return found
    if isinstance(step, SampleStep):
        low, high = Decimal(step.low), Decimal(step.high)
        return [
            Entry(sample_entry(sid), f"{sid} ({step.unit})", low, high, number=True)
            for sid in step.sample_ids
        ]
    if isinstance(step, DischargeStep) and step.container_id_required:
        return [Entry("container_id", "Container ID")]
    return []


def sample_entry(sample_id: str) -> str:
    return f"sample-{sample_id}"


def step_data(step: Step, typed: Mapping[str, str]) -> dict[str, Any]:
    """The data the engine takes for ``step`` from what was typed into its entries."""
    if isinstance(step, CheckStep):
        return {"confirmed": True}
    if isinstance(step, SampleStep):
        return {"results": {sid: typed.get(sample_entry(sid), "") for sid in step.sample_ids}}
    return {entry.name: typed.get(entry.name, "") for entry in entries(step)}


def missing(step: Step, typed: Mapping[str, str]) -> list[str]:
    """The entries left empty (named as the engine names them)."""
    found = []
    for entry in entries(step):
        if not typed.get(entry.name, "").strip():
            found.append(entry.name.removeprefix("sample-"))
    return found


def signatures(step: Step) -> SignaturePlan:
    """The signatures completing ``step`` needs (see :class:`SignaturePlan`)."""
    if isinstance(step, SignatureStep):
        return SignaturePlan(Meaning(step.meaning), signer_role=str(step.role))
    if isinstance(step, CheckStep | ChargeStep) and step.verified_by_role:
        return SignaturePlan(Meaning.PERFORMED, verifier_role=str(step.verified_by_role))
    return NO_SIGNATURES


def entered_outcome(
    step: Step, data: Mapping[str, Any]
) -> tuple[list[NewValue], list[DeviationSpec]] | None:
    """The values and deviations of a step whose outcome is decided by what was entered alone
    (a sample, a discharge, a signature step); None for a kind that also needs the equipment
    (the engine evaluates those with its PLC readings). Raises StepDataInvalid saying what is
    missing or wrong."""
    if isinstance(step, SampleStep):
        return _samples(step, data)
    if isinstance(step, DischargeStep):
        container = str(data.get("container_id") or "").strip()
        if step.container_id_required and not container:
            raise StepDataInvalid("enter the ID of the container the blend goes into")
        return ([NewValue("container_id", container, "entered")] if container else []), []
    if isinstance(step, SignatureStep):
        return [], []
    return None


def _samples(
    step: SampleStep, data: Mapping[str, Any]
) -> tuple[list[NewValue], list[DeviationSpec]]:
    results = data.get("results")
    if not isinstance(results, Mapping):
        raise StepDataInvalid(f"enter a result for each sample: {', '.join(step.sample_ids)}")
    missing = [s for s in step.sample_ids if s not in results]
    extra = [s for s in results if s not in step.sample_ids]
    if missing or extra:
        raise StepDataInvalid(
            f"enter exactly the samples {', '.join(step.sample_ids)}"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(map(str, extra))}" if extra else "")
        )
    values: list[NewValue] = []
    deviations: list[DeviationSpec] = []
    for sample_id in step.sample_ids:
        value = entered_number(results[sample_id], f"result {sample_id}")
        ok = step.accepts(value)
        values.append(
            NewValue(
                result_name(sample_id),
                text_of(value),
                "entered",
                step.unit,
                str(step.low),
                str(step.high),
                ok,
            )
        )
        if not ok:
            deviations.append(
                DeviationSpec(
                    DeviationKind.OUT_OF_TOLERANCE,
                    f"sample {sample_id}: {value} {step.unit}, out of specification"
                    f" {step.low}..{step.high}; a supervisor or QA co-signs",
                    parameter=result_name(sample_id),
                    expected=f"{step.low}..{step.high}",
                    actual=str(value),
                    unit=step.unit,
                )
            )
    return values, deviations


def decides(step: Step) -> bool:
    """Whether :func:`evaluate` decides ``step`` (the engine runs a parameter set, a run and a
    wait itself: they command the equipment or wait on it)."""
    return isinstance(step, CheckStep | ChargeStep | SampleStep | DischargeStep | SignatureStep)


def readings(step: Step) -> tuple[str, ...]:
    """The PLC tags the engine reads for ``step`` before :func:`evaluate` decides it."""
    if isinstance(step, CheckStep) and step.plc_signal is not None:
        return (step.plc_signal.tag,)
    if isinstance(step, ChargeStep) and step.weighing == "load_cell":
        return ("weight_stable", "weight")
    return ()


def check_entries(step: Step, data: Mapping[str, Any]) -> None:
    """What was entered, checked before the PLC is read (StepDataInvalid says what)."""
    if isinstance(step, CheckStep) and data.get("confirmed") is not True:
        raise StepDataInvalid(f"confirm '{step.title}' to complete it")
    if isinstance(step, ChargeStep):
        if step.lot_required and not str(data.get("lot") or "").strip():
            raise StepDataInvalid(f"enter the material lot number for '{step.material}'")
        if step.weighing == "manual":
            entered_number(data.get("quantity"), "quantity")


def evaluate(
    step: Step,
    data: Mapping[str, Any],
    read: Mapping[str, TagValue | None],
    tare: Decimal | None = None,
) -> tuple[list[NewValue], list[DeviationSpec]] | None:
    """The values and deviations of a check or a charge from what was entered and the
    readings of :func:`readings` (``tare``: the scale's reading when the charge started);
    the kinds :func:`entered_outcome` decides; None for the kinds the engine runs itself (a
    parameter set, a run, a wait)."""
    check_entries(step, data)
    if isinstance(step, CheckStep):
        values = [NewValue("confirmed", "true", "entered")]
        signal = step.plc_signal
        if signal is not None:
            seen = read.get(signal.tag)
            if seen is not signal.value:
                raise StepNotReady(
                    f"'{step.title}' cannot be confirmed: the PLC reports {signal.tag}"
                    f" {text_of(seen)}, the statement needs {text_of(signal.value)}. Put it"
                    " right first, or ask a supervisor to override the step (a co-signed"
                    " deviation)"
                )
            values.append(NewValue(signal.tag, text_of(seen), "plc"))
        return values, []
    if isinstance(step, ChargeStep):
        return _charge(step, data, read, tare)
    return entered_outcome(step, data)


def _charge(
    step: ChargeStep,
    data: Mapping[str, Any],
    read: Mapping[str, TagValue | None],
    tare: Decimal | None,
) -> tuple[list[NewValue], list[DeviationSpec]]:
    values: list[NewValue] = []
    lot = str(data.get("lot") or "").strip()
    if lot:
        values.append(NewValue("lot", lot, "entered"))
    low, high = step.acceptance_range()
    if step.weighing == "manual":
        quantity = entered_number(data.get("quantity"), "quantity")
        source = "entered"
    else:
        if tare is None:
            raise StepNotReady("the scale was not tared for this step")
        if read.get("weight_stable") is not True:
            raise StepNotReady("the scale is not stable yet; wait and try again")
        gross = decimal_of(read.get("weight"), "weight")
        quantity = convert(gross - tare, "kg", step.unit)
        values.append(NewValue("gross", text_of(gross), "plc", unit="kg"))
        source = "computed"
    ok = low <= quantity <= high
    values.append(
        NewValue("quantity", text_of(quantity), source, step.unit, str(low), str(high), ok)
    )
    deviations: list[DeviationSpec] = []
    if not ok:
        deviations.append(
            DeviationSpec(
                DeviationKind.OUT_OF_TOLERANCE,
                f"{step.material}: {quantity} {step.unit} charged,"
                f" accepted {low}..{high} {step.unit}",
                parameter="quantity",
                expected=f"{low}..{high}",
                actual=str(quantity),
                unit=step.unit,
            )
        )
    return values, deviations
