"""The two-line header on every screen: where, who, when, the PLC, the batch, the alarms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Static


@dataclass(frozen=True)
class HeaderInfo:
    """Everything the header shows, computed by the screen's context."""

    site: str
    line: str
    terminal: str
    user: str
    time: str
    plc: str
    plc_ok: bool
    batch: str
    service_mode: bool
    unacknowledged_alarms: int
    demo: bool = False
    idle_warning: str = ""


def render_header(info: HeaderInfo) -> Text:
    """The header as styled text, two lines.

    What must never be cut comes first: who is logged in on line 1; the time, the PLC link,
    the alarms and the SERVICE MODE and lock warnings on line 2. The batch comes last, as it
    is also the title of the batch screen; at 80 columns it may end in an ellipsis.
    """
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(f" {info.site} / {info.line}", style="bold")
    text.append(f"  {info.terminal}")
    text.append(f"  User: {info.user}", style="bold")
    if info.demo:
        text.append("  ")
        text.append(" DEMO ", style="bold reverse magenta")
    text.append(f"\n {info.time}  PLC: ")
    text.append(info.plc, style="bold green" if info.plc_ok else "bold reverse red")
    alarms = info.unacknowledged_alarms
    text.append("  Alarms: ")
    text.append(
        f"{alarms} unack" if alarms else "none",
        style="bold reverse red" if alarms else "",
    )
    if info.service_mode:
        text.append("  ")
        text.append(" SERVICE MODE ", style="bold reverse yellow")
    if info.idle_warning:
        text.append("  ")
        text.append(f" {info.idle_warning} ", style="bold reverse yellow")
    text.append(f"  Batch: {info.batch}")
    return text


class HeaderBar(Widget):
    """Pulls :class:`HeaderInfo` from a provider each second (and when asked)."""

    DEFAULT_CSS = """
    HeaderBar {
        height: 2;
        background: $panel;
        color: $foreground;
    }
    HeaderBar > Static { height: 2; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, provider: Callable[[], HeaderInfo], *, id: str | None = "header") -> None:
        super().__init__(id=id)
        self._provider = provider
        self._line = Static("", id="header-text")
        self.info: HeaderInfo | None = None

    def compose(self) -> ComposeResult:
        yield self._line

    def on_mount(self) -> None:
        self.refresh_info()
        self.set_interval(1.0, self.refresh_info)

    def refresh_info(self) -> None:
        info = self._provider()
        if info != self.info:
            self.info = info
            self._line.update(render_header(info), layout=False)
