"""The HMI application: the composition root of the TUI, global keys, the idle lock and the
single PLC subscription worker.

``make_app`` builds the services from an opened :class:`~hmi.site.Site` and returns the App;
the CLI (``hmi run``, ``hmi demo``) and the tests use the same factory. Nothing here opens a
database, a socket or reads configuration at import time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Any, ClassVar

from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.events import Event, Key, MouseDown
from textual.screen import Screen
from textual.theme import Theme

from hmi.audit.chain import SYSTEM
from hmi.auth.errors import SessionNotActive
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.sessions import LockCause, Session, SessionState
from hmi.plc.gateway import PlcGateway
from hmi.plc.types import ConnectionState, ConnectionStateChanged, PlcAlarmEvent, TagValuesChanged
from hmi.screens.audit_trail import AuditTrailScreen
from hmi.screens.base import HmiScreen, call_in_thread
from hmi.screens.context import DemoAccount, HmiContext
from hmi.screens.lock import LockScreen
from hmi.screens.login import LoginScreen
from hmi.screens.messages import (
    LoggedIn,
    NavigateRequested,
    SessionEnded,
    SwitchUserRequested,
    Unlocked,
)
from hmi.screens.modals.confirm import ConfirmDialog
from hmi.screens.modals.menu import MenuDialog, MenuEntry
from hmi.screens.overview import OverviewScreen
from hmi.screens.recipes import RecipesScreen
from hmi.screens.users import UsersScreen

log = logging.getLogger(__name__)

HIGH_CONTRAST = Theme(
    name="hmi-high-contrast",
    primary="#ffff00",
    secondary="#00ffff",
    accent="#ffffff",
    foreground="#ffffff",
    background="#000000",
    surface="#000000",
    panel="#1a1a1a",
    success="#00ff00",
    warning="#ffaa00",
    error="#ff3030",
    dark=True,
)
DEFAULT_THEME = "textual-dark"


@dataclass(frozen=True)
class ScreenSpec:
    """A main screen: menu label, the permission it needs, how to build it."""

    label: str
    permissions: tuple[str, ...]
    factory: Callable[[HmiContext], HmiScreen]


SCREENS: dict[str, ScreenSpec] = {
    "overview": ScreenSpec("Overview", ("batch.view",), OverviewScreen),
    "recipes": ScreenSpec("Recipes", ("recipe.view",), RecipesScreen),
    "audit": ScreenSpec("Audit trail", ("audit.view",), AuditTrailScreen),
    "users": ScreenSpec("Users", ("user.manage", "user.review"), UsersScreen),
}

#: Where a user lands after login: the first of these their role may open.
HOME_ORDER = ("overview", "users", "audit", "recipes")


class HmiApp(App[None]):
    """One kiosk's terminal: login first, then the screens the user's role may open."""

    CSS_PATH = "hmi.tcss"
    TITLE = "Line HMI"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(
            "ctrl+q",
            "request_quit",
            "Quit",
            id="quit",
            priority=True,
            tooltip="Log out and close the HMI (asks first)",
        ),
        Binding("f1", "menu", "Menu", id="menu", tooltip="Go to another screen"),
        Binding("f12", "lock", "Lock", id="lock", tooltip="Lock the terminal now"),
        Binding(
            "ctrl+t",
            "toggle_contrast",
            "Contrast",
            id="contrast",
            tooltip="Switch the high-contrast theme on or off",
        ),
    ]

    def __init__(
        self,
        ctx: HmiContext,
        *,
        watch_idle: bool = True,
        gateway_factory: Callable[[], PlcGateway] | None = None,
        plc_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.watch_idle = watch_idle
        self.gateway_factory = gateway_factory
        self.plc_ready = plc_ready
        self.quitting = False

    # -- start and stop ---------------------------------------------------------------------

    def on_mount(self) -> None:
        self.register_theme(HIGH_CONTRAST)
        self.theme = DEFAULT_THEME
        self.push_screen(LoginScreen(self.ctx))
        if self.ctx.gateway is not None or self.gateway_factory is not None:
            self.ctx.plc_state = ConnectionState.CONNECTING
            self.consume_plc()
        if self.watch_idle:
            self.set_interval(1.0, self.check_idle_lock)

    @work(group="plc", exit_on_error=False)
    async def consume_plc(self) -> None:
        """The one subscription worker: latest value per tag, every alarm and state change."""
        try:
            if self.plc_ready is not None:
                await self.plc_ready()
            if self.ctx.gateway is None and self.gateway_factory is not None:
                # asyncua is slow to import: off the UI loop, after the first paint
                self.ctx.gateway = await asyncio.to_thread(self.gateway_factory)
        except Exception as exc:
            self._plc_unavailable(str(exc))
            return
        gateway = self.ctx.gateway
        assert gateway is not None
        stream = gateway.events()
        connect = asyncio.create_task(self._connect())
        try:
            async for event in stream:
                if isinstance(event, TagValuesChanged):
                    self.ctx.apply_values(dict(event.updates))
                    self._repaint_values()
                elif isinstance(event, PlcAlarmEvent):
                    self.ctx.apply_alarm(event)
                    self._refresh_header()
                elif isinstance(event, ConnectionStateChanged):
                    self.ctx.plc_state = event.state
                    self.ctx.plc_reason = event.reason
                    self._refresh_header()
        finally:
            stream.close()
            connect.cancel()

    async def _connect(self) -> None:
        gateway = self.ctx.gateway
        assert gateway is not None
        try:
            await gateway.connect(retry=True)
        except Exception as exc:  # security failures cannot be retried: say so on screen
            self._plc_unavailable(str(exc))

    def _plc_unavailable(self, reason: str) -> None:
        log.warning("PLC not available: %s", reason)
        self.ctx.plc_state = ConnectionState.DISCONNECTED
        self.ctx.plc_reason = reason
        self._refresh_header()
        self.notify(f"The PLC cannot be reached: {reason}", severity="error", timeout=15)

    def _repaint_values(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, HmiScreen) and screen.is_current:
                screen.on_plc_values()

    def _refresh_header(self) -> None:
        screen = self.screen
        if isinstance(screen, HmiScreen):
            screen.refresh_header()

    async def on_unmount(self) -> None:
        gateway = self.ctx.gateway
        if gateway is not None:
            try:
                await asyncio.wait_for(gateway.disconnect(), timeout=3)
            except Exception as exc:
                log.warning("PLC disconnect failed: %s", exc)

    # -- activity and the idle lock ---------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        if isinstance(event, Key | MouseDown):
            self.note_activity()
        await super().on_event(event)

    def note_activity(self) -> None:
        session = self.ctx.session
        if session is not None and session.state is SessionState.ACTIVE:
            try:
                self.ctx.auth.sessions.touch(session)
            except SessionNotActive:
                return
            if self.ctx.idle_warning:
                self.ctx.idle_warning = ""
                self._refresh_header()

    def check_idle_lock(self) -> None:
        """Each second: count down before the lock, then lock (the service decides when)."""
        session = self.ctx.session
        if session is None or session.state is not SessionState.ACTIVE:
            return
        sessions = self.ctx.auth.sessions
        left = sessions.seconds_until_idle_lock(session)
        over_limit = self.ctx.clock.now() - session.started_at >= sessions.absolute_limit
        if left <= 0 or over_limit:
            self.ctx.idle_warning = ""
            self._run(lambda: sessions.check_idle(session), self._after_idle_check)
            return
        warning = self.ctx.settings.session.idle_warning_seconds
        text = f"Locking in {int(left + 0.999)} s" if left <= warning else ""
        if text != self.ctx.idle_warning:
            self.ctx.idle_warning = text
            self._refresh_header()

    def _after_idle_check(self, state: SessionState) -> None:
        session = self.ctx.session
        if state is SessionState.LOCKED and session is not None:
            self.show_lock(session)
        elif state is SessionState.ENDED:
            self.notify("The session has ended; log in again.", severity="warning")
            self.call_later(self.reset_to_login)

    def action_lock(self) -> None:
        session = self.ctx.session
        if session is None or session.state is not SessionState.ACTIVE:
            return
        sessions = self.ctx.auth.sessions
        self._run(
            lambda: sessions.lock(session, LockCause.MANUAL), lambda _r: self.show_lock(session)
        )

    def show_lock(self, session: Session) -> None:
        if not isinstance(self.screen, LockScreen):
            self.push_screen(LockScreen(self.ctx, session))

    def _run(self, fn: Callable[[], Any], done: Callable[[Any], None]) -> None:
        call_in_thread(
            self.screen, fn, done, lambda text, _exc: self.notify(text, severity="error")
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "lock":
            session = self.ctx.session
            return session is not None and session.state is SessionState.ACTIVE
        if action == "menu":
            session = self.ctx.session
            return (
                session is not None
                and session.state is SessionState.ACTIVE
                and not isinstance(self.screen, LockScreen | LoginScreen)
            )
        return True

    # -- who is logged in -------------------------------------------------------------------

    @on(LoggedIn)
    async def _logged_in(self, message: LoggedIn) -> None:
        await self.open_home(message.session)

    async def open_home(self, session: Session) -> None:
        target = next((k for k in HOME_ORDER if self.may_open(SCREENS[k])), "overview")
        await self._reset_stack()
        await self.push_screen(SCREENS[target].factory(self.ctx))

    def may_open(self, spec: ScreenSpec) -> bool:
        return any(self.ctx.may(p) for p in spec.permissions)

    async def _reset_stack(self) -> None:
        while len(self.screen_stack) > 1:
            await self.pop_screen()

    async def reset_to_login(self) -> None:
        await self._reset_stack()
        await self.push_screen(LoginScreen(self.ctx))

    @on(Unlocked)
    def _unlocked(self) -> None:
        if isinstance(self.screen, LockScreen):
            self.pop_screen()
        self._refresh_header()

    @on(SwitchUserRequested)
    @on(SessionEnded)
    async def _to_login(self) -> None:
        await self.reset_to_login()

    # -- navigation -------------------------------------------------------------------------

    def menu_entries(self) -> list[MenuEntry]:
        return [MenuEntry(key, spec.label, self.may_open(spec)) for key, spec in SCREENS.items()]

    def action_menu(self) -> None:
        self.push_screen(MenuDialog(self.menu_entries()), self._navigate)

    def _navigate(self, target: str | None) -> None:
        if target is not None:
            self.post_message(NavigateRequested(target))

    @on(NavigateRequested)
    async def _open(self, message: NavigateRequested) -> None:
        spec = SCREENS.get(message.target)
        if spec is None or not self.may_open(spec):
            self.notify("Your role may not open that screen.", severity="warning")
            return
        await self.switch_screen(spec.factory(self.ctx))

    def action_toggle_contrast(self) -> None:
        self.theme = HIGH_CONTRAST.name if self.theme != HIGH_CONTRAST.name else DEFAULT_THEME

    # -- quitting ---------------------------------------------------------------------------

    def action_request_quit(self) -> None:
        if self.quitting:
            return
        self.push_screen(
            ConfirmDialog("Quit", "Close the HMI? You will be logged out.", "Quit"),
            self._quit_answer,
        )

    def _quit_answer(self, yes: bool | None) -> None:
        if not yes:
            return
        self.quitting = True
        self._run(self.shutdown_records, lambda _r: self.exit())

    def shutdown_records(self) -> None:
        """Log the user out and record that the terminal's UI stopped (blocking)."""
        session = self.ctx.session
        if session is not None and session.state is not SessionState.ENDED:
            self.ctx.auth.sessions.logout(session)
        self.ctx.site.audit.record_now("terminal.ui.stopped", SYSTEM, details={"cause": "quit"})


def make_app(
    site: Any,
    *,
    auth: AuthServices | None = None,
    gateway: PlcGateway | None = None,
    gateway_factory: Callable[[], PlcGateway] | None = None,
    plc_ready: Callable[[], Awaitable[None]] | None = None,
    recipes: Any = None,
    demo_accounts: Sequence[DemoAccount] = (),
    tz: tzinfo | None = None,
    argon2: Argon2Parameters | None = None,
    watch_idle: bool = True,
) -> HmiApp:
    """Build the services of an opened site and the App that shows them."""
    from hmi.recipe.service import RecipeService

    auth = auth or build_auth_services(
        site.settings, site.engine, site.audit, site.clock, argon2=argon2
    )
    if recipes is None:
        recipes = RecipeService(
            engine=site.engine,
            audit=site.audit,
            clock=site.clock,
            sessions=auth.sessions,
            signatures=auth.signatures,
        )
    ctx = HmiContext(
        site=site,
        auth=auth,
        clock=site.clock,
        recipes=recipes,
        gateway=gateway,
        demo_accounts=tuple(demo_accounts),
        tz=tz,
    )
    return HmiApp(ctx, watch_idle=watch_idle, gateway_factory=gateway_factory, plc_ready=plc_ready)


__all__ = ["SCREENS", "HmiApp", "Screen", "make_app"]
