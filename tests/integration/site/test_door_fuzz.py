"""Generated recipe files, configuration files and command lines through the CLI's ``main``:
whatever they hold, the answer is an exit status (0, 1 or 2), never an exception."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hmi.cli import main
from hmi.site import init_site

RECIPE = (Path(__file__).parents[3] / "recipes" / "paracetamol-final-blend.toml").read_text()
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(f), repr(f))
    ),
    st.sampled_from(["true", "false", '""', "[]", "{}", "1e999999", "-0", "[" * 50 + "]" * 50]),
    st.text(max_size=20).map(
        lambda s: '"' + s.encode("unicode_escape").decode().replace('"', "") + '"'
    ),
)
_ASSIGN = re.compile(r"^([a-z_]+) = (.+)$", re.MULTILINE)


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("fuzz") / "site"
    init_site(site, terminal_id="KIOSK-01", site_name="Fuzz Site").close()
    yield site


def mutate(text: str, picks: list[tuple[int, str]]) -> str:
    assignments = list(_ASSIGN.finditer(text))
    for index, value in sorted(picks, reverse=True):
        match = assignments[index % len(assignments)]
        text = text[: match.start(2)] + value + text[match.end(2) :]
        assignments = list(_ASSIGN.finditer(text))
    return text


PICKS = st.lists(st.tuples(st.integers(0, 10_000), VALUES), min_size=1, max_size=4)


@FUZZ
@given(picks=PICKS)
def test_a_generated_recipe_never_raises(
    data: Path, tmp_path: Path, picks: list[tuple[int, str]]
) -> None:
    path = tmp_path / "recipe.toml"
    path.write_text(mutate(RECIPE, picks), encoding="utf-8")
    code, err = run(["recipes", "validate", str(path), "--data", str(data)])
    assert code in (0, 2)
    assert "Traceback" not in err


@FUZZ
@given(picks=PICKS)
def test_a_generated_configuration_never_raises(data: Path, picks: list[tuple[int, str]]) -> None:
    config = data / "hmi.toml"
    original = config.read_text()
    try:
        config.write_text(mutate(original, picks), encoding="utf-8")
        code, err = run(["users", "list", "--data", str(data)])
    finally:
        config.write_text(original)
    assert code in (0, 1, 2)
    assert "Traceback" not in err


TOKENS = st.one_of(
    VALUES.map(lambda v: v.strip('"')),
    st.sampled_from(
        [
            "--limit",
            "--from",
            "--to",
            "--workers",
            "--version",
            "--entity",
            "--status",
            "0001-01-01",
            "9999-12-31T23:59:59",
            "2026-01-01",
            "-3",
            "99999999999999999999999",
        ]
    ),
)
COMMANDS = st.sampled_from(
    [
        ["audit", "show"],
        ["audit", "verify"],
        ["batch", "list"],
        ["batch", "show"],
        ["recipes", "list"],
        ["recipes", "show"],
        ["users", "list"],
        ["audit", "export"],
    ]
)


@FUZZ
@given(command=COMMANDS, tokens=st.lists(TOKENS, max_size=5))
def test_a_generated_command_line_never_raises(
    data: Path, command: list[str], tokens: list[str]
) -> None:
    if command == ["audit", "export"]:
        tokens = [*tokens, "--out", str(data / "export-never-written" / "x.jsonl")]
    code, err = run([*command, *tokens, "--data", str(data)])
    assert code in (0, 1, 2)
    assert "Traceback" not in err
