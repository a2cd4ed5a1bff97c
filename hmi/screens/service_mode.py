"""Service mode (maintenance): enter with a reason and a work order; jog, valve, load-cell
calibration check; production is unavailable meanwhile; exit returns the blender to a safe
state. Every step is recorded (intent before the PLC command, result after).

The rules (maintenance role with TOTP, no batch in progress, intent and result of every PLC
command recorded) are :class:`~hmi.maintenance.service.ServiceModeService`'s; this screen only
asks for the values and shows the outcome. The PLC's own mode interlocks (jog and calibration
only in service mode) are the equipment's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from hmi.auth.sessions import Session
from hmi.maintenance.service import ServiceModeService
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
        self._sync()
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

    # -- calling the service ----------------------------------------------------------------

    def _service(self) -> tuple[ServiceModeService, Session]:
        service, session = self.ctx.maintenance, self.ctx.session
        if service is None or session is None:
            raise RuntimeError("service mode is not available on this terminal")
        return service, session

    def _sync(self) -> None:
        service = self.ctx.maintenance
        self.ctx.service_mode = service is not None and service.active
        self.work_order = service.work_order if service is not None else ""

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
        try:
            service, session = self._service()
            await service.enter(session, values["reason"], values["work_order"])
            self.say("Service mode entered.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self._sync()
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
        self._run("jog", lambda service, session: service.jog(session, speed))

    def action_open_valve(self) -> None:
        self._run("open valve", lambda service, session: service.open_valve(session))

    def action_close_valve(self) -> None:
        self._run("close valve", lambda service, session: service.close_valve(session))

    def action_calibration(self) -> None:
        self._run(
            "load-cell calibration check",
            lambda service, session: service.calibration_check(session),
        )

    @work(group="service-mode", exclusive=True, exit_on_error=False)
    async def _run(
        self,
        what: str,
        call: Callable[[ServiceModeService, Session], Awaitable[tuple[TagValue, ...]]],
    ) -> None:
        try:
            result = await call(*self._service())
            shown = ", ".join(str(r) for r in result)
            self.say(f"{what.capitalize()}: done{' - ' + shown if shown else ''}.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)

    def action_exit_service(self) -> None:
        self._exit()

    @work(group="service-mode", exclusive=True, exit_on_error=False)
    async def _exit(self) -> None:
        """Back to a safe state: drum stopped, valve closed, production mode."""
        try:
            service, session = self._service()
            await service.exit(session)
            self.say("Back in production mode; the drum is stopped and the valve closed.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self._sync()
        self._show_state()
