"""Alarms: the list (active/cleared, acknowledged by whom and when), acknowledge, shelve for a
bounded time with a reason, and the history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hmi.alarms.service import AlarmRecord
from hmi.screens.base import HmiScreen
from hmi.screens.context import format_local
from hmi.screens.messages import AlarmsTouched
from hmi.screens.modals.form import Field, FormDialog


class AlarmsScreen(HmiScreen):
    """ISA-18.2 alarm list of this terminal."""

    REQUIRES = "batch.view"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "acknowledge", "Acknowledge", id="acknowledge"),
        Binding("f3", "shelve", "Shelve", id="shelve"),
        Binding("f4", "toggle_history", "History", id="history"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[AlarmRecord] = []
        self.history = False

    def compose_body(self) -> ComposeResult:
        yield Static("Active and unacknowledged alarms", id="alarms-title", classes="form-title")
        yield DataTable(id="alarms-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="alarm-detail")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "Raised", "Code", "Sev", "Message", "State", "Acknowledged by"
        )
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "acknowledge":
            return self.ctx.may("alarm.acknowledge")
        if action == "shelve":
            return self.ctx.may("alarm.shelve")
        return True

    def on_alarms_changed(self) -> None:
        self.reload()

    def reload(self) -> None:
        alarms = self.ctx.alarms
        if alarms is None:
            return
        history = self.history
        self.run_blocking(
            lambda: alarms.history(limit=200) if history else alarms.active(include_shelved=True),
            self._show,
        )

    def _show(self, rows: list[AlarmRecord]) -> None:
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        tz = self.ctx.tz
        for row in rows:
            acked = (
                f"{row.acknowledged_by} {format_local(row.acknowledged_at, tz)[11:19]}"
                if row.acknowledged_at
                else "-"
            )
            table.add_row(
                format_local(row.raised_at, tz)[5:19],
                row.code,
                str(row.severity),
                row.message[:34],
                row.state_label,
                acked,
                key=str(row.alarm_id),
            )
        self.query_one("#alarms-title", Static).update(
            "Alarm history (newest first)" if self.history else "Active and unacknowledged alarms"
        )
        self.query_one("#alarm-detail", Static).update(
            f"{len(rows)} alarm(s)" if rows else "No alarms."
        )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            row = self.rows[event.cursor_row]
            tz = self.ctx.tz
            parts = [f"{row.code}: {row.message} ({row.state_label})"]
            if row.shelved and row.shelved_until:
                parts.append(
                    f"Shelved by {row.shelved_by} until {format_local(row.shelved_until, tz)}: "
                    f"{row.shelve_reason}"
                )
            if row.cleared_at:
                parts.append(f"Cleared {format_local(row.cleared_at, tz)}")
            self.query_one("#alarm-detail", Static).update("\n".join(parts))

    def selected(self) -> AlarmRecord | None:
        table = self.query_one(DataTable)
        if not self.rows:
            self.show_error("There is no alarm to act on.")
            return None
        return self.rows[min(max(table.cursor_row, 0), len(self.rows) - 1)]

    def action_acknowledge(self) -> None:
        row, session, alarms = self.selected(), self.ctx.session, self.ctx.alarms
        if row is None or session is None or alarms is None:
            return
        self.run_blocking(lambda: alarms.acknowledge(session, row.alarm_id), self._done)

    def action_shelve(self) -> None:
        row, session, alarms = self.selected(), self.ctx.session, self.ctx.alarms
        if row is None or session is None or alarms is None:
            return
        limit = int(alarms.shelve_max.total_seconds() // 60)

        def answered(values: dict[str, str] | None) -> None:
            if values is None:
                return
            try:
                minutes = float(values["minutes"])
            except ValueError:
                self.show_error("The duration is a number of minutes.")
                return
            self.run_blocking(
                lambda: alarms.shelve(
                    session, row.alarm_id, timedelta(minutes=minutes), values["reason"]
                ),
                self._done,
            )

        self.app.push_screen(
            FormDialog(
                f"Shelve {row.code}",
                [
                    Field("minutes", f"Minutes (at most {limit})", value="30"),
                    Field("reason", "Reason"),
                ],
            ),
            answered,
        )

    def _done(self, _record: AlarmRecord) -> None:
        self.post_message(AlarmsTouched())
        self.reload()

    def action_toggle_history(self) -> None:
        self.history = not self.history
        self.reload()
