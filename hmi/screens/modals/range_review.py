"""The range review dialog: the reviewer enters a time range of the audit trail (local time
with its UTC offset), the kind of review and the findings; the review service checks the
range (order, not in the future, not reviewed twice, not empty) before anyone signs. And the
whole review as a screen offers it (:class:`RangeReviewFlow`): QA's review screen and the
audit trail screen, where a supervisor signs the review of a shift."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from hmi.auth.signatures import Signature
from hmi.ebr.review import (
    AuditReviews,
    RangeInvalid,
    RangeScope,
    UnreviewedReport,
    local_text,
    parse_review_time,
)
from hmi.screens.base import HmiModal, HmiScreen
from hmi.screens.context import HmiContext
from hmi.screens.errors import describe_error
from hmi.screens.modals.esignature import ESignatureDialog

KIND_CHOICES = {
    "periodic": "Periodic review (QA): audit trail reviewed",
    "shift": "Shift review (supervisor or QA): reviewed",
}


@dataclass(frozen=True)
class RangeReviewRequest:
    """What the reviewer is about to sign: the checked range, the kind, the findings."""

    scope: RangeScope
    kind: str
    comment: str


class RangeReviewDialog(HmiModal[RangeReviewRequest | None]):
    """Enter and check a range to review; None when cancelled (nothing is signed here)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("f2", "submit", "Check range", id="submit"),
    ]

    def __init__(
        self,
        ctx: HmiContext,
        reviews: AuditReviews,
        *,
        ts_from: str,
        ts_to: str,
        kinds: tuple[str, ...],
        note: str = "",
    ) -> None:
        super().__init__(ctx)
        self.reviews = reviews
        self.initial = (ts_from, ts_to)
        self.kinds = kinds
        self.note = note

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide", id="range-review"):
            yield Label("Review a time range of the audit trail", classes="form-title")
            yield Static(
                "Local time with its UTC offset, e.g. 2026-03-02 06:00:00 +01:00 (the offset"
                " may be left out). From is included, To is not: consecutive shifts"
                " (06:00-14:00, 14:00-22:00) meet exactly.",
                classes="muted",
            )
            if self.note:
                yield Static(self.note, id="range-note")
            with Horizontal(classes="field-row"):
                yield Label("From", classes="field-label")
                yield Input(compact=True, value=self.initial[0], id="range-from")
            with Horizontal(classes="field-row"):
                yield Label("To", classes="field-label")
                yield Input(compact=True, value=self.initial[1], id="range-to")
            with Horizontal(classes="field-row"):
                yield Label("Kind", classes="field-label")
                yield Select(
                    [(KIND_CHOICES[k], k) for k in self.kinds],
                    value=self.kinds[0],
                    allow_blank=False,
                    compact=True,
                    id="range-kind",
                )
            with Horizontal(classes="field-row"):
                yield Label("Findings", classes="field-label")
                yield Input(
                    compact=True, placeholder="what you found, or: none", id="range-comment"
                )
            yield Static("", id="range-message", classes="message error")
            with Horizontal(classes="buttons"):
                yield Button(compact=True, label="Check range (F2)", id="submit", variant="primary")
                yield Button(compact=True, label="Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#range-from", Input).focus()

    def _times(self) -> tuple[str, str]:
        tz = self.ctx.tz
        return (
            parse_review_time(self.query_one("#range-from", Input).value, name="From", tz=tz),
            parse_review_time(self.query_one("#range-to", Input).value, name="To", end=True, tz=tz),
        )

    def _say(self, text: str) -> None:
        self.query_one("#range-message", Static).update(text)

    @on(Input.Changed, "#range-from, #range-to")
    def _check_as_typed(self) -> None:
        try:
            self._times()
        except RangeInvalid as exc:
            self._say(describe_error(exc))
        else:
            self._say("")

    @on(Input.Submitted)
    def _next(self, event: Input.Submitted) -> None:
        if event.input.id == "range-comment":
            self.action_submit()
        else:
            self.focus_next()

    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        try:
            ts_from, ts_to = self._times()
        except RangeInvalid as exc:
            self._say(describe_error(exc))
            return
        kind = self.query_one("#range-kind", Select).value
        comment = self.query_one("#range-comment", Input).value.strip()
        if not isinstance(kind, str):
            self._say("Choose the kind of review.")
            return
        if not comment:
            self._say("Write your findings (or: none); they are recorded with the review.")
            self.query_one("#range-comment", Input).focus()
            return
        reviews = self.reviews
        self._say("Checking the range...")
        self.run_blocking(
            lambda: reviews.prepare_range(ts_from, ts_to, kind=kind),
            lambda scope: self.dismiss(RangeReviewRequest(scope, kind, comment)),
            lambda _text, exc: self._say(describe_error(exc)),
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def may_review_ranges(ctx: HmiContext) -> bool:
    """Whether the logged-in user may sign some kind of range review (the key is dimmed, not
    hidden, otherwise; the review service checks the role again when the review is signed)."""
    session = ctx.session
    return (
        session is not None and ctx.may("audit.view") and bool(AuditReviews.kinds_for(session.role))
    )


class RangeReviewFlow:
    """A signed review of a time range, from the key press to the recorded review.

    The range proposed starts where the oldest stretch without a review of the reviewer's
    usual kind starts (periodic for QA, shift for a supervisor) and ends now; the dialog
    checks it, the e-signature signs exactly that range, and the review service records it
    in a thread. The screen hears each outcome as a sentence (``say``) and is told when a
    review was recorded (``recorded``), to show what is still unreviewed.
    """

    def __init__(
        self,
        screen: HmiScreen,
        reviews: AuditReviews,
        *,
        say: Callable[[str], object],
        recorded: Callable[[], object] | None = None,
    ) -> None:
        self.screen = screen
        self.ctx = screen.ctx
        self.reviews = reviews
        self.say = say
        self.recorded = recorded

    def start(self) -> None:
        """Propose a range and open the dialog (or say why the user may not review)."""
        session = self.ctx.session
        if session is None:
            return
        kinds = AuditReviews.kinds_for(session.role)
        if not kinds:
            self.screen.show_error("Your role may not sign a review of the audit trail.")
            return
        reviews = self.reviews
        self.screen.run_blocking(
            lambda: reviews.unreviewed(kinds[0]), lambda report: self._propose(kinds, report)
        )

    def _propose(self, kinds: tuple[str, ...], report: UnreviewedReport) -> None:
        now = self.reviews.now_end()
        start = min((r.ts_from for r in report.ranges), default=now)
        note = (
            f"Starts where the oldest stretch without a {kinds[0]} review starts."
            if report.ranges
            else ""
        )
        self.screen.app.push_screen(
            RangeReviewDialog(
                self.ctx,
                self.reviews,
                ts_from=local_text(start, self.ctx.tz),
                ts_to=local_text(now, self.ctx.tz),
                kinds=kinds,
                note=note,
            ),
            self._checked,
        )

    def _checked(self, request: RangeReviewRequest | None) -> None:
        if request is None:
            return
        meaning, _roles = AuditReviews.kind_of(request.kind)
        description = (
            f"{request.kind.capitalize()} review. {request.scope.describe(self.ctx.tz)}\n"
            f"Findings: {request.comment}"
        )
        self.screen.app.push_screen(
            ESignatureDialog(self.ctx, request.scope.ref, meaning, description),
            lambda signature: self._signed(request, signature),
        )

    def _signed(self, request: RangeReviewRequest, signature: Signature | None) -> None:
        session = self.ctx.session
        if signature is None or session is None:
            self.say("Not signed: no review of the range was recorded.")
            return
        reviews = self.reviews
        self.screen.run_blocking(
            lambda: reviews.sign_range_review(
                session, request.scope, signature, kind=request.kind, comment=request.comment
            ),
            lambda review_id: self._recorded(request, review_id),
            lambda text, _exc: self.say(f"Not recorded: {text}"),
        )

    def _recorded(self, request: RangeReviewRequest, review_id: str) -> None:
        scope, tz = request.scope, self.ctx.tz
        self.say(
            f"{request.kind.capitalize()} review {review_id} signed over {scope.events} events,"
            f" {local_text(scope.ts_from, tz)} to {local_text(scope.ts_to, tz)}."
        )
        if self.recorded is not None:
            self.recorded()
