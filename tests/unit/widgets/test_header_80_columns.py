"""At 80 columns the header keeps who is logged in, the time, the PLC link, the alarms and the
warnings whole; only the batch may end in an ellipsis."""

from __future__ import annotations

from rich.console import Console

from hmi.widgets.header_bar import HeaderInfo, render_header


def shown(info: HeaderInfo, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(render_header(info), no_wrap=True, overflow="ellipsis", crop=True)
    return console.export_text().splitlines()


def info(**changes: object) -> HeaderInfo:
    base: dict[str, object] = {
        "site": "Werk Süd",
        "line": "Blending 2",
        "terminal": "KIOSK-01",
        "user": "a.operator (operator)",
        "time": "2026-03-02 07:30:00 +01:00",
        "plc": "connected",
        "plc_ok": True,
        "batch": "B-2026-000123 step 13/20 HELD",
        "service_mode": False,
        "unacknowledged_alarms": 12,
        "demo": True,
    }
    base.update(changes)
    return HeaderInfo(**base)  # type: ignore[arg-type]


def test_alarms_and_plc_are_whole_while_a_long_batch_is_cut() -> None:
    first, second = shown(info())
    assert "User: a.operator (operator)" in first and "DEMO" in first
    assert second.startswith(" 2026-03-02 07:30:00 +01:00  PLC: connected  Alarms: 12 unack")
    assert len(second) <= 80
    assert "Batch: B-2026" in second  # the batch is last, cut if it must be


def test_warnings_come_before_the_batch() -> None:
    _, second = shown(info(plc="LOST", plc_ok=False, idle_warning="Locking in 10 s"))
    assert "PLC: LOST" in second and " Locking in 10 s " in second
    _, second = shown(info(service_mode=True, batch="no batch", unacknowledged_alarms=0))
    assert "Alarms: none   SERVICE MODE " in second


def test_wide_terminal_shows_everything() -> None:
    _, second = shown(info(), width=120)
    assert second.rstrip().endswith("Batch: B-2026-000123 step 13/20 HELD")
