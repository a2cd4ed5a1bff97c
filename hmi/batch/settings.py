"""Batch execution settings (``[batch]`` in hmi.toml): reason codes, reason length, batch numbers.

The reason codes are the site's controlled list a person picks from when a deviation needs a
reason; the free text that goes with it must be at least ``min_reason_length`` characters, so
"ok" never explains anything. Batch numbers follow ``batch_number_pattern`` (a regular
expression the whole number must match).
"""

from __future__ import annotations

import re
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_REASON_CODES: dict[str, str] = {
    "EQUIPMENT": "Equipment malfunction or alarm",
    "MATERIAL": "Material out of specification or short",
    "OPERATOR": "Operator error",
    "PROCESS": "Process variation within validated knowledge",
    "UTILITIES": "Utilities or communication failure",
    "PLANNED": "Planned change (approved beforehand)",
    "OTHER": "Other (explain in the text)",
}

DEFAULT_BATCH_NUMBER_PATTERN = r"^[A-Z0-9][A-Z0-9-]{2,31}$"


class BatchSettings(BaseModel):
    """How batches are numbered and how deviations are explained at this site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_number_pattern: str = DEFAULT_BATCH_NUMBER_PATTERN
    reason_codes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REASON_CODES))
    min_reason_length: Annotated[int, Field(ge=3, le=200)] = 10
    max_reason_length: Annotated[int, Field(ge=50, le=4000)] = 1000
    shelve_max_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 480.0
    """Longest time an alarm may be shelved (ISA-18.2: shelving is always bounded)."""
    plc_command_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    """How long the engine waits for the PLC to reach the state a command asks for."""

    @field_validator("batch_number_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("reason_codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one reason code is needed")
        bad = [code for code in value if not re.match(r"^[A-Z][A-Z0-9_]{1,31}$", code)]
        if bad:
            raise ValueError(f"reason codes are 2-32 upper-case letters, digits or '_': {bad}")
        empty = [code for code, label in value.items() if not label.strip()]
        if empty:
            raise ValueError(f"reason codes need a label: {empty}")
        return value

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        if self.min_reason_length > self.max_reason_length:
            raise ValueError("min_reason_length must not exceed max_reason_length")
        return self

    def batch_number_ok(self, number: str) -> bool:
        return re.fullmatch(self.batch_number_pattern, number) is not None
