"""Keys shared by the screens where credentials are typed."""

from __future__ import annotations

from textual.binding import Binding, BindingType

#: Tab and Shift+Tab act before the focused field sees the next keys: without priority, keys
#: typed right after Tab still reach the field being left, so the start of a password could
#: land, readable, in the user ID field.
CREDENTIAL_TABS: list[BindingType] = [
    Binding("tab", "app.focus_next", show=False, priority=True),
    Binding("shift+tab", "app.focus_previous", show=False, priority=True),
]
