"""Service mode (maintenance): enter with a reason and a work order; jog, discharge valve,
load-cell calibration check; exit returns the blender to a safe state.

The rules live here, not in the screen: only a maintenance technician whose login included a
TOTP code may enter; never while a batch is in progress (running or held) on this terminal.
Every PLC command is recorded as intent before the call and as result after it (also when it
fails); refusals are recorded before they are raised.
"""

from __future__ import annotations

from typing import Any, Protocol

from hmi.audit.chain import Actor, AuditLog
from hmi.auth.credentials import COMPONENT_TOTP
from hmi.auth.sessions import Session, SessionService
from hmi.clock import Clock
from hmi.maintenance.errors import MaintenanceError, NotInServiceMode, ServiceModeRefused
from hmi.plc.gateway import PlcGateway
from hmi.plc.types import TagValue


class ProductionView(Protocol):
    """What service mode needs of the batch engine (a :class:`~hmi.batch.engine.BatchEngine`);
    a protocol, because maintenance and batch sit side by side in the layers."""

    def active_batch(self) -> _ActiveBatch | None: ...

    async def equipment_mode(self) -> str | None: ...


class _ActiveBatch(Protocol):
    @property
    def batch_id(self) -> str: ...


PERMISSION = "service_mode.enter"
EQUIPMENT = ("equipment", "blender")


class ServiceModeService:
    """Service mode of this terminal's equipment; ``active`` while it is entered here."""

    def __init__(
        self,
        engine: ProductionView,
        audit: AuditLog,
        clock: Clock,
        sessions: SessionService,
        plc: PlcGateway | None,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.plc = plc
        self.active = False
        self.work_order = ""

    # -- the rules ---------------------------------------------------------------------------

    def _authorize(self, session: Session, entity: tuple[str, str]) -> Actor:
        """Maintenance role (recorded denial otherwise) and a login made with TOTP."""
        actor = self.sessions.authorize(session, PERMISSION, entity=entity)
        if COMPONENT_TOTP not in session.login_components:
            self._refuse(actor, "login without TOTP", {"entity": list(entity)})
            raise ServiceModeRefused(
                "service mode needs a login with the authenticator code; log in again"
            )
        return actor

    def _refuse(self, actor: Actor, reason: str, details: dict[str, Any]) -> None:
        self.audit.record_now(
            "service_mode.refused",
            actor,
            entity=("work_order", str(details.get("work_order") or self.work_order or "-")),
            reason=reason,
            details=details,
        )

    def _in_service(self, session: Session, what: str) -> Actor:
        actor = self._authorize(session, ("work_order", self.work_order or "-"))
        if not self.active:
            self._refuse(actor, "not in service mode", {"command": what})
            raise NotInServiceMode(f"enter service mode before: {what}")
        return actor

    @property
    def gateway(self) -> PlcGateway:
        if self.plc is None:
            raise MaintenanceError("this terminal has no PLC connection")
        return self.plc

    async def _command(
        self, actor: Actor, what: str, method: str, *args: TagValue
    ) -> tuple[TagValue, ...]:
        """Record the intent, call the PLC, record the result (also when it fails)."""
        gateway = self.gateway
        details: dict[str, Any] = {
            "command": method,
            "arguments": [str(a) for a in args],
            "work_order": self.work_order,
            "what": what,
        }
        self.audit.record_now(
            "service_mode.command.requested", actor, entity=EQUIPMENT, details=details
        )
        try:
            result = await gateway.call(method, *args)
        except Exception as exc:
            self.audit.record_now(
                "service_mode.command.failed",
                actor,
                entity=EQUIPMENT,
                details={**details, "error": str(exc)},
            )
            raise
        self.audit.record_now(
            "service_mode.command.done",
            actor,
            entity=EQUIPMENT,
            details={**details, "result": [str(r) for r in result]},
        )
        return result

    # -- actions -----------------------------------------------------------------------------

    async def enter(self, session: Session, reason: str, work_order: str) -> None:
        """Put the equipment in service mode for ``work_order`` (production unavailable)."""
        reason, work_order = " ".join(reason.split()), work_order.strip()
        actor = self._authorize(session, ("work_order", work_order or "-"))
        details = {"work_order": work_order}
        if not reason or not work_order:
            self._refuse(actor, "reason or work order missing", details)
            raise ServiceModeRefused("give a reason and the work order number")
        if self.active:
            self._refuse(actor, "already in service mode", details)
            raise ServiceModeRefused(f"service mode is already entered ({self.work_order})")
        active = self.engine.active_batch()
        if active is not None:
            self._refuse(actor, "a batch is in progress", {**details, "batch": active.batch_id})
            raise ServiceModeRefused(
                f"batch {active.batch_id} is in progress: finish or abort it first"
            )
        self.work_order = work_order
        try:
            await self._command(actor, "enter", "set_mode", "service")
        except Exception:
            self.work_order = ""
            raise
        await self.engine.equipment_mode()  # the engine now knows: no batch starts meanwhile
        self.active = True
        self.audit.record_now(
            "service_mode.entered",
            actor,
            entity=("work_order", work_order),
            reason=reason,
            field="mode",
            old_value="production",
            new_value="service",
        )

    async def jog(self, session: Session, speed: float) -> tuple[TagValue, ...]:
        """Turn the drum at ``speed`` rpm (0 stops); the PLC enforces its jog limit."""
        actor = self._in_service(session, "jog")
        return await self._command(actor, "jog", "jog", float(speed))

    async def open_valve(self, session: Session) -> tuple[TagValue, ...]:
        actor = self._in_service(session, "open valve")
        return await self._command(actor, "open valve", "discharge")

    async def close_valve(self, session: Session) -> tuple[TagValue, ...]:
        actor = self._in_service(session, "close valve")
        return await self._command(actor, "close valve", "close_valve")

    async def calibration_check(self, session: Session) -> tuple[TagValue, ...]:
        actor = self._in_service(session, "load-cell calibration check")
        return await self._command(actor, "load-cell calibration check", "calibration_check")

    async def exit(self, session: Session) -> None:
        """Back to a safe state: drum stopped, valve closed, production mode (each recorded)."""
        actor = self._in_service(session, "exit")
        await self._command(actor, "stop jog", "jog", 0.0)
        await self._command(actor, "close valve", "close_valve")
        await self._command(actor, "exit", "set_mode", "production")
        await self.engine.equipment_mode()
        work_order = self.work_order
        self.active = False
        self.work_order = ""
        self.audit.record_now(
            "service_mode.exited",
            actor,
            entity=("work_order", work_order),
            field="mode",
            old_value="service",
            new_value="production",
        )
