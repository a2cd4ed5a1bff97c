"""A checkbox whose box is empty until ticked.

Textual's checkbox always draws an ``X`` and shows the state by colour only; with gloves, in
glare or on the high-contrast theme an unticked statement then reads as accepted.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class TickBox(Checkbox):
    """A checkbox that shows ``X`` only when ticked."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super()._button
