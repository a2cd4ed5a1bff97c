"""Bad input at the door and read-only commands, through the real ``hmi`` command on a real
site (SQLite file, keys, witness file) in a temporary directory (issue 17, items 4 and 5)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HMI = str(Path(sys.executable).parent / "hmi")
RECIPE = (Path(__file__).parents[3] / "recipes" / "paracetamol-final-blend.toml").read_text()
READING = [
    ["batch", "list"],
    ["batch", "show", "B-0001"],
    ["audit", "show"],
    ["recipes", "list"],
    ["users", "list"],
]


def hmi(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HMI, *args, "--data", str(data)], capture_output=True, text=True, timeout=120
    )


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, no traceback, and the last line of stderr names what is wrong."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    text = result.stderr.lower()
    for word in words:
        assert word.lower() in text, result.stderr


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    site = tmp_path_factory.mktemp("door") / "site"
    created = hmi("init", "--no-admin", data=site)
    assert created.returncode == 0, created.stderr
    config = site / "hmi.toml"
    config.write_text(config.read_text().replace("busy_timeout_ms = 5000", "busy_timeout_ms = 200"))
    yield site


# -- recipes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("high = 14\n", "high = 1e999999\n", ["'high'", "at most"]),
        ("high = 14\n", "high = 1e308\n", ["'high'"]),
        ("low = 10\n", "low = -50\n", ["'low'"]),
        (
            "setpoint = 12\nlow = 10\nhigh = 14",
            "setpoint = 500\nlow = 400\nhigh = 600",
            ["plc tag"],
        ),
        ("target = 180.0", "target = 9000", ["bin holds"]),
        ("target = 180.0", "target = 1e30", ["target"]),
        (
            "setpoint = 15\nlow = 14\nhigh = 16",
            "setpoint = -15\nlow = -16\nhigh = -14",
            ["blend_time"],
        ),
        ("setpoint = 15\nlow = 14\nhigh = 16", "setpoint = 0\nlow = 0\nhigh = 0", ["blend_time"]),
        ('name = "Paracetamol', 'name = "Para\\u0000cetamol', ["nul", "'name'"]),
        ('title = "Line clearance"', 'title = "Line \\u202Eclearance"', ["bidirectional"]),
        ('title = "Line clearance"', 'title = "Line \\u001b[31mclearance"', ["escape"]),
    ],
)
def test_an_implausible_recipe_is_refused_with_its_reason(
    data: Path, tmp_path: Path, old: str, new: str, words: list[str]
) -> None:
    assert old in RECIPE
    path = tmp_path / "bad.toml"
    path.write_text(RECIPE.replace(old, new, 1))
    refused(hmi("recipes", "validate", str(path), data=data), "not a valid recipe", *words)


def test_the_good_recipe_is_accepted(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(RECIPE)
    result = hmi("recipes", "validate", str(path), data=data)
    assert result.returncode == 0, result.stderr


def test_deep_nesting_is_refused_before_parsing(data: Path, tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text("format = 1\nx = " + "[" * 20000 + "]" * 20000 + "\n")
    refused(hmi("recipes", "validate", str(path), data=data), "nested", "levels")


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda t: t.replace("idle_lock_minutes = 5 ", "idle_lock_minutes = true "),
            ["not true or false"],
        ),
        (lambda t: t.replace("[plc]\n", "[plc]\nport = 99999\n", 1), ["port: unknown key"]),
        (
            lambda t: t.replace("127.0.0.1:4840/", "127.0.0.1:99999/", 1),
            ["[plc] endpoint", "port 99999 is not a TCP port (1-65535)"],
        ),
        (lambda t: "", ["[site]: missing"]),
        (lambda t: t.replace("[site]", "[sitex]"), ["[site]: missing"]),
        (lambda t: 'data_dir = "/etc"\n' + t, ["data_dir: unknown key"]),
        (lambda t: t.replace('url = ""', 'url = "postgresql://host/db"'), ["driver"]),
        (lambda t: "x = " + "[" * 5000 + "]" * 5000 + "\n" + t, ["nested"]),
        (lambda t: t.replace('site_name = "Site"', 'site_name = "S\\u202Eite"'), ["bidirectional"]),
    ],
)
def test_a_bad_configuration_is_refused_with_its_reason(
    tmp_path: Path, data: Path, edit: object, words: list[str]
) -> None:
    import shutil

    copy = tmp_path / "site"
    shutil.copytree(data, copy)
    config = copy / "hmi.toml"
    assert "[plc]\n" in config.read_text()
    config.write_text(edit(config.read_text()))  # type: ignore[operator]
    refused(hmi("users", "list", data=copy), *words)


# -- command line -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["recipes", "show", "PARA500-FB", "99999999999999999999999"], ["VERSION", "1 to 9999"]),
        (["audit", "show", "--limit", "99999999999999999999999"], ["--limit"]),
        (["audit", "show", "--limit", "0"], ["--limit"]),
        (
            ["audit", "show", "--from", "0001-01-01", "--to", "9999-12-31T23:59:59"],
            ["out of range"],
        ),
        (["audit", "export", "--from", "0001-01-01", "--out", "x.jsonl"], ["out of range"]),
        (
            ["audit", "show", "--from", "2026-02-02", "--to", "2026-02-01"],
            ["ends before it starts"],
        ),
        (["audit", "verify", "--workers", "-3"], ["--workers"]),
    ],
)
def test_a_bad_argument_is_refused_with_its_reason(
    data: Path, args: list[str], words: list[str]
) -> None:
    before = sha(data / "hmi.db")
    refused(hmi(*args, data=data), *words)
    assert sha(data / "hmi.db") == before


# -- read-only commands -------------------------------------------------------------------------


@pytest.mark.parametrize("args", READING, ids=" ".join)
def test_a_reading_command_leaves_the_database_as_it_was(data: Path, args: list[str]) -> None:
    files = [data / "hmi.db", data / "witness" / "checkpoints.jsonl"]
    before = [sha(f) for f in files]
    result = hmi(*args, data=data)
    assert result.returncode in (0, 2) and "Traceback" not in result.stderr, result.stderr
    assert [sha(f) for f in files] == before


def test_a_reading_command_reads_under_another_writers_lock(data: Path) -> None:
    before = sha(data / "hmi.db")
    other = sqlite3.connect(data / "hmi.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        result = hmi("audit", "show", data=data)
        assert result.returncode == 0, result.stderr
        assert "audit event(s)" in result.stdout
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert sha(data / "hmi.db") == before


def test_an_exclusive_lock_is_one_sentence_and_exit_2(tmp_path: Path, data: Path) -> None:
    import shutil

    copy = tmp_path / "site"
    shutil.copytree(data, copy)
    other = sqlite3.connect(copy / "hmi.db", isolation_level=None)
    try:
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("CREATE TABLE held (x)")
        for args in (["batch", "list"], ["audit", "show"], ["users", "list"]):
            refused(hmi(*args, data=copy), "locked")
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_removed_witness_file_is_reported_and_not_recreated(tmp_path: Path, data: Path) -> None:
    import shutil

    copy = tmp_path / "site"
    shutil.copytree(data, copy)
    witness = copy / "witness" / "checkpoints.jsonl"
    witness.unlink()
    for args in READING:
        assert "Traceback" not in hmi(*args, data=copy).stderr
    verified = hmi("audit", "verify", data=copy)
    assert verified.returncode == 1
    assert "witness file" in verified.stdout and "missing" in verified.stdout
    assert "NOT INTACT" in verified.stdout
    assert not witness.exists()
