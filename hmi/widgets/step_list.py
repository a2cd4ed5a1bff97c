"""The procedure's steps with their status, the current one marked."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

MARKS = {
    "completed": ("✔", "green"),
    "overridden": ("≫", "yellow"),
    "skipped": ("↷", "yellow"),
    "running": ("▶", "bold cyan"),
    "current": ("▷", "bold"),
    "pending": (" ", "dim"),
}


@dataclass(frozen=True)
class StepLine:
    number: int
    title: str
    status: str


def render_steps(lines: Sequence[StepLine]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for line in lines:
        mark, style = MARKS.get(line.status, ("?", ""))
        text.append(f"{mark} {line.number:>2}. {line.title}\n", style=style)
    return text


class StepList(Static):
    """Repainted only when the batch moves (cheap)."""

    DEFAULT_CSS = """
    StepList {
        width: 34;
        height: 1fr;
        border-right: solid $primary;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def show(self, lines: Sequence[StepLine]) -> None:
        self.update(render_steps(lines))
