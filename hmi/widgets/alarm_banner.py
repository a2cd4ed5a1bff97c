"""A one-line banner for the newest unacknowledged alarm, on every screen."""

from __future__ import annotations

from textual.widgets import Static


class AlarmBanner(Static):
    """Hidden while nothing waits for acknowledgement."""

    DEFAULT_CSS = """
    AlarmBanner {
        height: 1;
        background: $error;
        color: $text;
        text-style: bold;
        padding: 0 1;
        display: none;
    }
    AlarmBanner.-shown { display: block; }
    """

    def show(self, count: int, newest: str) -> None:
        self.set_class(count > 0, "-shown")
        if count:
            more = f" (+{count - 1} more)" if count > 1 else ""
            self.update(f"ALARM: {newest}{more} - F1 then Alarms to acknowledge", layout=False)
