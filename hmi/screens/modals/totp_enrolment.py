"""TOTP enrolment: the QR code and key on screen, confirmed by a code from the new device."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from hmi.auth.accounts import UserRecord
from hmi.auth.users import PendingTotp
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext


class TotpEnrolmentDialog(HmiModal[UserRecord | None]):
    """The person scans the code, types the code their device shows; None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("f2", "confirm", "Confirm", id="confirm"),
    ]

    def __init__(self, ctx: HmiContext, pending: PendingTotp) -> None:
        super().__init__(ctx)
        self.pending = pending

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Label(f"Authenticator for {self.pending.user_id}", classes="form-title")
            yield Static("\n".join(self.pending.qr_lines()), id="qr", classes="qr")
            yield Static(f"Key: {self.pending.key_text}", id="totp-key")
            yield Input(
                compact=True, placeholder="Code shown by the device", id="totp-code", max_length=8
            )
            yield Static("", id="totp-message", classes="message error")
            with Horizontal(classes="buttons"):
                # Short: beside the code at 80 columns, both buttons must fit in the text column.
                yield Button(compact=True, label="OK (F2)", id="confirm", variant="primary")
                yield Button(compact=True, label="Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#totp-code", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#confirm")
    def action_confirm(self) -> None:
        code = self.query_one("#totp-code", Input).value.strip()
        session = self.ctx.session
        if session is None:
            self.dismiss(None)
            return
        users = self.ctx.auth.users
        message = self.query_one("#totp-message", Static)
        self.run_blocking(
            lambda: users.confirm_totp_enrolment(session, self.pending.enrolment_id, code),
            self.dismiss,
            lambda text, _exc: message.update(text),
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
