"""Forced password change at login (temporary or expired password)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from hmi.auth.sessions import Session
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext
from hmi.screens.keys import CREDENTIAL_TABS


class PasswordChangeDialog(HmiModal[Session | None]):
    """Choose a new password; the result is the started session, or None if cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CREDENTIAL_TABS,
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("f2", "change", "Change password", id="change"),
    ]

    def __init__(self, ctx: HmiContext, token: str, why: str) -> None:
        super().__init__(ctx)
        self.token = token
        self.why = why

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Choose a new password", classes="form-title")
            yield Static(self.why)
            yield Input(compact=True, placeholder="New password", password=True, id="new-password")
            yield Input(
                compact=True, placeholder="New password again", password=True, id="repeat-password"
            )
            yield Static("", id="change-message", classes="message error")
            with Horizontal(classes="buttons"):
                yield Button(
                    compact=True, label="Change password (F2)", id="change", variant="primary"
                )
                yield Button(compact=True, label="Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#new-password", Input).focus()

    @on(Input.Submitted, "#new-password")
    def _next(self) -> None:
        self.query_one("#repeat-password", Input).focus()

    @on(Input.Submitted, "#repeat-password")
    @on(Button.Pressed, "#change")
    def action_change(self) -> None:
        new = self.query_one("#new-password", Input).value
        again = self.query_one("#repeat-password", Input).value
        message = self.query_one("#change-message", Static)
        if new != again:
            message.update("The two passwords are not the same.")
            return
        sessions = self.ctx.auth.sessions
        message.update("Checking...")
        self.run_blocking(
            lambda: sessions.complete_password_change(self.token, new),
            self.dismiss,
            lambda text, _exc: message.update(text),
        )

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
