"""Service mode (maintenance): enter with a reason and a work order; jog, valve, load-cell
calibration check; production is unavailable meanwhile; exit returns the blender to a safe
state. Every step is recorded (intent before the PLC command, result after).

The permission check and the records go through the session and audit services; the PLC's
own mode interlocks (jog and calibration only in service mode) are the equipment's.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from hmi.plc.types import TagValue
from hmi.screens.base import HmiScreen
from hmi.screens.errors import describe_error
from hmi.screens.modals.form import Field, FormDialog


class ServiceModeScreen(HmiScreen):
    """The maintenance technician's screen."""

    REQUIRES = "service_mode.enter"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "enter", "Enter service", id="enter-service"),
        Binding("f3", "jog", "Jog", id="jog"),
        Binding("f4", "open_valve", "Open valve", id="open-valve"),
        Binding("f5", "close_valve", "Close valve", id="close-valve"),
        Binding("f6", "calibration", "Calibration", id="calibration"),
        Binding("f7", "exit_service", "Exit service", id="exit-service"),
    ]
    IN_SERVICE = frozenset({"jog", "open_valve", "close_valve", "calibration", "exit_service"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.work_order = ""

    def compose_body(self) -> ComposeResult:
        yield Static("", id="service-state", classes="form-title")
        yield Static("", id="service-live")
        yield Static("", id="service-message", classes="message")

    def on_mount(self) -> None:
        self._show_state()
        self.on_plc_values()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "enter":
            return self.ctx.may("service_mode.enter") and not self.ctx.service_mode
        if action in self.IN_SERVICE:
            return self.ctx.may("service_mode.enter") and self.ctx.service_mode
        return True

    def _show_state(self) -> None:
        text = (
            f"SERVICE MODE (work order {self.work_order}): production is unavailable"
            if self.ctx.service_mode
            else "Production mode. F2 enters service mode (reason and work order)."
        )
        self.query_one("#service-state", Static).update(text)
        self.refresh_bindings()
        self.refresh_header()

    def on_plc_values(self) -> None:
        values = self.ctx.values

        def show(tag: str) -> str:
            update = values.get(tag)
            return "--" if update is None or not update.good else f"{update.value} {update.unit}"

        self.query_one("#service-live", Static).update(
            f"Mode {show('mode')}  State {show('state')}  Speed {show('speed')}  "
            f"Valve open {show('discharge_valve_open')}  Weight {show('weight')}",
            layout=False,
        )

    def say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#service-message", Static)
        message.set_class(error, "error")
        message.update(text)

    # -- recording and commanding -----------------------------------------------------------

    async def _command(self, what: str, method: str, *args: TagValue) -> tuple[TagValue, ...]:
        """Record the intent, call the PLC, record the result (also when it fails)."""
        session, gateway = self.ctx.session, self.ctx.gateway
        if session is None or gateway is None:
            raise RuntimeError("no PLC connection on this terminal")
        audit = self.ctx.site.audit
        actor = self.ctx.auth.sessions.authorize(
            session, "service_mode.enter", entity=("equipment", "blender")
        )
        details = {
            "command": method,
            "arguments": [str(a) for a in args],
            "work_order": self.work_order,
        }
        audit.record_now("service_mode.command.requested", actor, details=details)
        try:
            result = await gateway.call(method, *args)
        except Exception as exc:
            audit.record_now(
                "service_mode.command.failed", actor, details={**details, "error": str(exc)}
            )
            raise
        audit.record_now(
            "service_mode.command.done",
            actor,
            details={**details, "what": what, "result": [str(r) for r in result]},
        )
        return result

    def action_enter(self) -> None:
        self.app.push_screen(
            FormDialog(
                "Enter service mode",
                [Field("reason", "Reason"), Field("work_order", "Work order number")],
            ),
            self._entered_values,
        )

    def _entered_values(self, values: dict[str, str] | None) -> None:
        if values is not None:
            self._enter(values)

    @work(group="service-mode", exclusive=True, exit_on_error=False)
    async def _enter(self, values: dict[str, str]) -> None:
        session, batches = self.ctx.session, self.ctx.batches
        if session is None:
            return
        try:
            actor = self.ctx.auth.sessions.authorize(
                session, "service_mode.enter", entity=("work_order", values["work_order"])
            )
            if batches is not None and batches.active_batch() is not None:
                self.ctx.site.audit.record_now(
                    "service_mode.refused",
                    actor,
                    reason="a batch is in progress",
                    details={"work_order": values["work_order"]},
                )
                raise ValueError("a batch is in progress: finish or abort it first")
            self.work_order = values["work_order"]
            await self._command("enter", "set_mode", "service")
            self.ctx.site.audit.record_now(
                "service_mode.entered",
                actor,
                entity=("work_order", self.work_order),
                reason=values["reason"],
                field="mode",
                old_value="production",
                new_value="service",
            )
            self.ctx.service_mode = True
            self.say("Service mode entered.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self._show_state()

    def action_jog(self) -> None:
        self.app.push_screen(
            FormDialog("Jog the drum", [Field("speed", "Speed in rpm (0 stops)", value="2")]),
            self._jog_values,
        )

    def _jog_values(self, values: dict[str, str] | None) -> None:
        if values is None:
            return
        try:
            speed = float(values["speed"])
        except ValueError:
            self.say("The jog speed is a number of rpm.", error=True)
            return
        self._run("jog", "jog", speed)

    def action_open_valve(self) -> None:
        self._run("open valve", "discharge")

    def action_close_valve(self) -> None:
        self._run("close valve", "close_valve")

    def action_calibration(self) -> None:
        self._run("load-cell calibration check", "calibration_check")

    @work(group="service-mode", exclusive=True, exit_on_error=False)
    async def _run(self, what: str, method: str, *args: TagValue) -> None:
        try:
            result = await self._command(what, method, *args)
            shown = ", ".join(str(r) for r in result)
            self.say(f"{what.capitalize()}: done{' - ' + shown if shown else ''}.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)

    def action_exit_service(self) -> None:
        self._exit()

    @work(group="service-mode", exclusive=True, exit_on_error=False)
    async def _exit(self) -> None:
        """Back to a safe state: drum stopped, valve closed, production mode."""
        session = self.ctx.session
        if session is None:
            return
        try:
            await self._command("stop jog", "jog", 0.0)
            await self._command("close valve", "close_valve")
            await self._command("exit", "set_mode", "production")
            actor = self.ctx.auth.sessions.authorize(
                session, "service_mode.enter", entity=("work_order", self.work_order)
            )
            self.ctx.site.audit.record_now(
                "service_mode.exited",
                actor,
                entity=("work_order", self.work_order),
                field="mode",
                old_value="service",
                new_value="production",
            )
            self.ctx.service_mode = False
            self.say("Back in production mode; the drum is stopped and the valve closed.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self._show_state()
