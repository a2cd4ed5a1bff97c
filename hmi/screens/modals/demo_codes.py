"""Demo sites only: the demo accounts and their live authenticator codes, from any screen
(Ctrl+O), for the co-signatures and e-signatures a training run asks for."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import Label, Static

from hmi.auth.totp import code_at
from hmi.screens.base import HmiModal
from hmi.screens.context import HmiContext
from hmi.widgets.demo_banner import DemoBanner, DemoLine


def demo_lines(ctx: HmiContext) -> list[DemoLine]:
    """Each demo account with the authenticator code valid now."""
    now = ctx.clock.now()
    return [
        DemoLine(
            a.user_id, a.role, a.password, code_at(a.totp_secret, now) if a.totp_secret else ""
        )
        for a in ctx.demo_accounts
    ]


class DemoCodesDialog(HmiModal[None]):
    """The DEMO banner of the login screen, over the current screen; Esc closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="demo-codes"):
            yield Label("Demo accounts and authenticator codes", classes="form-title")
            yield DemoBanner(id="demo-codes-banner")
            yield Static(
                f"From another terminal: hmi demo codes --data {self.ctx.site.data_dir}\n"
                "Esc to close.",
                id="demo-codes-where",
                classes="muted",
            )

    def on_mount(self) -> None:
        self.refresh_codes()
        self.set_interval(1.0, self.refresh_codes)

    def refresh_codes(self) -> None:
        self.query_one(DemoBanner).show(demo_lines(self.ctx))

    def action_close(self) -> None:
        self.dismiss(None)
