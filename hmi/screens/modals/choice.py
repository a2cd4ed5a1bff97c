"""Pick one item from a short list (a parameter, an entered value) with the arrows and Enter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class Choice:
    key: str
    label: str


class ChoiceDialog(ModalScreen[str | None]):
    """Returns the key of the chosen item, or None when cancelled."""

    DEFAULT_CSS = """
    ChoiceDialog #choice-options {
        height: auto;
        max-height: 16;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
    ]

    def __init__(self, title: str, choices: Sequence[Choice], *, note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.choices = list(choices)
        self.note = note

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="choice"):
            yield Label(self.title_text, classes="form-title")
            if self.note:
                yield Static(self.note, id="choice-note")
            yield OptionList(
                *[Option(c.label, id=c.key) for c in self.choices], id="choice-options"
            )
            yield Static("Arrows and Enter to choose, Esc to cancel.", classes="muted")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
