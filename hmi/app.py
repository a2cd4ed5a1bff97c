"""The HMI application: the composition root of the TUI, global keys, the idle lock and the
single PLC subscription worker.

``make_app`` builds the services from an opened :class:`~hmi.site.Site` and returns the App;
the CLI (``hmi run``, ``hmi demo``) and the tests use the same factory. Nothing here opens a
database, a socket or reads configuration at import time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
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
from hmi.auth.roles import Meaning
from hmi.auth.services import AuthServices
from hmi.auth.sessions import LockCause, Session, SessionState
from hmi.batch.model import DeviationInfo, DeviationStatus
from hmi.plc.gateway import PlcGateway
from hmi.plc.types import ConnectionState, ConnectionStateChanged, PlcAlarmEvent, TagValuesChanged
from hmi.screens.alarms import AlarmsScreen
from hmi.screens.audit_trail import AuditTrailScreen
from hmi.screens.base import HmiScreen, call_in_thread
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.context import DemoAccount, HmiContext
from hmi.screens.errors import describe_error
from hmi.screens.lock import LockScreen
from hmi.screens.login import LoginScreen
from hmi.screens.messages import (
    AlarmsTouched,
    DeviationsRequested,
    LoggedIn,
    NavigateRequested,
    SessionEnded,
    SwitchUserRequested,
    Unlocked,
)
from hmi.screens.modals.confirm import ConfirmDialog
from hmi.screens.modals.cosign import CosignDialog
from hmi.screens.modals.demo_codes import DemoCodesDialog
from hmi.screens.modals.deviation import DeviationDialog, describe_deviation
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.menu import MenuDialog, MenuEntry, MenuKey
from hmi.screens.overview import OverviewScreen
from hmi.screens.qa_review import QaReviewScreen
from hmi.screens.recipes import RecipesScreen
from hmi.screens.security_alerts import SecurityAlertsScreen
from hmi.screens.service_mode import ServiceModeScreen
from hmi.screens.users import UsersScreen
from hmi.services import build_services

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
    "batch": ScreenSpec("Batch execution", ("batch.view",), BatchRunScreen),
    "alarms": ScreenSpec("Alarms", ("batch.view",), AlarmsScreen),
    "qa": ScreenSpec("QA review", ("batch.review",), QaReviewScreen),
    "service": ScreenSpec("Service mode", ("service_mode.enter",), ServiceModeScreen),
    "audit": ScreenSpec("Audit trail", ("audit.view",), AuditTrailScreen),
    "users": ScreenSpec("Users", ("user.manage", "user.review"), UsersScreen),
    "security": ScreenSpec("Security alerts", ("security_alert.view",), SecurityAlertsScreen),
}

RECOVERY_WAIT_S = 10.0
"""How long a restarted terminal waits for the PLC before it recovers the batch in progress
without it (and so holds a running blend from the HMI side)."""

#: Where a user lands after login: the first of these their role may open.
HOME_ORDER = ("overview", "qa", "users", "audit", "recipes")


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
            show=False,
            id="contrast",
            tooltip="Switch the high-contrast theme on or off",
        ),
        Binding(
            "ctrl+o",
            "demo_codes",
            "Demo codes",
            show=False,
            id="demo-codes",
            tooltip="Demo site: the demo accounts and their authenticator codes",
        ),
    ]

    def __init__(
        self,
        ctx: HmiContext,
        *,
        watch_idle: bool = True,
        gateway_factory: Callable[[], PlcGateway] | None = None,
        plc_ready: Callable[[], Awaitable[None]] | None = None,
        prepare: Callable[[], Sequence[DemoAccount]] | None = None,
        recovery_wait_s: float = RECOVERY_WAIT_S,
    ) -> None:
        super().__init__()
        self.recovery_wait_s = recovery_wait_s
        self.prepare = prepare
        self.ctx = ctx
        self.watch_idle = watch_idle
        self.gateway_factory = gateway_factory
        self.plc_ready = plc_ready
        self.quitting = False
        #: Said in the quit question after the logout (a throwaway demo site is deleted).
        self.quit_warning = ""

    # -- start and stop ---------------------------------------------------------------------

    def on_mount(self) -> None:
        self.register_theme(HIGH_CONTRAST)
        self.theme = DEFAULT_THEME
        if self.prepare is not None:
            self.ctx.preparing = "Preparing the demo accounts and recipes..."
            call_in_thread(self.screen, self.prepare, self._prepared, self._prepare_failed)
        self.push_screen(LoginScreen(self.ctx))
        if self.ctx.gateway is not None or self.gateway_factory is not None:
            self.ctx.plc_state = ConnectionState.CONNECTING
            # after the login screen is painted (loading asyncua competes with the first
            # paint); recovers the batch in progress once the PLC is attached
            self.call_after_refresh(self.consume_plc)
        else:
            self.recover_batch()
        if self.watch_idle:
            self.set_interval(1.0, self.check_idle_lock)
        if self.ctx.batches is not None:
            self.ctx.batches.on_deviation(self._deviation_opened)
        self.refresh_status()
        self.set_interval(2.0, self.refresh_status)

    def _prepared(self, accounts: Sequence[DemoAccount]) -> None:
        self.ctx.demo_accounts = tuple(accounts)
        self.ctx.preparing = ""
        screen = self.screen
        if isinstance(screen, LoginScreen):
            screen.refresh_demo()

    def _prepare_failed(self, message: str, _exc: BaseException) -> None:
        self.ctx.preparing = f"The demo could not be prepared: {message}"

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
            self.recover_batch()
            return
        gateway = self.ctx.gateway
        assert gateway is not None
        if self.ctx.batches is not None:
            # created after the first paint: the engine (and its PLC link) learn of it now
            self.ctx.batches.plc = gateway
        if self.ctx.maintenance is not None:
            self.ctx.maintenance.plc = gateway
        if self.ctx.batches is not None:
            self.run_worker(self.ctx.batches.monitor(), group="monitor", exit_on_error=False)
        stream = gateway.events()
        connect = asyncio.create_task(self._connect())
        self.recover_batch()
        try:
            async for event in stream:
                if isinstance(event, TagValuesChanged):
                    self.ctx.apply_values(dict(event.updates))
                    self._repaint_values()
                elif isinstance(event, PlcAlarmEvent):
                    self.ctx.apply_alarm(event)
                    await self._record_alarm(event)
                elif isinstance(event, ConnectionStateChanged):
                    self.ctx.plc_state = event.state
                    self.ctx.plc_reason = event.reason
                    await self._record_alarm(event)
        finally:
            stream.close()
            connect.cancel()

    @work(group="recovery", exclusive=True, exit_on_error=False)
    async def recover_batch(self) -> None:
        """After a restart: the engine reconciles the batch in progress with the PLC (or holds
        it when the PLC does not connect in time) and records the restart; the screens follow."""
        batches = self.ctx.batches
        if batches is None:
            return
        try:
            info = await batches.recover_at_start(self.recovery_wait_s)
        except Exception as exc:
            log.exception("batch recovery failed")
            self.notify(describe_error(exc), severity="error", timeout=15)
            return
        if info is None:
            return
        step = min(info.current_step + 1, info.step_count)
        held = f" - HELD: {info.hold_reason}" if info.status.value == "held" else ""
        self.notify(
            f"Batch {info.batch_id} recovered after a restart at step {step}/{info.step_count}"
            + held,
            severity="warning" if held else "information",
            timeout=15,
        )
        self.refresh_status()
        if isinstance(self.screen, BatchRunScreen):
            self.screen.reload()

    async def _record_alarm(self, event: PlcAlarmEvent | ConnectionStateChanged) -> None:
        """The alarm service records the transition (off the UI loop, in order)."""
        alarms = self.ctx.alarms
        if alarms is not None:
            try:
                await asyncio.to_thread(alarms.handle, event)
            except Exception as exc:
                self.notify(describe_error(exc), severity="error")
        self.refresh_status()

    def refresh_status(self) -> None:
        """Unacknowledged alarms and the batch in progress, for the header (in a thread)."""
        alarms, batches = self.ctx.alarms, self.ctx.batches

        def load() -> tuple[int, str, str]:
            count, newest = 0, ""
            if alarms is not None:
                alarms.expire_shelving()
                waiting = [a for a in alarms.active() if not a.acknowledged]
                count = len(waiting)
                newest = f"{waiting[0].code} {waiting[0].message}" if waiting else ""
            label = "no batch"
            if batches is not None:
                info = batches.active_batch()
                if info is not None:
                    label = (
                        f"{info.batch_id} step {min(info.current_step + 1, info.step_count)}"
                        f"/{info.step_count}" + (" HELD" if info.status.value == "held" else "")
                    )
            return count, newest, label

        if alarms is None and batches is None:
            return
        call_in_thread(self.screen, load, self._status, lambda _t, _e: None)

    def _status(self, status: tuple[int, str, str]) -> None:
        changed = status != (
            self.ctx.unacknowledged,
            self.ctx.newest_alarm,
            self.ctx.batch_label,
        )
        alarms_changed = status[:2] != (self.ctx.unacknowledged, self.ctx.newest_alarm)
        self.ctx.unacknowledged, self.ctx.newest_alarm, self.ctx.batch_label = status
        if changed:
            self._refresh_header()
            screen = self.screen
            if isinstance(screen, HmiScreen):
                if alarms_changed:
                    screen.on_alarms_changed()
                screen.on_batch_changed()

    @on(AlarmsTouched)
    def _alarms_touched(self) -> None:
        self.refresh_status()

    # -- deviations -------------------------------------------------------------------------

    def _deviation_opened(self, info: DeviationInfo) -> None:
        if threading.current_thread() is threading.main_thread():
            self.call_later(self.handle_deviations, info.batch_id)
        else:
            self.call_from_thread(self.handle_deviations, info.batch_id)

    @on(DeviationsRequested)
    def _deviations_requested(self) -> None:
        self.handle_deviations(None)

    @work(group="deviations", exclusive=True, exit_on_error=False)
    async def handle_deviations(self, batch_id: str | None) -> None:
        """Every open deviation of the batch: the reason, then the two-person rule if needed.

        The dialogs cannot be dismissed without a reason except by cancelling the action
        (recorded); the deviation then stays open and blocks the batch.
        """
        batches = self.ctx.batches
        session = self.ctx.session
        if batches is None or session is None or not self.ctx.may("deviation.reason"):
            return

        def load() -> list[DeviationInfo]:
            bid = batch_id
            if bid is None:
                active = batches.active_batch()
                if active is None:
                    listed = batches.list_batches()
                    active = listed[0] if listed else None
                bid = active.batch_id if active is not None else None
            return [d for d in batches.deviations(bid) if d.blocking] if bid else []

        for deviation in await asyncio.to_thread(load):
            if not await self._settle_deviation(deviation):
                break
        self.refresh_status()
        if isinstance(self.screen, BatchRunScreen):
            self.screen.reload()

    async def _settle_deviation(self, deviation: DeviationInfo) -> bool:
        batches, session = self.ctx.batches, self.ctx.session
        assert batches is not None
        if session is None:
            return False
        if deviation.status is DeviationStatus.OPEN:
            result = await self.push_screen_wait(
                DeviationDialog(self.ctx, deviation, batches.settings.reason_codes)
            )
            if result is None:
                self.notify("The deviation stays open; the batch cannot continue.")
                return False
            deviation = result
        if deviation.status is DeviationStatus.AWAITING_COSIGN:
            what = describe_deviation(deviation)
            ref = batches.deviation_record(deviation.deviation_id)
            request = await self.push_screen_wait(
                ESignatureDialog(self.ctx, ref, Meaning.REQUESTED, what)
            )
            if request is None:
                return False
            cosignature = await self.push_screen_wait(
                CosignDialog(self.ctx, request, what, Meaning.COSIGNED, "supervisor")
            )
            if cosignature is None:
                return False
            try:
                await batches.cosign_deviation(
                    session, deviation.deviation_id, request, cosignature
                )
            except Exception as exc:
                self.notify(describe_error(exc), severity="error", timeout=10)
                return False
            self.notify(f"Deviation {deviation.deviation_id} co-signed.")
        return True

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
                async with asyncio.timeout(3):
                    await gateway.disconnect()
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
        if action == "demo_codes":
            return self.ctx.demo and not isinstance(self.screen, DemoCodesDialog)
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

    def menu_keys(self) -> list[MenuKey]:
        """The current screen's keys that its footer does not show (too narrow, or never shown,
        like Ctrl+T): the menu names them, so every action is one visible key away."""
        screen = self.screen
        if not isinstance(screen, HmiScreen):
            return []
        folded = set(screen.keys_not_in_footer())
        keys = []
        for key, active in screen.active_bindings.items():
            binding = active.binding
            if active.node not in (screen, self) or not binding.description:
                continue
            # a hidden key of the HMI's own (it has an id), not Textual's Tab or copy keys
            if key in folded or (not binding.show and binding.id is not None):
                what = active.tooltip or binding.tooltip or binding.description
                keys.append(MenuKey(key, what, active.enabled))
        return keys

    def action_menu(self) -> None:
        self.push_screen(MenuDialog(self.menu_entries(), self.menu_keys()), self._navigate)

    def _navigate(self, picked: MenuEntry | MenuKey | None) -> None:
        if isinstance(picked, MenuEntry):
            self.post_message(NavigateRequested(picked.key))
        elif isinstance(picked, MenuKey):
            # as if pressed on the screen itself: the same checks, the same action
            self.call_after_refresh(self.simulate_key, picked.key)

    @on(NavigateRequested)
    async def _open(self, message: NavigateRequested) -> None:
        spec = SCREENS.get(message.target)
        if spec is None or not self.may_open(spec):
            self.notify("Your role may not open that screen.", severity="warning")
            return
        await self.switch_screen(spec.factory(self.ctx))

    def action_demo_codes(self) -> None:
        self.push_screen(DemoCodesDialog(self.ctx))

    def action_toggle_contrast(self) -> None:
        self.theme = HIGH_CONTRAST.name if self.theme != HIGH_CONTRAST.name else DEFAULT_THEME

    # -- quitting ---------------------------------------------------------------------------

    def action_request_quit(self) -> None:
        if self.quitting:
            return
        self.push_screen(
            ConfirmDialog(
                "Quit",
                f"Close the HMI? You will be logged out. {self.quit_warning}".strip(),
                "Quit",
            ),
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
    prepare: Callable[[], Sequence[DemoAccount]] | None = None,
    demo_accounts: Sequence[DemoAccount] = (),
    tz: tzinfo | None = None,
    argon2: Argon2Parameters | None = None,
    watch_idle: bool = True,
    recovery_wait_s: float = RECOVERY_WAIT_S,
    quit_warning: str = "",
) -> HmiApp:
    """Build the services of an opened site and the App that shows them; ``quit_warning``
    is added to the quit question (a throwaway demo site is deleted on quit)."""
    services = build_services(site, gateway, auth=auth, argon2=argon2)
    ctx = HmiContext(
        site=site,
        alarms=services.alarms,
        batches=services.batches,
        maintenance=services.maintenance,
        auth=services.auth,
        clock=services.clock,
        recipes=services.recipes,
        gateway=gateway,
        demo_accounts=tuple(demo_accounts),
        tz=tz,
    )
    app = HmiApp(
        ctx,
        watch_idle=watch_idle,
        gateway_factory=gateway_factory,
        plc_ready=plc_ready,
        prepare=prepare,
        recovery_wait_s=recovery_wait_s,
    )
    app.quit_warning = quit_warning
    return app


__all__ = ["SCREENS", "HmiApp", "Screen", "make_app"]
