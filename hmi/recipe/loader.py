"""Reading and validating recipe files: every problem reported at once, each one located.

A file is read as UTF-8 TOML (numbers with a decimal point become :class:`~decimal.Decimal`,
never floats). The header, each parameter and each step are validated separately so that one
broken step does not hide the problems of the others; then the rules between steps and
parameters are checked. Any problem raises :class:`RecipeInvalid` listing them all; a file that
does not validate never yields a :class:`Recipe`, so it can never reach the database.
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from hmi.recipe.errors import Problem, RecipeInvalid
from hmi.recipe.limits import EquipmentLimits
from hmi.recipe.limits import context as limit_context
from hmi.recipe.model import (
    FORMAT_VERSION,
    RULE_ERROR,
    STEP_KINDS,
    Parameter,
    ParameterName,
    Recipe,
    RecipeHeader,
    RuleIssue,
    Step,
    cross_check,
)
from hmi.tomlsafe import TomlLimitError, loads_limited

#: Larger files are refused before parsing (a recipe is a few kilobytes).
MAX_FILE_BYTES = 512 * 1024
#: Deeper nesting (arrays, inline tables, dotted keys) is refused before parsing; a recipe
#: needs three levels.
MAX_NESTING = 16

_STEP_ADAPTER: TypeAdapter[Step] = TypeAdapter(Step)
_NAME_ADAPTER: TypeAdapter[str] = TypeAdapter(ParameterName)
_HEADER_KEYS = (*RecipeHeader.model_fields, "parameters", "steps")


@dataclass(frozen=True)
class LoadedRecipe:
    """A validated recipe together with the exact text it came from.

    ``sha256`` identifies the recipe's meaning (canonical JSON); ``content_sha256`` identifies
    the exact text (comments and layout included).
    """

    recipe: Recipe
    text: str
    source: str
    canonical_json: str
    sha256: str
    content_sha256: str


def text_sha256(text: str) -> str:
    """SHA-256 (hex) of a recipe text as stored: its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_recipe_file(path: Path, limits: EquipmentLimits | None = None) -> LoadedRecipe:
    """Read and validate one recipe file; raise :class:`RecipeInvalid` naming every problem.

    ``limits``: the equipment the numbers are checked against (a site's, from
    :func:`hmi.recipe.limits.limits_from_settings`); None for the product defaults."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise RecipeInvalid(
                source,
                [
                    Problem(
                        source,
                        "file",
                        None,
                        f"{size} bytes; a recipe file is at most {MAX_FILE_BYTES}",
                    )
                ],
            )
        data = path.read_bytes()
    except OSError as exc:
        raise RecipeInvalid(
            source, [Problem(source, "file", None, f"cannot be read: {exc.strerror or exc}")]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeInvalid(
            source, [Problem(source, "file", None, f"is not UTF-8 text (byte {exc.start})")]
        ) from None
    return load_recipe_text(text, source, limits)


def load_recipe_text(text: str, source: str, limits: EquipmentLimits | None = None) -> LoadedRecipe:
    """Validate a recipe given as text; ``source`` names it in every problem."""
    recipe = parse_recipe(text, source, limits)
    canonical_json = recipe.canonical_json()
    return LoadedRecipe(
        recipe=recipe,
        text=text,
        source=source,
        canonical_json=canonical_json,
        sha256=hashlib.sha256(canonical_json.encode("utf-8")).hexdigest(),
        content_sha256=text_sha256(text),
    )


def parse_recipe(text: str, source: str, limits: EquipmentLimits | None = None) -> Recipe:
    """The :class:`Recipe` a TOML text describes, or :class:`RecipeInvalid` with every problem.

    The text's size and nesting are checked before it is parsed."""
    if text.startswith("\ufeff"):
        raise RecipeInvalid(
            source,
            [
                Problem(
                    source,
                    "file",
                    None,
                    "starts with a byte-order mark; save it as UTF-8 without BOM",
                )
            ],
        )
    try:
        raw = loads_limited(
            text, max_bytes=MAX_FILE_BYTES, max_depth=MAX_NESTING, parse_float=Decimal
        )
    except TomlLimitError as exc:
        raise RecipeInvalid(source, [Problem(source, "file", None, f"not read: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeInvalid(
            source, [Problem(source, "file", None, f"is not valid TOML: {exc}")]
        ) from None
    return validate_recipe_data(raw, source, limits)


def validate_recipe_data(
    raw: dict[str, Any], source: str, limits: EquipmentLimits | None = None
) -> Recipe:
    """Validate parsed TOML data piece by piece, then as a whole."""
    found: list[tuple[tuple[int, int], Problem]] = []
    ctx = limit_context(limits)

    def add(key: tuple[int, int], problems: Iterable[Problem]) -> None:
        found.extend((key, problem) for problem in problems)

    header = {key: value for key, value in raw.items() if key not in ("parameters", "steps")}
    try:
        RecipeHeader.model_validate(header)
    except ValidationError as exc:
        add((0, 0), _problems(exc, source, "recipe", _HEADER_KEYS))

    raw_parameters = raw.get("parameters", {})
    valid_parameters: dict[str, Parameter] = {}
    declared: list[str] = []
    if not isinstance(raw_parameters, dict):
        add(
            (0, 0),
            [
                Problem(
                    source, "recipe", "parameters", "expected tables [parameters.NAME], got a value"
                )
            ],
        )
        raw_parameters = {}
    for position, (name, body) in enumerate(raw_parameters.items()):
        declared.append(name)
        where = f"parameter {name!r}"
        try:
            _NAME_ADAPTER.validate_python(name)
        except ValidationError as exc:
            add((1, position), _problems(exc, source, where, (), field_override="name"))
        try:
            valid_parameters[name] = Parameter.model_validate(body, context=ctx)
        except ValidationError as exc:
            add((1, position), _problems(exc, source, where, tuple(Parameter.model_fields)))

    raw_steps = raw.get("steps", [])
    if not isinstance(raw_steps, list):
        add(
            (0, 0),
            [
                Problem(
                    source, "recipe", "steps", "expected an array of tables: one [[steps]] per step"
                )
            ],
        )
        raw_steps = []
    steps: list[tuple[object, Step | None]] = []
    for index, body in enumerate(raw_steps):
        raw_id = body.get("id") if isinstance(body, dict) else None
        where = _step_where(raw_id, index)
        try:
            steps.append((raw_id, _STEP_ADAPTER.validate_python(body, context=ctx)))
        except ValidationError as exc:
            kind = body.get("kind") if isinstance(body, dict) else None
            model = STEP_KINDS.get(kind) if isinstance(kind, str) else None
            allowed = tuple(model.model_fields) if model is not None else ()
            add((2, index), _problems(exc, source, where, allowed))
            steps.append((raw_id, None))

    checked = cross_check(
        declared=declared, parameters=valid_parameters, steps=steps, limits=ctx["limits"]
    )
    for issue in checked:
        if issue.step is not None:
            key = (2, issue.step)
        elif issue.parameter is not None and issue.parameter in declared:
            key = (1, declared.index(issue.parameter))
        else:
            key = (0, 0)
        add(key, [_issue_problem(issue, source, "recipe", steps)])
    if found:
        found.sort(key=lambda item: item[0])  # stable: file order, then rule order
        raise RecipeInvalid(source, [problem for _key, problem in found])
    try:
        return Recipe.model_validate(raw, context=ctx)
    except ValidationError as exc:  # pragma: no cover - the piecewise checks above cover all rules
        raise RecipeInvalid(source, _problems(exc, source, "recipe", _HEADER_KEYS)) from None


# -- turning pydantic errors into located problems ----------------------------------------


def _step_where(raw_id: object, index: int) -> str:
    if isinstance(raw_id, str) and raw_id.strip():
        return f"step {raw_id!r} (#{index + 1})"
    return f"step #{index + 1}"


def _issue_problem(
    issue: RuleIssue, source: str, where: str, steps: list[tuple[object, Step | None]] | None = None
) -> Problem:
    if issue.step is not None:
        raw_id = steps[issue.step][0] if steps is not None else None
        where = _step_where(raw_id, issue.step)
    elif issue.parameter is not None:
        where = f"parameter {issue.parameter!r}"
    return Problem(source, where, issue.field, issue.message)


def _problems(
    exc: ValidationError,
    source: str,
    where: str,
    allowed: Iterable[str],
    *,
    field_override: str | None = None,
) -> list[Problem]:
    out: list[Problem] = []
    allowed = tuple(allowed)
    for error in exc.errors(include_url=False):
        kind = error["type"]
        ctx = error.get("ctx") or {}
        if kind == RULE_ERROR and "issues" in ctx:
            out += [_issue_problem(issue, source, where) for issue in ctx["issues"]]
            continue
        loc = [part for part in error["loc"] if not (isinstance(part, str) and "[" in part)]
        if where.startswith("step") and loc and isinstance(loc[0], str) and loc[0] in STEP_KINDS:
            loc = loc[1:]  # the discriminator's tag
        field = field_override or _field_path(loc)
        if kind == "extra_forbidden":
            key = str(loc[-1]) if loc else "?"
            out.append(Problem(source, where, field, _unknown_key(key, allowed)))
        else:
            out.append(Problem(source, where, field, _message(error, field)))
    return out


def _field_path(loc: list[int | str]) -> str | None:
    if not loc:
        return None
    text = ""
    for part in loc:
        text += f" #{part + 1}" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _unknown_key(key: str, allowed: tuple[str, ...]) -> str:
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    if allowed:
        message += f"; expected one of: {', '.join(allowed)}"
    return message


def _given(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _message(error: Any, field: str | None) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = _given(error.get("input"))
    if kind == "missing":
        return "required but missing"
    if kind == RULE_ERROR:
        return str(error["msg"])
    if kind == "union_tag_not_found":
        return f"missing; every step needs a kind, one of: {', '.join(STEP_KINDS)}"
    if kind == "union_tag_invalid":
        return f"unknown step kind {ctx.get('tag')!r}; expected one of: {', '.join(STEP_KINDS)}"
    if kind == "literal_error" and field == "format":
        return f"this software reads recipe format {FORMAT_VERSION}; got {given}"
    simple = {
        "string_type": "expected text in quotes",
        "bool_type": "expected true or false",
        "int_type": "expected a whole number",
        "tuple_type": 'expected a list, e.g. ["a", "b"]',
        "list_type": 'expected a list, e.g. ["a", "b"]',
        "dict_type": "expected a table",
        "model_type": "expected a table",
        "model_attributes_type": "expected a table",
        "string_pattern_mismatch": "must not be blank",
        "string_too_short": "must not be empty",
    }
    if kind in simple:
        return f"{simple[kind]}, got {given}"
    bounds = {
        "greater_than": ("greater than", "gt"),
        "greater_than_equal": ("at least", "ge"),
        "less_than": ("less than", "lt"),
        "less_than_equal": ("at most", "le"),
    }
    if kind in bounds:
        words, key = bounds[kind]
        return f"expected a value {words} {ctx.get(key)}, got {given}"
    if kind == "string_too_long":
        return f"too long: at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {given}"
    return f"{error['msg']} (got {given})"
