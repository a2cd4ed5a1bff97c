"""The range review dialog: the reviewer enters a time range of the audit trail (local time
with its UTC offset), the kind of review and the findings; the review service checks the
range (order, not in the future, not reviewed twice, not empty) before anyone signs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from hmi.ebr.assemble import EbrError
from hmi.ebr.review import AuditReviews, RangeInvalid, RangeScope, parse_review_time
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext
from hmi.screens.errors import describe_error

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
            self._say(describe_record_error(exc))
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
            self._say(describe_record_error(exc))
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
            lambda _text, exc: self._say(describe_record_error(exc)),
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def describe_record_error(exc: BaseException) -> str:
    """One sentence for a refusal of the batch record or review services (their messages
    are written for people), or the screens' usual sentence for anything else."""
    if isinstance(exc, EbrError):
        text = str(exc).strip()
        text = text[:1].upper() + text[1:]
        return text if text.endswith((".", "!", "?")) else text + "."
    return describe_error(exc)
