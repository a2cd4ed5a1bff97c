"""The README's Quick start is a contract: exactly two one-line commands, the second of which is
exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[3]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", section, re.DOTALL)
    assert block, "the Quick start has a code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert demo.endswith("hmi demo")
    for tool in ("pytest", "ruff check", "mypy", "lint-imports"):
        assert tool in tests
    for command in commands:
        assert command.startswith("python3 -m venv .venv && ")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r"^TEST_COMMAND='(.*)'$", script, re.MULTILINE)
    assert match
    assert match.group(1) == quick_start_commands()[1]
    assert "rm -rf .venv" in script  # a fresh virtual environment every time
