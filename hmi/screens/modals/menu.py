"""The navigation menu (F1): every main screen, dimmed when the role may not open it, and the
keys of the current screen that are not in its footer (named, so they can be pressed directly
next time, or picked here)."""

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

KEY_PREFIX = "key:"


@dataclass(frozen=True)
class MenuEntry:
    key: str
    label: str
    enabled: bool


@dataclass(frozen=True)
class MenuKey:
    """A key of the current screen: ``key`` as bound (``f10``), what it does, and whether the
    user may press it now."""

    key: str
    description: str
    enabled: bool

    @property
    def display(self) -> str:
        """The key as printed on a keyboard: F10, Ctrl+T."""
        return "+".join(p.upper() if len(p) == 1 else p.capitalize() for p in self.key.split("+"))


class MenuDialog(ModalScreen[MenuEntry | MenuKey | None]):
    """Pick a screen with the arrows and Enter, or its number; or a key of this screen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="close"),
        *[Binding(str(n), f"pick({n})", show=False, id=f"pick-{n}") for n in range(1, 10)],
    ]

    def __init__(self, entries: Sequence[MenuEntry], keys: Sequence[MenuKey] = ()) -> None:
        super().__init__()
        self.entries = list(entries)
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        options: list[Option | None] = [
            Option(f"{n}  {e.label}", id=e.key, disabled=not e.enabled)
            for n, e in enumerate(self.entries, start=1)
        ]
        if self.keys:
            options += [None, Option("More keys on this screen:", id="keys", disabled=True)]
            options += [
                Option(
                    f"{k.display:<7}{k.description}",
                    id=f"{KEY_PREFIX}{k.key}",
                    disabled=not k.enabled,
                )
                for k in self.keys
            ]
        with Vertical(classes="dialog", id="menu"):
            yield Label("Go to", classes="form-title")
            yield OptionList(*options, id="menu-options")

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        chosen = event.option.id or ""
        if chosen.startswith(KEY_PREFIX):
            key = chosen.removeprefix(KEY_PREFIX)
            self.dismiss(next(k for k in self.keys if k.key == key))
        else:
            self.dismiss(next(e for e in self.entries if e.key == chosen))

    def action_pick(self, number: int) -> None:
        if 1 <= number <= len(self.entries) and self.entries[number - 1].enabled:
            self.dismiss(self.entries[number - 1])

    def action_close(self) -> None:
        self.dismiss(None)
