"""Reading TOML from files people edit, within limits checked before the parser runs.

Python's TOML parser recurses once per level of nested arrays or inline tables, so a file of
20,000 ``[`` is a ``RecursionError``, not a message. :func:`nesting_problem` scans the text
(outside strings and comments) for its deepest nesting first, and :func:`loads_limited` refuses
an over-long or over-deep text with a sentence, before parsing it. Used by the site
configuration and by recipe files.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any


class TomlLimitError(ValueError):
    """A TOML text is too large or too deeply nested to be read; the message says which."""


def nesting_depth(text: str) -> int:
    """How deep a TOML text nests, outside strings and comments: each ``[``/``{`` of a value
    and each part of a dotted key or a table header (``[plc.tags.speed]`` is 3 deep) counts
    one level. An unbalanced text is measured as far as it goes (the parser reports it)."""
    stack: list[str] = []
    deepest = 0
    in_key, header, dots, opened = True, False, 0, 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if char in "\"'":
            i = _skip_string(text, i)
            continue
        if char == "\n":
            if not stack:
                in_key, header, dots, opened = True, False, 0, 0
        elif in_key and char == ".":
            dots += 1
            deepest = max(deepest, len(stack) + dots + 1 + (1 if header else 0))
        elif in_key and char == "=":
            in_key, dots = False, 0
        elif in_key and not stack and char == "[":
            header = True  # a table header: [table] or [[array of tables]]
            opened += 1
            deepest = max(deepest, opened)
        elif header and char == "]":
            header, in_key = False, False
        elif char == "{":
            stack.append(char)
            deepest = max(deepest, len(stack))
            in_key, dots = True, 0
        elif char == "[":
            stack.append(char)
            deepest = max(deepest, len(stack))
            in_key = False
        elif char in "]}":
            if stack:
                stack.pop()
            in_key = False
        elif char == "," and stack and stack[-1] == "{":
            in_key, dots = True, 0
        i += 1
    return deepest


def _skip_string(text: str, i: int) -> int:
    """The index just after the string starting at ``text[i]`` (or the end of the text)."""
    quote = text[i]
    triple = text.startswith(quote * 3, i)
    n = len(text)
    if triple:
        end = i + 3
        while True:
            found = text.find(quote * 3, end)
            if found < 0:
                return n
            if quote == '"' and _escaped(text, found):
                end = found + 1
                continue
            # a closing delimiter may be followed by one or two more quotes that belong to it
            end = found + 3
            while end < n and text[end] == quote and end - found < 5:
                end += 1
            return end
    j = i + 1
    while j < n:
        char = text[j]
        if char == "\n":
            return j  # an unterminated one-line string: the parser reports it
        if quote == '"' and char == "\\":
            j += 2
            continue
        if char == quote:
            return j + 1
        j += 1
    return n


def _escaped(text: str, index: int) -> bool:
    """Whether the character at ``index`` follows an odd number of backslashes."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1


def check_limits(text: str, *, max_bytes: int, max_depth: int) -> None:
    """Raise :class:`TomlLimitError` if the text is longer than ``max_bytes`` (UTF-8) or
    nests arrays or inline tables deeper than ``max_depth``."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > max_bytes:
        raise TomlLimitError(f"{size} bytes; at most {max_bytes} are read")
    depth = nesting_depth(text)
    if depth > max_depth:
        raise TomlLimitError(
            f"nested {depth} levels deep (arrays, inline tables or dotted keys); at most"
            f" {max_depth} levels are read"
        )


def loads_limited(
    text: str,
    *,
    max_bytes: int,
    max_depth: int,
    parse_float: Callable[[str], Any] = float,
) -> dict[str, Any]:
    """``tomllib.loads`` after :func:`check_limits`. Raises :class:`TomlLimitError` or
    ``tomllib.TOMLDecodeError``; never ``RecursionError``."""
    check_limits(text, max_bytes=max_bytes, max_depth=max_depth)
    try:
        return tomllib.loads(text, parse_float=parse_float)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise TomlLimitError(f"nested too deeply; at most {max_depth} levels are read") from None


__all__ = ["TomlLimitError", "check_limits", "loads_limited", "nesting_depth"]
