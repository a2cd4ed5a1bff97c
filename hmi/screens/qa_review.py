"""QA review: completed batches, their deviations to disposition, the signed audit trail
review, and release or reject with an e-signature."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hmi.auth.roles import Meaning
from hmi.batch.model import BatchInfo, BatchStatus, DeviationInfo
from hmi.screens.base import HmiScreen
from hmi.screens.errors import describe_error
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import Field, FormDialog


class QaReviewScreen(HmiScreen):
    """Review by exception: deviations first, then the audit trail review, then the decision."""

    REQUIRES = "batch.review"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "disposition", "Disposition", id="disposition"),
        Binding("f3", "review", "Trail reviewed", id="review"),
        Binding("f4", "release", "Release", id="release"),
        Binding("f5", "reject", "Reject", id="reject"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_shown: list[BatchInfo] = []
        self.deviations: list[DeviationInfo] = []

    def compose_body(self) -> ComposeResult:
        yield Static("Batches awaiting review", classes="form-title")
        yield DataTable(id="qa-batches", cursor_type="row")
        yield Static("", id="qa-deviations")
        yield Static("", id="qa-message", classes="message")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("Batch", "Recipe", "Status", "Completed", "Reviewed")
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        needed = {
            "disposition": "deviation.disposition",
            "review": "batch.review",
            "release": "batch.release",
            "reject": "batch.reject",
        }.get(action)
        return True if needed is None else self.ctx.may(needed)

    def reload(self) -> None:
        batches = self.ctx.batches
        if batches is None:
            return

        def load() -> list[BatchInfo]:
            return [
                b
                for b in batches.list_batches()
                if b.status in (BatchStatus.AWAITING_REVIEW, BatchStatus.ABORTED)
            ]

        self.run_blocking(load, self._show)

    def _show(self, rows: list[BatchInfo]) -> None:
        self.batches_shown = rows
        table = self.query_one(DataTable)
        table.clear()
        for b in rows:
            table.add_row(
                b.batch_id,
                f"{b.recipe_id} v{b.recipe_version}",
                b.status.label,
                "yes" if b.completed_at else "-",
                b.reviewed_by or "-",
                key=b.batch_id,
            )
        if rows:
            self._load_deviations(rows[0])
        else:
            self.query_one("#qa-deviations", Static).update("Nothing waits for review.")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if 0 <= event.cursor_row < len(self.batches_shown):
            self._load_deviations(self.batches_shown[event.cursor_row])

    def _load_deviations(self, info: BatchInfo) -> None:
        batches = self.ctx.batches
        if batches is None:
            return
        self.run_blocking(lambda: batches.deviations(info.batch_id), self._show_deviations)

    def _show_deviations(self, deviations: list[DeviationInfo]) -> None:
        self.deviations = deviations
        if not deviations:
            self.query_one("#qa-deviations", Static).update("No deviations.")
            return
        lines = [f"Deviations ({len(deviations)}):"]
        for d in deviations:
            lines.append(
                f" {d.deviation_id} {d.kind.label}: {d.description[:50]} - "
                f"reason {d.reason_code or '-'}; {d.status.value}; "
                f"disposition {d.disposition or 'PENDING'}"
            )
        self.query_one("#qa-deviations", Static).update("\n".join(lines))

    def selected(self) -> BatchInfo | None:
        if not self.batches_shown:
            self.show_error("No batch waits for review.")
            return None
        row = self.query_one(DataTable).cursor_row
        return self.batches_shown[min(max(row, 0), len(self.batches_shown) - 1)]

    def say(self, text: str) -> None:
        self.query_one("#qa-message", Static).update(text)

    def action_disposition(self) -> None:
        pending = [d for d in self.deviations if d.disposition is None]
        session, batches = self.ctx.session, self.ctx.batches
        if not pending or session is None or batches is None:
            self.show_error("No deviation waits for a disposition.")
            return
        target = pending[0]

        def answered(values: dict[str, str] | None) -> None:
            if values is None:
                return
            self.run_blocking(
                lambda: batches.qa_disposition(
                    session, target.deviation_id, values["decision"], values["comment"]
                ),
                lambda _r: self.reload(),
            )

        self.app.push_screen(
            FormDialog(
                f"Disposition of {target.deviation_id}",
                [
                    Field("decision", "accepted or rejected", value="accepted"),
                    Field("comment", "Comment"),
                ],
                note=f"{target.kind.label}: {target.description}",
            ),
            answered,
        )

    def action_review(self) -> None:
        self._sign("review")

    def action_release(self) -> None:
        self._sign("release")

    def action_reject(self) -> None:
        info = self.selected()
        if info is None:
            return

        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self._sign("reject", values["reason"])

        self.app.push_screen(
            FormDialog(f"Reject batch {info.batch_id}", [Field("reason", "Reason")]), answered
        )

    @work(group="qa", exclusive=True, exit_on_error=False)
    async def _sign(self, what: str, reason: str = "") -> None:
        info, session, batches = self.selected(), self.ctx.session, self.ctx.batches
        if info is None or session is None or batches is None:
            return
        meaning = {
            "review": Meaning.AUDIT_TRAIL_REVIEWED,
            "release": Meaning.RELEASED,
            "reject": Meaning.REJECTED,
        }[what]
        ref = batches.batch_record_ref(info.batch_id)
        signature = await self.app.push_screen_wait(
            ESignatureDialog(self.ctx, ref, meaning, f"Batch {info.batch_id} - {info.recipe_name}")
        )
        if signature is None:
            self.say("Not signed.")
            return
        try:
            if what == "review":
                batches.review_audit_trail(session, info.batch_id, signature)
            elif what == "release":
                batches.release(session, info.batch_id, signature)
            else:
                batches.reject(session, info.batch_id, signature, reason)
            self.say(f"Batch {info.batch_id}: {meaning.label.lower()}.")
        except Exception as exc:
            self.say(describe_error(exc))
        self.reload()
