"""Security alerts (administrators and supervisors): accounts locked by failed logins and the
like, when and where they were raised, who acknowledged them and how they were resolved."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hmi.auth.alerts import AlertKind, AlertState, SecurityAlert
from hmi.screens.base import HmiScreen
from hmi.screens.context import format_local

DETAILS_WIDTH = 30
"""How much of an alert's details the table shows (the pane below shows all of it)."""


def status_text(alert: SecurityAlert) -> str:
    """Open, or who acknowledged or resolved it (the table's short form)."""
    if alert.state is AlertState.RESOLVED:
        return f"Resolved: {alert.resolved_by or '-'}"
    if alert.state is AlertState.ACKNOWLEDGED:
        return f"Acknowledged: {alert.acknowledged_by or '-'}"
    return "OPEN"


class SecurityAlertsScreen(HmiScreen):
    """Every security alert, newest first; an open one can be acknowledged (F2)."""

    REQUIRES = "security_alert.view"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f2",
            "acknowledge",
            "Acknowledge",
            id="acknowledge-alert",
            tooltip="Record that you have seen the selected open alert",
        ),
        Binding("f3", "reload", "Refresh", id="reload-alerts", tooltip="Read the alerts again"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[SecurityAlert] = []
        self.loading = False

    def compose_body(self) -> ComposeResult:
        yield Static("Security alerts (newest first)", id="alerts-title", classes="form-title")
        yield DataTable(id="alerts-table", cursor_type="row", zebra_stripes=True)
        yield Static("Reading the alerts...", id="alert-detail")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(
            "Raised (local)", "User", "Kind", "Status", "Terminal", "Details"
        )
        self.reload()

    def current(self) -> SecurityAlert | None:
        tables = self.query(DataTable)
        if not self.rows or not tables or tables.first().cursor_row < 0:
            return None
        return self.rows[min(tables.first().cursor_row, len(self.rows) - 1)]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "acknowledge":
            alert = self.current()
            return (
                self.ctx.may("security_alert.acknowledge")
                and alert is not None
                and alert.state is AlertState.OPEN
            )
        return True

    def action_reload(self) -> None:
        self.reload()

    def reload(self) -> None:
        session = self.ctx.session
        if session is None:
            return
        alerts = self.ctx.auth.alerts
        self.loading = True
        self.run_blocking(lambda: alerts.history(session), self._show, self._failed)

    def _failed(self, message: str, exc: BaseException) -> None:
        self.loading = False
        self.query_one("#alert-detail", Static).update(f"The alerts could not be read: {message}")
        self.show_error(message, exc)

    def _show(self, rows: list[SecurityAlert]) -> None:
        self.loading = False
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        tz = self.ctx.tz
        for alert in rows:
            details = alert.message
            if len(details) > DETAILS_WIDTH:
                details = details[: DETAILS_WIDTH - 3] + "..."
            table.add_row(
                format_local(alert.raised_at, tz),
                alert.subject_user_id or "-",
                alert.kind.label,
                status_text(alert),
                alert.terminal_id,
                details,
                key=str(alert.alert_id),
            )
        open_count = sum(1 for a in rows if a.state is AlertState.OPEN)
        if rows:
            self._describe(self.current())
        else:
            self.query_one("#alert-detail", Static).update("No security alerts.")
        self.query_one("#alerts-title", Static).update(
            f"Security alerts (newest first): {len(rows)} shown, {open_count} open"
        )
        self.refresh_bindings()

    def _describe(self, alert: SecurityAlert | None) -> None:
        if alert is None:
            return
        tz = self.ctx.tz
        lines = [
            f"Alert {alert.alert_id}, raised {format_local(alert.raised_at, tz)} "
            f"on {alert.terminal_id}:",
            alert.message,
        ]
        if alert.acknowledged_at is not None:
            lines.append(
                f"Acknowledged by {alert.acknowledged_by} at "
                f"{format_local(alert.acknowledged_at, tz)}"
            )
        elif alert.state is AlertState.OPEN:
            lines.append("Not acknowledged yet (F2 to acknowledge).")
        if alert.kind is AlertKind.ACCOUNT_LOCKED and alert.state is not AlertState.RESOLVED:
            lines.append("Unlock the account on the Users screen (F4) to resolve it.")
        if alert.resolved_at is not None:
            lines.append(
                f"Resolved by {alert.resolved_by} at {format_local(alert.resolved_at, tz)}: "
                f"{alert.resolution or '-'}"
            )
        self.query_one("#alert-detail", Static).update("\n".join(lines))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.rows):
            self._describe(self.rows[event.cursor_row])
        self.refresh_bindings()

    def action_acknowledge(self) -> None:
        alert, session = self.current(), self.ctx.session
        if alert is None or session is None:
            return
        alerts = self.ctx.auth.alerts
        alert_id = alert.alert_id
        self.run_blocking(lambda: alerts.acknowledge(session, alert_id), self._acknowledged)

    def _acknowledged(self, alert: SecurityAlert) -> None:
        self.notify(f"Security alert {alert.alert_id} acknowledged.")
        self.reload()
