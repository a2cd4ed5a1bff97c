"""What completing a step produces before anything is written: the values to record and the
deviations to open. Domain only (the policy decides what a deviation needs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hmi.batch import policy
from hmi.batch.model import DeviationKind


@dataclass
class NewValue:
    """A value about to be recorded with a step."""

    name: str
    value: str
    source: str
    unit: str | None = None
    low: str | None = None
    high: str | None = None
    in_limits: bool | None = None


@dataclass
class DeviationSpec:
    kind: DeviationKind
    description: str
    parameter: str | None = None
    expected: str | None = None
    actual: str | None = None
    unit: str | None = None
    critical: bool = False
    alarm_id: int | None = None
    action: Mapping[str, Any] | None = None
    reason: tuple[str, str, str] | None = None  # code, text, user

    @property
    def requires_cosign(self) -> bool:
        """Decided by the one policy (:mod:`hmi.batch.policy`), never by the caller."""
        return policy.requires_cosign(self.kind, critical=self.critical, parameter=self.parameter)

    @property
    def holds_batch(self) -> bool:
        """Whether opening it holds a running batch at once (:mod:`hmi.batch.policy`)."""
        return policy.holds_batch(critical=self.critical)
