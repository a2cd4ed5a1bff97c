"""QA review: completed batches, their deviations to disposition, the signed audit trail
review, and release or reject with an e-signature; the two true copies of the selected batch
record (the PDF and the electronic bundle, in the site's ``exports/`` folder); and signed
reviews of a time range of the audit trail, with what nobody has reviewed yet."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hmi.auth.roles import Meaning
from hmi.batch.model import FINAL_STATUSES, BatchInfo, BatchStatus, DeviationInfo
from hmi.batch.review import DISPOSITION_MEANINGS
from hmi.ebr.copies import BatchRecordCopies, CopyResult
from hmi.ebr.review import AuditReviews, UnreviewedReport, local_text
from hmi.screens.base import HmiScreen
from hmi.screens.errors import describe_error
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import Field, FormDialog
from hmi.screens.modals.range_review import RangeReviewFlow, may_review_ranges

#: Which batches the list holds: those QA still has to decide, or every finished one (F10).
_SHOWN = {
    False: (BatchStatus.AWAITING_REVIEW, BatchStatus.ABORTED),
    True: (BatchStatus.AWAITING_REVIEW, BatchStatus.ABORTED, *FINAL_STATUSES),
}
_TITLES = {
    False: "Batches awaiting review (F10: all finished batches)",
    True: "All finished batches: awaiting review, aborted, released, rejected (F10: open only)",
}


def _decision_problem(text: str) -> str | None:
    """What the decision field says as it is typed (there is no default: QA decides)."""
    if text.strip().lower() in DISPOSITION_MEANINGS:
        return None
    return "type accepted or rejected"


class QaReviewScreen(HmiScreen):
    """Review by exception: deviations first, then the audit trail review, then the decision."""

    REQUIRES = "batch.review"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "f2",
            "disposition",
            "Disposition",
            id="disposition",
            tooltip="Disposition the selected deviation",
        ),
        Binding("f3", "review", "Trail reviewed", id="review"),
        Binding("f4", "release", "Release", id="release"),
        Binding("f5", "reject", "Reject", id="reject"),
        Binding(
            "f6",
            "next_deviation",
            "Next dev.",
            id="next-deviation",
            tooltip="Select the next deviation of the batch",
        ),
        Binding(
            "f7",
            "print_record",
            "PDF",
            id="print-record",
            tooltip="Print the selected batch record to PDF (from its bundle)",
        ),
        Binding(
            "f8",
            "export_copy",
            "Copy",
            id="export-copy",
            tooltip="Write the electronic true copy of the selected batch record",
        ),
        Binding(
            "f9",
            "range_review",
            "Range rev.",
            id="range-review",
            tooltip="Sign a review of a time range of the audit trail",
        ),
        Binding(
            "f10",
            "toggle_finished",
            "All batches",
            id="toggle-finished",
            tooltip="List every finished batch, or only those waiting for QA",
        ),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_shown: list[BatchInfo] = []
        self.deviations: list[DeviationInfo] = []
        self.copying = ""
        """What copy is being made now (its key is dimmed until it is done)."""
        self.unreviewed: UnreviewedReport | None = None
        self._copies: BatchRecordCopies | None = None
        self.finished_too = False
        """Whether released and rejected batches are listed as well (F10), to print them."""
        self._reviews: AuditReviews | None = None

    def compose_body(self) -> ComposeResult:
        yield Static(_TITLES[False], id="qa-title", classes="form-title")
        yield DataTable(id="qa-batches", cursor_type="row")
        yield Static("", id="qa-deviations")
        yield DataTable(id="qa-deviation-table", cursor_type="row")
        yield Static("", id="qa-unreviewed")
        yield Static("", id="qa-message", classes="message")

    def on_mount(self) -> None:
        self.query_one("#qa-batches", DataTable).add_columns(
            "Batch", "Recipe", "Status", "Completed", "Reviewed"
        )
        self.query_one("#qa-deviation-table", DataTable).add_columns(
            "Deviation", "Kind", "Status", "Disposition", "Reason", "Description"
        )
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The copy and range review keys stay in the footer, dimmed (None) while unusable.
        if action in ("print_record", "export_copy"):
            usable = self.ctx.may("audit.export") and bool(self.batches_shown)
            return True if usable and not self.copying else None
        if action == "range_review":
            return True if may_review_ranges(self.ctx) else None
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

        shown = _SHOWN[self.finished_too]

        def load() -> list[BatchInfo]:
            return [b for b in batches.list_batches() if b.status in shown]

        self.run_blocking(load, self._show)
        reviews = self.reviews()
        self.run_blocking(reviews.unreviewed, self._show_unreviewed)

    def action_toggle_finished(self) -> None:
        self.finished_too = not self.finished_too
        self.query_one("#qa-title", Static).update(_TITLES[self.finished_too])
        self.reload()

    def reviews(self) -> AuditReviews:
        """The audit trail review service of this kiosk (built on first use)."""
        if self._reviews is None:
            self._reviews = AuditReviews.for_site(
                self.ctx.site, self.ctx.auth, batches=self.ctx.batches, tz=self.ctx.tz
            )
        return self._reviews

    def copies(self) -> BatchRecordCopies | None:
        """The batch record copies of this kiosk (built on first use)."""
        if self._copies is None and self.ctx.batches is not None:
            self._copies = BatchRecordCopies.for_site(self.ctx.site, self.ctx.batches)
        return self._copies

    def _show_unreviewed(self, report: UnreviewedReport) -> None:
        self.unreviewed = report
        ranges = report.ranges
        if not ranges:
            text = "Audit trail: every event is covered by a signed review."
        else:
            events = sum(r.events for r in ranges)
            since = local_text(min(r.ts_from for r in ranges), self.ctx.tz)
            stretches = "" if len(ranges) == 1 else f" in {len(ranges)} stretches"
            text = (
                f"Audit trail not yet reviewed: {events} events{stretches} since {since}"
                " (F9 to review a range)."
            )
        self.query_one("#qa-unreviewed", Static).update(text)

    def _show(self, rows: list[BatchInfo]) -> None:
        self.batches_shown = rows
        self.refresh_bindings()
        table = self.query_one("#qa-batches", DataTable)
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
            self._show_deviations([])
            self.query_one("#qa-deviations", Static).update(
                "No finished batch." if self.finished_too else "Nothing waits for review."
            )

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "qa-batches":
            return
        if 0 <= event.cursor_row < len(self.batches_shown):
            self._load_deviations(self.batches_shown[event.cursor_row])

    def _load_deviations(self, info: BatchInfo) -> None:
        batches = self.ctx.batches
        if batches is None:
            return
        # Through the whole record: a record whose rows differ from its audit trail is
        # refused with the sentence that says so, never shown as if it were true.
        self.run_blocking(
            lambda: list(batches.record(info.batch_id).deviations),
            self._show_deviations,
            self._refused_record,
        )

    def _refused_record(self, message: str, _exc: BaseException | None = None) -> None:
        self.deviations = []
        self.query_one("#qa-deviation-table", DataTable).clear()
        self.query_one("#qa-deviations", Static).update(message)
        self.show_error(message)

    def _show_deviations(self, deviations: list[DeviationInfo]) -> None:
        self.deviations = deviations
        table = self.query_one("#qa-deviation-table", DataTable)
        table.clear()
        for d in deviations:
            table.add_row(
                d.deviation_id,
                d.kind.label,
                d.status.value,
                d.disposition or "PENDING",
                d.reason_code or "-",
                d.description[:50],
                key=d.deviation_id,
            )
        pending = sum(1 for d in deviations if d.disposition is None)
        self.query_one("#qa-deviations", Static).update(
            f"Deviations ({len(deviations)}), {pending} awaiting disposition"
            if deviations
            else "No deviations."
        )

    def selected(self) -> BatchInfo | None:
        if not self.batches_shown:
            self.show_error("No batch waits for review.")
            return None
        row = self.query_one("#qa-batches", DataTable).cursor_row
        return self.batches_shown[min(max(row, 0), len(self.batches_shown) - 1)]

    def say(self, text: str) -> None:
        self.query_one("#qa-message", Static).update(text)

    def selected_deviation(self) -> DeviationInfo | None:
        """The deviation under the cursor of the deviation list (None when there is none)."""
        if not self.deviations:
            return None
        row = self.query_one("#qa-deviation-table", DataTable).cursor_row
        return self.deviations[min(max(row, 0), len(self.deviations) - 1)]

    def action_next_deviation(self) -> None:
        table = self.query_one("#qa-deviation-table", DataTable)
        if self.deviations:
            table.move_cursor(row=(table.cursor_row + 1) % len(self.deviations))
            table.focus()

    def action_disposition(self) -> None:
        target = self.selected_deviation()
        session, batches = self.ctx.session, self.ctx.batches
        if target is None or session is None or batches is None:
            self.show_error("No deviation waits for a disposition.")
            return
        if target.disposition is not None:
            self.show_error(
                f"Deviation {target.deviation_id} already has a disposition ({target.disposition})."
            )
            return

        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                self._sign_disposition(
                    target, values["decision"].strip().lower(), values["comment"]
                )

        self.app.push_screen(
            FormDialog(
                f"Disposition of {target.deviation_id}",
                [
                    Field("decision", "accepted or rejected", check=_decision_problem),
                    Field("comment", "Comment"),
                ],
                note=f"{target.kind.label}: {target.description}",
            ),
            answered,
        )

    @work(group="qa", exclusive=True, exit_on_error=False)
    async def _sign_disposition(self, target: DeviationInfo, decision: str, comment: str) -> None:
        """QA signs the decision with the meaning it carries, then it is recorded."""
        session, batches = self.ctx.session, self.ctx.batches
        if session is None or batches is None:
            return
        meaning = DISPOSITION_MEANINGS[decision]
        try:
            ref = await asyncio.to_thread(
                batches.disposition_record, target.deviation_id, decision, comment
            )
        except Exception as exc:
            self.say(describe_error(exc))
            return
        signature = await self.app.push_screen_wait(
            ESignatureDialog(
                self.ctx,
                ref,
                meaning,
                f"Deviation {target.deviation_id} ({target.kind.label}): {decision}",
            )
        )
        if signature is None:
            self.say(f"Deviation {target.deviation_id}: not signed, no disposition recorded.")
            return
        try:
            await asyncio.to_thread(
                batches.qa_disposition, session, target.deviation_id, decision, comment, signature
            )
            self.say(f"Deviation {target.deviation_id}: {decision} ({meaning.label}).")
        except Exception as exc:
            self.say(describe_error(exc))
        self.reload()

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
        # The record hash and the release checks query and verify: off the UI loop.
        try:
            ref = await asyncio.to_thread(batches.batch_record_ref, info.batch_id)
        except Exception as exc:
            self.say(describe_error(exc))
            return
        signature = await self.app.push_screen_wait(
            ESignatureDialog(self.ctx, ref, meaning, f"Batch {info.batch_id} - {info.recipe_name}")
        )
        if signature is None:
            self.say("Not signed.")
            return
        try:
            if what == "review":
                await asyncio.to_thread(
                    batches.review_audit_trail, session, info.batch_id, signature
                )
            elif what == "release":
                await asyncio.to_thread(batches.release, session, info.batch_id, signature)
            else:
                await asyncio.to_thread(batches.reject, session, info.batch_id, signature, reason)
            self.say(f"Batch {info.batch_id}: {meaning.label.lower()}.")
        except Exception as exc:
            self.say(describe_error(exc))
        self.reload()

    # -- true copies of the selected batch record -----------------------------------------

    def action_print_record(self) -> None:
        self._copy("pdf")

    def action_export_copy(self) -> None:
        self._copy("bundle")

    def _copy(self, what: str) -> None:
        info, session, copies = self.selected(), self.ctx.session, self.copies()
        if info is None or session is None or copies is None or self.copying:
            return
        batch_id = info.batch_id
        if what == "pdf":
            self.copying = f"Printing batch record {batch_id} to PDF..."

            def make() -> CopyResult:
                return copies.report_for(session, batch_id)
        else:
            self.copying = f"Writing the true copy of batch record {batch_id}..."

            def make() -> CopyResult:
                return copies.export_for(session, batch_id)

        self.say(self.copying)
        self.refresh_bindings()
        self.run_blocking(make, lambda r: self._copied(batch_id, r), self._copy_failed)

    def _copied(self, batch_id: str, result: CopyResult) -> None:
        self.copying = ""
        self.refresh_bindings()
        if result.pdf is not None:
            self.say(
                f"Batch record {batch_id} printed ({result.pages} pages): {result.pdf}\n"
                f"Printed from the bundle {result.bundle}\nBundle SHA-256: {result.sha256}"
            )
            self.notify(f"Batch record {batch_id} printed to PDF.")
        else:
            self.say(
                f"True copy of batch record {batch_id} written and verified: {result.bundle}\n"
                f"Bundle SHA-256: {result.sha256}"
            )
            self.notify(f"True copy of batch record {batch_id} written.")

    def _copy_failed(self, _text: str, exc: BaseException) -> None:
        self.copying = ""
        self.refresh_bindings()
        message = describe_error(exc)
        self.say(f"No copy was made: {message}")
        self.show_error(message)

    # -- signed review of a time range of the audit trail ----------------------------------

    def action_range_review(self) -> None:
        RangeReviewFlow(self, self.reviews(), say=self.say, recorded=self.reload).start()
