"""The locked kiosk: hides every value; the same user unlocks, or someone else logs in."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from hmi.auth.errors import AuthenticationFailed, FailureReason, SessionNotActive
from hmi.auth.sessions import Session, SessionState
from hmi.screens.base import HmiScreen
from hmi.screens.context import HmiContext
from hmi.screens.keys import CREDENTIAL_TABS
from hmi.screens.messages import SessionEnded, SwitchUserRequested, Unlocked


class LockScreen(HmiScreen):
    """Shown over everything when the session locks (idle or F12)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CREDENTIAL_TABS,
        Binding("f2", "unlock", "Unlock", id="unlock", tooltip="Unlock with your password"),
        Binding(
            "f3", "switch_user", "Switch user", id="switch-user", tooltip="Log in as someone else"
        ),
    ]

    def __init__(self, ctx: HmiContext, session: Session) -> None:
        super().__init__(ctx)
        self.session = session

    def compose_body(self) -> ComposeResult:
        with Vertical(id="lock-box", classes="form-box"):
            yield Label("Terminal locked", classes="form-title")
            yield Static(
                f"Locked for {self.session.full_name} ({self.session.user_id}). "
                "Enter your password to continue, or switch user (F3)."
            )
            with Horizontal(classes="field-row"):
                yield Label("Password", classes="field-label")
                yield Input(compact=True, password=True, id="unlock-password")
            with Horizontal(classes="buttons"):
                yield Button(
                    compact=True, label="Unlock (F2)", id="unlock-button", variant="primary"
                )
                yield Button(compact=True, label="Switch user (F3)", id="switch-button")
            yield Static("", id="lock-message", classes="message error")

    def on_mount(self) -> None:
        self.query_one("#unlock-password", Input).focus()

    @on(Input.Submitted, "#unlock-password")
    @on(Button.Pressed, "#unlock-button")
    def action_unlock(self) -> None:
        field = self.query_one("#unlock-password", Input)
        password = field.value
        if not password:
            self.query_one("#lock-message", Static).update("Enter your password.")
            return
        sessions = self.ctx.auth.sessions
        self.run_blocking(
            lambda: sessions.unlock(self.session, password), self._unlocked, self._failed
        )

    def _unlocked(self, _session: Session) -> None:
        self.post_message(Unlocked())

    def _failed(self, message: str, exc: BaseException) -> None:
        field = self.query_one("#unlock-password", Input)
        field.value = ""
        field.focus()  # ready for the next try
        if isinstance(exc, AuthenticationFailed) and exc.reason is FailureReason.WRONG_PASSWORD:
            message = "The password is not correct."  # only the password is asked here
        self.query_one("#lock-message", Static).update(message)
        if isinstance(exc, SessionNotActive) or self.session.state is SessionState.ENDED:
            self.post_message(SessionEnded())

    @on(Button.Pressed, "#switch-button")
    def action_switch_user(self) -> None:
        self.post_message(SwitchUserRequested())
