"""The forms of stored text the format fixes (docs/audit-format.md §2, §3): one place for the
event rows and the checkpoints."""

from __future__ import annotations

import re
from datetime import datetime

#: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` with every field in range (ASCII digits only); the day is
#: checked against its month separately, and only when it is above 28.
TS_FORM = re.compile(
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}Z"
).fullmatch
TERMINAL_FORM = re.compile(r"[A-Z0-9][A-Z0-9_-]{1,31}").fullmatch
HEX64 = re.compile(r"[0-9a-f]{64}").fullmatch
KEY_ID_FORM = re.compile(r"[0-9a-f]{32}").fullmatch
SIGNATURE_FORM = re.compile(r"[0-9a-f]{128}").fullmatch
#: a checkpoint's reason: a lower-case word (``init``, ``startup``, ``export``, ...)
REASON_FORM = re.compile(r"[a-z][a-z0-9_]{0,31}").fullmatch


def real_day(ts: str) -> bool:
    """A day above 28 exists in its month (the form itself is checked by the pattern)."""
    try:
        datetime(int(ts[0:4]), int(ts[5:7]), int(ts[8:10]))
    except ValueError:
        return False
    return True


def ts_in_form(ts: object) -> bool:
    """``ts`` is exactly ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` and a real UTC time."""
    return type(ts) is str and TS_FORM(ts) is not None and (ts[8:10] <= "28" or real_day(ts))
