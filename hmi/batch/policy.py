"""The one place that decides what a deviation asks of people before the batch may go on.

Every deviation the engine opens is described by its kind, whether it concerns a critical
parameter, and which parameter or value it is about; from these alone this module answers:

- does it need a co-signature (a supervisor, or QA, signs after the reason is given)?
- does it hold the batch at once?

Nothing else in the product answers these questions: the engine's services build a
:class:`~hmi.batch.outcome.DeviationSpec` and the spec asks here; the screens read the stored
answer (``requires_cosign``) of the deviation.
"""

from __future__ import annotations

from hmi.batch.model import DeviationKind

#: Sample results are recorded as ``result:<sample id>``: a result outside its specification
#: (OOS) is decided by a supervisor or QA, never by the operator's reason alone.
RESULT_PREFIX = "result:"

#: Kinds that always need a second person: the operator departs from the procedure on purpose.
ALWAYS_COSIGNED = frozenset(
    {
        DeviationKind.OVERRIDE,
        DeviationKind.SKIP,
        DeviationKind.ABORT,
        DeviationKind.PARAMETER_CHANGE,
    }
)


def result_name(sample_id: str) -> str:
    """The name a sample's result is recorded under."""
    return f"{RESULT_PREFIX}{sample_id}"


def is_result(name: str | None) -> bool:
    """Whether a recorded value is a sample result (checked against a specification)."""
    return name is not None and name.startswith(RESULT_PREFIX)


def requires_cosign(kind: DeviationKind, *, critical: bool, parameter: str | None) -> bool:
    """A critical deviation, a deliberate departure, or a result out of specification needs a
    co-signature before the batch goes on."""
    return (
        critical
        or kind in ALWAYS_COSIGNED
        or (kind is DeviationKind.OUT_OF_TOLERANCE and is_result(parameter))
    )


def holds_batch(*, critical: bool) -> bool:
    """A critical deviation holds a running batch at once (a supervisor resumes it)."""
    return critical
