"""The deviation dialog: what deviated (expected vs actual); a reason code and text are
required; it closes only with a reason, or by cancelling, which is recorded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from hmi.batch.model import DeviationInfo, parameter_label
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext


def describe_deviation(info: DeviationInfo) -> str:
    lines = [info.summary]
    if info.parameter:
        unit = f" {info.unit}" if info.unit else ""
        name = parameter_label(info.parameter).capitalize()
        lines.append(
            f"{name}: expected {info.expected or '-'}{unit}, actual {info.actual or '-'}{unit}"
        )
    if info.critical:
        lines.append("CRITICAL: a supervisor must co-sign.")
    elif info.requires_cosign:
        lines.append("A second person must co-sign.")
    return "\n".join(lines)


class DeviationDialog(HmiModal[DeviationInfo | None]):
    """Give the reason for deviation ``info``; the result is the updated deviation, or None
    when the person cancelled (the deviation stays open and blocks the batch)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "submit", "Give reason", id="submit"),
        Binding("escape", "cancel", "Cancel action", id="cancel"),
    ]

    def __init__(
        self, ctx: HmiContext, info: DeviationInfo, reason_codes: Mapping[str, str]
    ) -> None:
        super().__init__(ctx)
        self.info = info
        self.reason_codes = dict(reason_codes)

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="deviation"):
            yield Label(f"Deviation {self.info.deviation_id}", classes="form-title")
            yield Static(describe_deviation(self.info), id="deviation-what")
            yield Select(
                [(f"{code} - {label}", code) for code, label in self.reason_codes.items()],
                prompt="Reason code",
                id="reason-code",
                compact=True,
            )
            yield Input(
                compact=True, placeholder="Reason (what happened and why)", id="reason-text"
            )
            yield Static("", id="deviation-message", classes="message error")
            with Horizontal(classes="buttons"):
                yield Button(compact=True, label="Give reason (F2)", id="submit", variant="primary")
                yield Button(compact=True, label="Cancel action (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#reason-code", Select).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#submit")
    def action_submit(self) -> None:
        code = self.query_one("#reason-code", Select).value
        text = self.query_one("#reason-text", Input).value.strip()
        message = self.query_one("#deviation-message", Static)
        if not isinstance(code, str):
            message.update("Choose a reason code.")
            return
        if not text:
            message.update("Write the reason: what happened and why.")
            return
        session = self.ctx.session
        batches = self.ctx.batches
        if session is None or batches is None:
            self.dismiss(None)
            return
        deviation_id = self.info.deviation_id
        self.run_blocking(
            lambda: batches.give_reason(session, deviation_id, code, text),
            self.dismiss,
            lambda t, _e: message.update(t),
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        session = self.ctx.session
        audit = self.ctx.site.audit
        deviation_id = self.info.deviation_id
        if session is None:
            self.dismiss(None)
            return
        actor = session.actor
        self.run_blocking(
            lambda: audit.record_now(
                "deviation.dialog.cancelled",
                actor,
                entity=("deviation", deviation_id),
                details={"batch_id": self.info.batch_id, "step_id": self.info.step_id},
            ),
            lambda _r: self.dismiss(None),
            lambda t, _e: self.query_one("#deviation-message", Static).update(t),
        )
