"""The navigation menu (F1): every main screen, dimmed when the role may not open it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class MenuEntry:
    key: str
    label: str
    enabled: bool


class MenuDialog(ModalScreen[str | None]):
    """Pick a screen with the arrows and Enter, or its number."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close"),
        *[Binding(str(n), f"pick({n})", show=False, id=f"pick-{n}") for n in range(1, 10)],
    ]

    def __init__(self, entries: Sequence[MenuEntry]) -> None:
        super().__init__()
        self.entries = list(entries)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="menu"):
            yield Label("Go to", classes="form-title")
            yield OptionList(
                *[
                    Option(f"{n}  {e.label}", id=e.key, disabled=not e.enabled)
                    for n, e in enumerate(self.entries, start=1)
                ],
                id="menu-options",
            )

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_pick(self, number: int) -> None:
        if 1 <= number <= len(self.entries) and self.entries[number - 1].enabled:
            self.dismiss(self.entries[number - 1].key)

    def action_close(self) -> None:
        self.dismiss(None)
