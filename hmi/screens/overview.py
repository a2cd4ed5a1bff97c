"""Overview: equipment state (PackML), live values with limits and short trends."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import Static

from hmi.screens.base import HmiScreen
from hmi.widgets.value_tile import Limits, ValueTile

#: tag, label, unit, display limits, digits. Display limits for the equipment at rest; a
#: running batch's recipe limits are shown on the batch screen.
TILES: tuple[tuple[str, str, str, Limits, int], ...] = (
    ("speed", "Speed", "rpm", Limits(warn_high=25.0, alarm_high=30.0), 1),
    ("motor_current", "Motor current", "A", Limits(warn_high=10.0, alarm_high=15.0), 2),
    ("product_temperature", "Temperature", "°C", Limits(warn_high=35.0, alarm_high=40.0), 1),
    ("weight", "Weight", "kg", Limits(warn_high=500.0, alarm_high=550.0), 2),
)

FLAGS: tuple[tuple[str, str, str], ...] = (
    ("lid_closed", "Lid closed", "Lid OPEN"),
    ("discharge_valve_open", "Valve OPEN", "Valve closed"),
    ("estop", "E-STOP PRESSED", "E-stop released"),
    ("weight_stable", "Weight stable", "Weight settling"),
)


class OverviewScreen(HmiScreen):
    """What the blender is doing now."""

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="state-row"):
            yield Static("State: --", id="equipment-state")
            yield Static("", id="equipment-flags")
        with Grid(id="tiles"):
            for tag, label, unit, limits, digits in TILES:
                yield ValueTile(label, unit, limits, digits=digits, id=f"tile-{tag}")

    def on_mount(self) -> None:
        self.on_plc_values()

    def on_plc_values(self) -> None:
        if not self.query("#tile-speed"):
            return  # not composed yet, or being taken down (the app is quitting)
        values = self.ctx.values
        for tag, *_ in TILES:
            update = values.get(tag)
            number = (
                float(update.value)
                if update is not None and update.good and isinstance(update.value, float | int)
                else None
            )
            self.query_one(f"#tile-{tag}", ValueTile).show(number, self.ctx.trends.get(tag))
        state = values.get("state")
        state_text = (
            f"State: {state.value}" if state is not None and state.good else "State: unknown"
        )
        mode = values.get("mode")
        if mode is not None and mode.good:
            state_text += f"   Mode: {mode.value}"
        self.query_one("#equipment-state", Static).update(state_text, layout=False)
        flags = []
        for tag, true_text, false_text in FLAGS:
            flag = values.get(tag)
            if flag is not None and flag.good:
                flags.append(true_text if flag.value else false_text)
        self.query_one("#equipment-flags", Static).update("   ".join(flags), layout=False)
