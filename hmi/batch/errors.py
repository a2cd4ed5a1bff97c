"""Exceptions of the batch engine: each one a sentence an operator understands.

Every refusal is recorded in the audit trail before it is raised (``batch.*.refused``), so a
blocked attempt is itself part of the record (21 CFR 11.10(f)).
"""

from __future__ import annotations

from collections.abc import Sequence


class BatchError(Exception):
    """Base class: a batch operation was refused or failed; the message says why."""


class BatchNotFound(BatchError):
    """No batch with that number."""


class BatchNumberInvalid(BatchError):
    """The batch number does not have the site's format."""


class BatchNumberTaken(BatchError):
    """A batch with that number already exists on this site (numbers are never reused)."""


class BatchStateError(BatchError):
    """The batch is not in a state that allows this (held, completed, released...)."""


class BatchHeld(BatchStateError):
    """The batch is on hold: a supervisor must resume it first."""


class StepOutOfOrder(BatchError):
    """Steps run strictly in order: this is not the current step."""


class StepNotReady(BatchError):
    """The current step's condition is not met yet (scale not stable, blend still running...)."""


class StepDataInvalid(BatchError):
    """Entered data is missing or malformed; nothing was recorded."""


class NotTrained(BatchError):
    """The user is not recorded as trained on this recipe (21 CFR 11.10(i))."""


class DeviationOpen(BatchError):
    """A deviation still needs a reason or a co-signature before the batch can proceed."""

    def __init__(self, message: str, deviation_ids: Sequence[str]) -> None:
        super().__init__(message)
        self.deviation_ids = tuple(deviation_ids)


class DeviationNotFound(BatchError):
    """No deviation with that number."""


class InvalidReason(BatchError):
    """A reason code is not in the site's list or the text is too short or too long."""


class SignatureProblem(BatchError):
    """A signature is missing, covers another record, has the wrong meaning or role."""


class CosignRefused(SignatureProblem):
    """The co-signature does not satisfy the two-person rule."""


class ReleaseBlocked(BatchError):
    """The batch cannot be released (or rejected) yet; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("the batch cannot be released: " + "; ".join(problems))
        self.problems = tuple(problems)


class EquipmentInServiceMode(BatchError):
    """The equipment is in service mode (maintenance): production actions wait until it exits."""


class PlcCommandFailed(BatchError):
    """The PLC refused a command or its outcome is unknown; intent and result are recorded."""


class ResultNotRecorded(BatchError):
    """The PLC answered a command but its result could not be committed: the result is kept
    in the command journal and recorded before anything else is done on the batch."""
