"""Co-signature at the same kiosk: what is approved, who asked, and the second person's
ID + password + TOTP; refusals (same person, role) explained."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from hmi.auth.roles import Meaning
from hmi.auth.signatures import ACCOUNTABILITY_STATEMENT, Signature, manifestation
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext
from hmi.screens.keys import CREDENTIAL_TABS
from hmi.widgets.tick_box import TickBox


class CosignDialog(HmiModal[Signature | None]):
    """A second person co-signs ``request``; None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CREDENTIAL_TABS,
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("f2", "cosign", "Co-sign", id="cosign"),
    ]

    def __init__(
        self, ctx: HmiContext, request: Signature, what: str, meaning: Meaning, roles: str
    ) -> None:
        super().__init__(ctx)
        self.request = request
        self.what = what
        self.meaning = meaning
        self.roles = roles

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="cosign"):
            yield Label(
                f"Co-signature ({self.meaning.label}) by a {self.roles}", classes="form-title"
            )
            yield Static(self.what, id="cosign-what")
            yield Static(
                "Requested by " + manifestation(self.request, tz=self.ctx.tz), id="cosign-request"
            )
            with Horizontal(classes="field-row"):
                yield Label("User ID", classes="field-label")
                yield Input(compact=True, id="cosign-user")
            with Horizontal(classes="field-row"):
                yield Label("Password", classes="field-label")
                yield Input(compact=True, password=True, id="cosign-password")
            with Horizontal(classes="field-row"):
                yield Label("Code (TOTP)", classes="field-label")
                yield Input(compact=True, id="cosign-totp", max_length=8)
            yield TickBox(
                "I accept the e-signature statement (first signature only)", id="cosign-accept"
            )
            yield Static(ACCOUNTABILITY_STATEMENT, classes="statement")
            yield Static("", id="cosign-message", classes="message error")
            with Horizontal(classes="buttons"):
                yield Button(compact=True, label="Co-sign (F2)", id="cosign", variant="primary")
                yield Button(compact=True, label="Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cosign-user", Input).focus()

    @on(Input.Submitted)
    @on(Button.Pressed, "#cosign")
    def action_cosign(self) -> None:
        session = self.ctx.session
        if session is None:
            self.dismiss(None)
            return
        user_id = self.query_one("#cosign-user", Input).value.strip()
        password = self.query_one("#cosign-password", Input).value
        totp = self.query_one("#cosign-totp", Input).value.strip() or None
        accept = self.query_one("#cosign-accept", TickBox).value
        signatures = self.ctx.auth.signatures
        self.run_blocking(
            lambda: signatures.cosign(
                session,
                self.request,
                cosigner_id=user_id,
                password=password,
                totp=totp,
                meaning=self.meaning,
                accept_statement=accept,
            ),
            self.dismiss,
            self._failed,
        )

    def _failed(self, text: str, _exc: BaseException) -> None:
        # The typed user ID goes too: it may be a password typed into the wrong field, and is
        # never left on the shared screen.
        for field in ("#cosign-user", "#cosign-password", "#cosign-totp"):
            self.query_one(field, Input).value = ""
        self.query_one("#cosign-message", Static).update(f"Refused: {text}")
        self.query_one("#cosign-user", Input).focus()

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
