"""E-signature: the meaning, the record being signed, the accountability statement on a
user's first signature, and the manifestation after signing (21 CFR 11.50, 11.100, 11.200).

The signer is the logged-in user, so their user ID is shown filled in and fixed, never as a
field to type in: whether 11.200 asks for both components (the first signing of a continuous
session) or the password only (later signings), the dialog looks the same and the only field
to type the password into is the password field."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from hmi.auth.roles import Meaning
from hmi.auth.signatures import ACCOUNTABILITY_STATEMENT, RecordRef, Signature, manifestation
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext
from hmi.screens.keys import CREDENTIAL_TABS
from hmi.widgets.tick_box import TickBox


class ESignatureDialog(HmiModal[Signature | None]):
    """The logged-in user signs ``record`` with ``meaning``; None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CREDENTIAL_TABS,
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("f2", "sign", "Sign", id="sign"),
    ]

    def __init__(
        self, ctx: HmiContext, record: RecordRef, meaning: Meaning, description: str
    ) -> None:
        super().__init__(ctx)
        self.record = record
        self.meaning = meaning
        self.description = description
        self.signature: Signature | None = None
        session = ctx.session
        self.needed = (
            ctx.auth.signatures.components_needed(session, meaning) if session else ("password",)
        )

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog", id="esign"):
            yield Label(f"Electronic signature: {self.meaning.label}", classes="form-title")
            yield Static(self.description, id="esign-record")
            yield Static(
                f"Record {self.record.type} {self.record.id}  SHA-256 {self.record.sha256[:16]}...",
                classes="muted",
            )
            yield Static(ACCOUNTABILITY_STATEMENT, id="statement", classes="statement")
            yield TickBox("I accept this statement", id="accept")
            session = self.ctx.session
            if session is not None:
                with Horizontal(classes="field-row"):
                    yield Label("User ID", classes="field-label")
                    yield Static(
                        f"{session.user_id} ({session.full_name})",
                        id="sign-signer",
                        classes="field-fixed",
                    )
            with Horizontal(classes="field-row"):
                yield Label("Password", classes="field-label")
                yield Input(compact=True, password=True, id="sign-password")
            if "totp" in self.needed:
                with Horizontal(classes="field-row"):
                    yield Label("Code (TOTP)", classes="field-label")
                    yield Input(compact=True, id="sign-totp", max_length=8)
            yield Static("", id="sign-message", classes="message error")
            with Horizontal(classes="buttons"):
                yield Button(compact=True, label="Sign (F2)", id="sign", variant="primary")
                yield Button(compact=True, label="Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#statement").display = False
        self.query_one("#accept").display = False
        self.query(Input).first().focus()
        session = self.ctx.session
        if session is not None:
            signatures = self.ctx.auth.signatures
            self.run_blocking(
                lambda: signatures.statement_accepted(session.user_id),
                self._statement,
                lambda _t, _e: None,
            )

    def _statement(self, accepted: bool) -> None:
        self.query_one("#statement").display = not accepted
        self.query_one("#accept").display = not accepted
        if not accepted:  # the first signature: the statement comes before the credentials
            self.query_one("#accept", TickBox).focus()

    def _value(self, selector: str) -> str | None:
        found = self.query(selector)
        return found.first(Input).value.strip() if found else None

    @on(Input.Submitted)
    @on(Button.Pressed, "#sign")
    def action_sign(self) -> None:
        if self.signature is not None:
            self.dismiss(self.signature)
            return
        session = self.ctx.session
        if session is None:
            self.dismiss(None)
            return
        accept = self.query_one("#accept", TickBox)
        if accept.display and not accept.value:
            self.query_one("#sign-message", Static).update(
                "Before your first electronic signature, accept the statement above."
            )
            return
        password = self.query_one("#sign-password", Input).value
        # the signer's own ID, shown fixed: given as the ID component where 11.200 asks for it
        user_id = session.user_id if "user_id" in self.needed else None
        totp = self._value("#sign-totp")
        signatures = self.ctx.auth.signatures
        self.run_blocking(
            lambda: signatures.sign(
                session,
                self.record,
                self.meaning,
                password=password,
                user_id=user_id,
                totp=totp,
                accept_statement=bool(accept.value),
            ),
            self._signed,
            self._failed,
        )

    def _signed(self, signature: Signature) -> None:
        self.signature = signature
        message = self.query_one("#sign-message", Static)
        message.set_class(False, "error")
        message.update(
            "Signed: " + manifestation(signature, tz=self.ctx.tz) + "\nF2 or Enter to close."
        )
        for field in self.query(Input):
            field.disabled = True
        self.query_one("#sign", Button).label = "Close (F2)"
        self.query_one("#sign", Button).focus()
        self.query_one("#cancel", Button).display = False  # a signature is not undone

    def _failed(self, text: str, _exc: BaseException) -> None:
        self.query_one("#sign-password", Input).value = ""
        self.query_one("#sign-message", Static).update(text)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(self.signature)
