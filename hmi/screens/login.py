"""Login: user ID, password and (for roles that need it) the authenticator code."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from hmi.auth.errors import AuthenticationFailed, FailureReason, PasswordChangeRequired
from hmi.auth.sessions import Session
from hmi.screens.base import HmiScreen
from hmi.screens.context import HmiContext
from hmi.screens.keys import CREDENTIAL_TABS
from hmi.screens.messages import LoggedIn
from hmi.screens.modals.demo_codes import demo_lines
from hmi.screens.modals.password_change import PasswordChangeDialog
from hmi.widgets.demo_banner import DemoBanner


class LoginScreen(HmiScreen):
    """Nothing but this screen is reachable before authentication (21 CFR 11.10(d))."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CREDENTIAL_TABS,
        Binding("f2", "login", "Log in", id="login", tooltip="Log in with these credentials"),
    ]

    def __init__(self, ctx: HmiContext) -> None:
        super().__init__(ctx)
        self.busy = False
        #: set once the credentials were accepted: the home screen replaces this one next
        self.accepted = False

    def compose_body(self) -> ComposeResult:
        if self.ctx.demo:
            yield DemoBanner(id="demo-banner")
        with Vertical(id="login-box", classes="form-box"):
            yield Label("Log in", classes="form-title")
            with Horizontal(classes="field-row"):
                yield Label("User ID", classes="field-label")
                yield Input(compact=True, placeholder="e.g. operator", id="user-id")
            with Horizontal(classes="field-row"):
                yield Label("Password", classes="field-label")
                yield Input(compact=True, password=True, id="password")
            with Horizontal(classes="field-row"):
                yield Label("Code (TOTP)", classes="field-label")
                yield Input(
                    compact=True,
                    placeholder="6 digits: supervisor, maintenance, QA, admin",
                    id="totp",
                    max_length=8,
                )
            yield Button(compact=True, label="Log in (F2)", id="login-button", variant="primary")
            yield Static("", id="login-message", classes="message")

    def on_mount(self) -> None:
        self.query_one("#user-id", Input).focus()
        if self.ctx.demo:
            self.refresh_demo()
            self.set_interval(1.0, self.refresh_demo)

    def refresh_demo(self) -> None:
        self.query_one(DemoBanner).show(demo_lines(self.ctx), self.ctx.preparing)

    def say(self, text: str, *, error: bool = True) -> None:
        message = self.query_one("#login-message", Static)
        message.set_class(error, "error")
        message.update(text)

    @on(Input.Submitted, "#user-id")
    def _next_field(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password, #totp")
    @on(Button.Pressed, "#login-button")
    def action_login(self) -> None:
        if self.busy:
            return
        if self.ctx.preparing:
            self.say("The demo accounts are being prepared; try again in a moment.")
            return
        user_id = self.query_one("#user-id", Input).value.strip()
        password = self.query_one("#password", Input).value
        totp = self.query_one("#totp", Input).value.strip() or None
        if not user_id:
            self.say("Enter your user ID.")
            self.query_one("#user-id", Input).focus()
            return
        if not password:
            self.say("Enter your password.")
            self.query_one("#password", Input).focus()
            return
        self.busy = True
        self.say("Checking...", error=False)
        sessions = self.ctx.auth.sessions
        self.run_blocking(
            lambda: sessions.login(user_id, password, totp), self._logged_in, self._failed
        )

    def _logged_in(self, session: Session) -> None:
        self.busy = False
        self.accepted = True
        self.post_message(LoggedIn(session))

    def _failed(self, message: str, exc: BaseException) -> None:
        self.busy = False
        password = self.query_one("#password", Input)
        totp = self.query_one("#totp", Input)
        if isinstance(exc, PasswordChangeRequired):
            self.say(message, error=False)
            self.app.push_screen(PasswordChangeDialog(self.ctx, exc.token, message), self._changed)
            return
        if isinstance(exc, AuthenticationFailed):
            if exc.reason is FailureReason.TOTP_REQUIRED:
                self.say(message)
                totp.focus()
                return
            if exc.locked_now:
                message = (
                    f"{message} The account is now locked after repeated failed attempts; "
                    "ask an administrator to unlock it."
                )
        password.value = ""
        totp.value = ""
        self.say(message)
        if isinstance(exc, AuthenticationFailed):
            # What was typed as the user ID may be a password typed into the wrong field: it
            # is never left on a shared screen. The kiosk does not say whether the ID exists.
            user_id = self.query_one("#user-id", Input)
            user_id.value = ""
            user_id.focus()
            return
        password.focus()

    def _changed(self, session: Session | None) -> None:
        self.query_one("#password", Input).value = ""
        self.query_one("#totp", Input).value = ""
        if session is None:
            self.say("The password was not changed; you are not logged in.")
            return
        self.post_message(LoggedIn(session))
