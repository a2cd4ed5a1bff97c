"""The DEMO banner of the login screen: demo accounts, passwords and live TOTP codes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static


@dataclass(frozen=True)
class DemoLine:
    user_id: str
    role: str
    password: str
    code: str


def render_demo(lines: Sequence[DemoLine], note: str = "") -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" DEMO SITE - training only, not for production records ", style="bold reverse")
    text.append("  Ctrl+O: these codes on any screen\n")
    if note:
        text.append(f" {note}\n")
        return text
    text.append(" user ID     role         password                   authenticator\n")
    for line in lines:
        code = f"code {line.code}" if line.code else "no code needed"
        text.append(f" {line.user_id:<11} {line.role:<12} {line.password:<26} {code}\n")
    return text


class DemoBanner(Static):
    """Shown only on demo sites (``mode = "demo"``)."""

    DEFAULT_CSS = """
    DemoBanner {
        height: auto;
        background: $warning 15%;
        color: $text-warning;
        padding: 0 1;
        margin-bottom: 1;
    }
    """

    def show(self, lines: Sequence[DemoLine], note: str = "") -> None:
        self.update(render_demo(lines, note))
