"""Batch execution settings (``[batch]`` in hmi.toml): reason codes, reason length, batch numbers.

The reason codes are the site's controlled list a person picks from when a deviation needs a
reason; the free text that goes with it must be at least ``min_reason_length`` characters, so
"ok" never explains anything. Batch numbers follow ``batch_number_pattern`` (a regular
expression the whole number must match).
"""

from __future__ import annotations

from hmi.config import DEFAULT_BATCH_NUMBER_PATTERN, DEFAULT_REASON_CODES, BatchSettings

__all__ = ["DEFAULT_BATCH_NUMBER_PATTERN", "DEFAULT_REASON_CODES", "BatchSettings"]
