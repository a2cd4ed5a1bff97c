"""Text that people read on screens, records and printed copies: what it may not contain.

A control character (NUL, an ANSI escape sequence's ESC, a carriage return that overwrites a
line), a bidirectional override or isolate (U+202A-U+202E, U+2066-U+2069, which make text read
differently from how it is stored) or a line or paragraph separator changes what a reader sees.
Such text is refused where it enters: recipe files and the site configuration.
"""

from __future__ import annotations

import unicodedata

#: Bidirectional embeddings, overrides and isolates (Unicode UAX #9).
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

_MULTILINE_ALLOWED = frozenset("\n\t")


def text_problem(value: str, *, multiline: bool) -> str | None:
    """Why ``value`` may not be shown as it is, or None. ``multiline`` text may hold line
    feeds and tabs; nothing else below U+0020, no C1 control, no bidirectional control."""
    for index, char in enumerate(value):
        if multiline and char in _MULTILINE_ALLOWED:
            continue
        if char in BIDI_CONTROLS:
            return (
                f"contains the bidirectional control U+{ord(char):04X} at character {index + 1};"
                " it makes the text read differently from how it is stored"
            )
        category = unicodedata.category(char)
        if category == "Cc":
            what = {
                "\x00": "a NUL character",
                "\x1b": "an escape character (ANSI terminal codes)",
                "\n": "a line break",
                "\t": "a tab",
                "\r": "a carriage return",
            }.get(char, "a control character")
            where = "" if multiline or char != "\n" else " (this field is one line)"
            return f"contains {what} (U+{ord(char):04X}) at character {index + 1}{where}"
        if category in ("Zl", "Zp"):
            return (
                f"contains a line or paragraph separator (U+{ord(char):04X}) at character"
                f" {index + 1}"
            )
        if category == "Cs":
            return f"contains an unpaired surrogate (U+{ord(char):04X}) at character {index + 1}"
    return None
