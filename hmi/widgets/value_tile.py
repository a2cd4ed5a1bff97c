"""A live value with unit, limits, a colour for normal / warning / out of limits, and a trend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Sparkline, Static


@dataclass(frozen=True)
class Limits:
    """Display limits: outside ``warn`` is a warning, outside ``alarm`` is out of limits."""

    warn_low: float | None = None
    warn_high: float | None = None
    alarm_low: float | None = None
    alarm_high: float | None = None

    def status(self, value: float) -> str:
        if (self.alarm_low is not None and value < self.alarm_low) or (
            self.alarm_high is not None and value > self.alarm_high
        ):
            return "alarm"
        if (self.warn_low is not None and value < self.warn_low) or (
            self.warn_high is not None and value > self.warn_high
        ):
            return "warning"
        return "normal"

    def text(self) -> str:
        low = self.warn_low if self.warn_low is not None else self.alarm_low
        high = self.warn_high if self.warn_high is not None else self.alarm_high
        if low is None and high is None:
            return ""
        if low is None:
            return f"max {high:g}"
        if high is None:
            return f"min {low:g}"
        return f"limits {low:g} to {high:g}"


STATUS_CLASSES = ("normal", "warning", "alarm", "bad")
STATUS_WORDS = {"normal": "", "warning": " WARN", "alarm": " OUT OF LIMITS", "bad": " NO VALUE"}


class ValueTile(Widget):
    """One process value; ``show`` is cheap (no layout) so 10 Hz updates cost little."""

    DEFAULT_CSS = """
    ValueTile {
        height: 5;
        width: 1fr;
        border: round $primary;
        padding: 0 1;
    }
    ValueTile > .tile-value { height: 1; text-style: bold; }
    ValueTile > .tile-limits { height: 1; color: $text-muted; }
    ValueTile > Sparkline { height: 1; }
    ValueTile.warning { border: heavy $warning; }
    ValueTile.warning > .tile-value { color: $text-warning; }
    ValueTile.alarm { border: heavy $error; }
    ValueTile.alarm > .tile-value { color: $text-error; }
    ValueTile.bad > .tile-value { color: $text-muted; }
    """

    def __init__(
        self, label: str, unit: str, limits: Limits, *, digits: int = 1, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.border_title = label
        self.unit = unit
        self.limits = limits
        self.digits = digits
        self.status = "bad"
        self._value = Static("--", classes="tile-value")
        self._limits = Static(f"{unit}  {limits.text()}", classes="tile-limits")
        self._trend = Sparkline([], summary_function=max)
        self.text = "--"

    def compose(self) -> ComposeResult:
        yield self._value
        yield self._limits
        yield self._trend

    def show(self, value: float | None, trend: Sequence[float] | None = None) -> None:
        if value is None:
            status, text = "bad", "--"
        else:
            status = self.limits.status(value)
            text = f"{value:.{self.digits}f} {self.unit}"
        text += STATUS_WORDS[status]
        if status != self.status:
            for name in STATUS_CLASSES:
                self.set_class(name == status, name)
            self.status = status
        if text != self.text:
            self.text = text
            self._value.update(text, layout=False)
        if trend is not None:
            self._trend.data = list(trend)
