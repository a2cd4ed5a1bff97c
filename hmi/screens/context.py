"""What every screen is given: the services of this terminal and the live state it shows.

The App builds one :class:`HmiContext` (``hmi.app.make_app``) and hands it to each screen it
creates ("attributes down"). Screens call services through it and read the latest PLC values,
connection state and alarms the App's single subscription worker keeps here; nothing in this
module talks to a database or a socket by itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from hmi.auth.roles import allowed
from hmi.auth.sessions import Session, SessionState
from hmi.clock import Clock
from hmi.config import Settings
from hmi.plc.types import ConnectionState, PlcAlarmEvent, TagUpdate
from hmi.widgets.header_bar import HeaderInfo

if TYPE_CHECKING:
    from hmi.alarms.service import AlarmService
    from hmi.auth.services import AuthServices
    from hmi.batch.engine import BatchEngine
    from hmi.maintenance.service import ServiceModeService
    from hmi.plc.gateway import PlcGateway
    from hmi.recipe.service import RecipeService
    from hmi.site import Site

TREND_POINTS = 60
"""How many recent values a trend keeps (one per coalesced update)."""


@dataclass(frozen=True)
class DemoAccount:
    """A demo account as the DEMO banner shows it (demo sites only)."""

    user_id: str
    role: str
    password: str
    totp_secret: str | None = None


def format_local(moment: datetime, tz: tzinfo | None = None) -> str:
    """Local time with its UTC offset, as every screen shows time."""
    local = moment.astimezone(tz) if tz is not None else moment.astimezone()
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


@dataclass
class HmiContext:
    """The collaborators and live state shared by the screens of one kiosk."""

    site: Site
    auth: AuthServices
    clock: Clock
    recipes: RecipeService | None = None
    gateway: PlcGateway | None = None
    batches: BatchEngine | None = None
    alarms: AlarmService | None = None
    maintenance: ServiceModeService | None = None
    demo_accounts: tuple[DemoAccount, ...] = ()
    tz: tzinfo | None = None
    plc_state: ConnectionState = ConnectionState.DISCONNECTED
    plc_reason: str = ""
    values: dict[str, TagUpdate] = field(default_factory=dict)
    trends: dict[str, deque[float]] = field(default_factory=dict)
    plc_alarms: dict[str, PlcAlarmEvent] = field(default_factory=dict)
    service_mode: bool = False
    idle_warning: str = ""
    unacknowledged: int = 0
    newest_alarm: str = ""
    batch_label: str = "no batch"
    preparing: str = ""

    @property
    def settings(self) -> Settings:
        return self.site.settings

    @property
    def demo(self) -> bool:
        return self.settings.mode == "demo"

    @property
    def session(self) -> Session | None:
        return self.auth.sessions.current

    def may(self, action: str) -> bool:
        """Whether the active user's role may do ``action`` now (for dimming keys only)."""
        session = self.session
        return (
            session is not None
            and session.state is SessionState.ACTIVE
            and allowed(session.role, action)
        )

    def now_text(self) -> str:
        return format_local(self.clock.now(), self.tz)

    def apply_values(self, updates: dict[str, TagUpdate]) -> None:
        """Keep the latest value per tag and a short trend of numeric ones."""
        self.values.update(updates)
        for name, update in updates.items():
            if (
                update.good
                and isinstance(update.value, float | int)
                and not isinstance(update.value, bool)
            ):
                trend = self.trends.get(name)
                if trend is None:
                    trend = self.trends[name] = deque(maxlen=TREND_POINTS)
                trend.append(float(update.value))

    def apply_alarm(self, event: PlcAlarmEvent) -> None:
        if event.active:
            self.plc_alarms[event.code] = event
        else:
            self.plc_alarms.pop(event.code, None)

    def header_info(self) -> HeaderInfo:
        session = self.session
        if session is None or session.state is SessionState.ENDED:
            user = "not logged in"
        elif session.state is SessionState.LOCKED:
            user = "locked"
        else:
            user = f"{session.user_id} ({session.role.value})"
        mode = self.values.get("mode")
        service = self.service_mode or (mode is not None and mode.good and mode.value == "service")
        return HeaderInfo(
            site=self.settings.site.site_name,
            line=self.settings.site.line_name,
            terminal=self.settings.site.terminal_id,
            user=user,
            time=self.now_text(),
            plc=self.plc_state.value,
            plc_ok=self.plc_state is ConnectionState.CONNECTED,
            batch=self.batch_label,
            service_mode=service,
            unacknowledged_alarms=self.unacknowledged if self.alarms else len(self.plc_alarms),
            demo=self.demo,
            idle_warning=self.idle_warning,
        )
