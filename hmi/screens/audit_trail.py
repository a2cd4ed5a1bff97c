"""The audit trail: filter by time, user, action and batch; detail with old/new/reason;
whether the chain verifies (checked in a background thread, never freezing the screen); and a
signed review of a time range of it, where a supervisor reviews a shift's events (QA signs
its periodic reviews here or on the QA review screen)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static

from hmi.audit import binding
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.store import EventFilter, VerifyState, query_events, trusted_keys, verify_database
from hmi.audit.verify import VerifyReport
from hmi.clock import from_utc_text, to_utc_text
from hmi.ebr.review import AuditReviews
from hmi.screens.base import HmiScreen
from hmi.screens.context import format_local
from hmi.screens.modals.range_review import RangeReviewFlow, may_review_ranges

ROW_LIMIT = 300


def parse_local_time(text: str, tz: Any, *, end: bool = False) -> str | None:
    """``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM`` in local time, as stored UTC text."""
    text = text.strip()
    if not text:
        return None
    for pattern in ("%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            moment = datetime.strptime(text, pattern)
        except ValueError:
            continue
        if pattern == "%Y-%m-%d" and end:
            moment = moment.replace(hour=23, minute=59, second=59)
        local = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
        return to_utc_text(local)
    raise ValueError(f"'{text}' is not a date: use YYYY-MM-DD or YYYY-MM-DD HH:MM")


class AuditTrailScreen(HmiScreen):
    """Read-only view of the signed, hash-chained audit trail."""

    REQUIRES = "audit.view"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "search", "Search", id="search", tooltip="Apply the filters"),
        Binding("f3", "verify", "Verify chain", id="verify", tooltip="Check the chain now"),
        Binding(
            "f4",
            "range_review",
            "Review range",
            id="range-review",
            tooltip="Sign a review of a time range of the audit trail (a shift, or periodic)",
        ),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[dict[str, Any]] = []
        self.report: VerifyReport | None = None
        self.verifying = False
        self._reviews: AuditReviews | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="audit-filters", classes="filters"):
            yield Input(compact=True, placeholder="From YYYY-MM-DD", id="f-from")
            yield Input(compact=True, placeholder="To", id="f-to")
            yield Input(compact=True, placeholder="User", id="f-user")
            yield Input(compact=True, placeholder="Action", id="f-action")
            yield Input(compact=True, placeholder="Batch", id="f-batch")
        yield Static("Chain: not checked yet", id="verify-status")
        with Vertical(id="audit-body"):
            yield DataTable(id="audit-table", cursor_type="row", zebra_stripes=True)
            yield Static("", id="audit-detail")
            yield Static("", id="audit-message", classes="message")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Time", "User", "Role", "Action", "Entity", "New value")
        self.query_one("#audit-message").display = False
        self.action_search()
        self.action_verify()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Listed for everyone who may see the trail, dimmed (None) for a role that signs no
        # review (admin, viewer); the review service refuses them anyway.
        if action == "range_review":
            return True if may_review_ranges(self.ctx) else None
        return True

    @on(Input.Submitted)
    def action_search(self) -> None:
        try:
            flt = EventFilter(
                ts_from=parse_local_time(self.query_one("#f-from", Input).value, self.ctx.tz),
                ts_to=parse_local_time(self.query_one("#f-to", Input).value, self.ctx.tz, end=True),
                actor_id=self.query_one("#f-user", Input).value.strip() or None,
                action=self.query_one("#f-action", Input).value.strip() or None,
                entity_type="batch" if self.query_one("#f-batch", Input).value.strip() else None,
                entity_id=self.query_one("#f-batch", Input).value.strip() or None,
                limit=ROW_LIMIT,
            )
        except ValueError as exc:
            self.show_error(str(exc))
            return
        engine = self.ctx.site.engine
        self.run_blocking(lambda: query_events(engine, flt), self._show_rows)

    def _show_rows(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for index, row in enumerate(rows):
            entity = f"{row['entity_type'] or ''} {row['entity_id'] or ''}".strip()
            table.add_row(
                format_local(from_utc_text(row["ts"]), self.ctx.tz),
                row["actor_id"],
                row["actor_role"],
                row["action"],
                entity[:30],
                (row["new_value"] or "")[:30],
                key=str(index),
            )
        self.query_one("#audit-detail", Static).update(
            f"{len(rows)} events"
            + (" (newest shown; narrow the filter)" if len(rows) >= ROW_LIMIT else "")
        )

    @on(DataTable.RowHighlighted)
    def _detail(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is None:
            return
        row = self.rows[int(event.row_key.value)]
        lines = [
            f"#{row['seq']} {row['terminal_id']}  {row['action']}  by {row['actor_id']} "
            f"({row['actor_role']})  UTC {row['ts']}",
        ]
        for name in ("field", "old_value", "new_value", "reason", "meaning"):
            if row[name]:
                lines.append(f"{name.replace('_', ' ')}: {row[name]}")
        details, written = binding.readable(str(row["details"] or "{}"))
        if written:
            lines.append(f"records written: {written}")
        if details != "{}":
            lines.append(f"details: {details}")
        self.query_one("#audit-detail", Static).update("\n".join(lines))

    def action_verify(self) -> None:
        if self.verifying:
            return
        self.verifying = True
        self.query_one("#verify-status", Static).update("Chain: verifying in the background...")
        settings = self.ctx.settings
        engine = self.ctx.site.engine

        def run() -> VerifyReport:
            trusted = trusted_keys([settings.public_key_path])
            trusted_dir = settings.data_dir / "keys" / "trusted"
            if trusted_dir.is_dir():
                trusted.update(trusted_keys([trusted_dir]))
            return verify_database(
                engine,
                trusted=trusted,
                witness=WitnessFile(settings.witness_path),
                state=VerifyState(settings.data_dir / "audit-verify-state.json"),
                incremental=True,
                workers=1,
            )

        self.run_blocking(run, self._verified, self._verify_failed)

    def _verified(self, report: VerifyReport) -> None:
        self.verifying = False
        self.report = report
        status = self.query_one("#verify-status", Static)
        if report.ok:
            status.set_class(False, "error")
            status.update(f"Chain: VERIFIED - {report.rows_checked} rows checked, intact")
        else:
            status.set_class(True, "error")
            first = report.problems[0]
            status.update(
                f"Chain: FAILED - {len(report.problems)} problem(s); first: {first.message}"
            )

    def _verify_failed(self, message: str, _exc: BaseException) -> None:
        self.verifying = False
        status = self.query_one("#verify-status", Static)
        status.set_class(True, "error")
        status.update(f"Chain: could not be checked - {message}")

    # -- signed review of a time range ------------------------------------------------------

    def reviews(self) -> AuditReviews:
        """The audit trail review service of this kiosk (built on first use)."""
        if self._reviews is None:
            self._reviews = AuditReviews.for_site(
                self.ctx.site, self.ctx.auth, batches=self.ctx.batches, tz=self.ctx.tz
            )
        return self._reviews

    def say(self, text: str) -> None:
        message = self.query_one("#audit-message", Static)
        message.update(text)
        message.display = bool(text)

    def action_range_review(self) -> None:
        RangeReviewFlow(self, self.reviews(), say=self.say, recorded=self.action_search).start()
