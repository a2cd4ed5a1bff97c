"""The footer of function keys that always fits the terminal: the safety keys (menu, lock,
quit) are always shown; a screen's other keys are shown in the screen's order of importance
while they fit, and the rest are named in the F1 menu, so at 80 columns every action is either
visible or one key away."""

from __future__ import annotations

from collections.abc import Sequence

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

MORE = "+keys"
"""Added to the menu key's description when some keys are only in the menu."""


class FunctionKeyFooter(Footer):
    """A compact footer that folds the least important keys into the F1 menu when too narrow.

    ``always``: keys shown whatever the width (F1, F12, Ctrl+Q). ``first``: binding ids of the
    screen's most used keys, kept before the others; the rest follow in the screen's order.
    Shown keys keep the screen's order, so a key never moves to another place in the footer.
    """

    def __init__(
        self,
        *,
        always: Sequence[str],
        first: Sequence[str] = (),
        menu_key: str = "f1",
        id: str | None = None,
    ) -> None:
        super().__init__(compact=True, show_command_palette=False, id=id)
        self.always = tuple(always)
        self.first = tuple(first)
        self.menu_key = menu_key
        self.folded: tuple[str, ...] = ()
        """Keys the screen offers that do not fit (named in the F1 menu instead)."""
        self._composed_width = 0

    @staticmethod
    def cost(key: FooterKey) -> int:
        """Columns a compact key takes, with the space after it."""
        text = key.key_display + (f" {key.description}" if key.description else "")
        return cell_len(text) + 1

    def _rank(self, key: FooterKey, order: int) -> tuple[int, int]:
        active = self.screen.active_bindings.get(key.key)
        binding_id = active.binding.id if active is not None else None
        if binding_id is not None and binding_id in self.first:
            return 0, self.first.index(binding_id)
        return 1, order

    def compose(self) -> ComposeResult:
        widgets: list[Widget] = list(super().compose())
        keys = [w for w in widgets if isinstance(w, FooterKey)]
        width = self.size.width or self.app.size.width
        self._composed_width = width
        if sum(self.cost(k) for k in keys) <= width:
            self.folded = ()
            yield from widgets
            return
        budget = width - len(MORE)
        budget -= sum(self.cost(k) for k in keys if k.key in self.always)
        others = [k for k in keys if k.key not in self.always]
        shown: set[int] = set()
        for _order, key in sorted(enumerate(others), key=lambda item: self._rank(item[1], item[0])):
            if self.cost(key) <= budget:
                shown.add(id(key))
                budget -= self.cost(key)
        self.folded = tuple(k.key for k in others if id(k) not in shown)
        for widget in widgets:
            if isinstance(widget, FooterKey):
                if widget.key in self.folded:
                    continue
                if widget.key == self.menu_key:
                    widget.description += MORE
                    widget.tooltip = "Go to another screen, or use a key not shown here"
            yield widget

    def on_resize(self, event: events.Resize) -> None:
        if self._composed_width and event.size.width != self._composed_width:
            self.call_after_refresh(self.recompose)
