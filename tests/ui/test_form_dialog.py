"""The form dialog checks as you type and keeps itself open (with the focus on the field) until
the entry is right, so a gloved operator never loses what they typed."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input, Static

from hmi.screens.modals.form import Field, FormDialog


def _check(text: str) -> str | None:
    return None if text.strip().upper().startswith("B-") else "starts with B-"


class _Host(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, str] | str | None = "unset"

    def on_mount(self) -> None:
        def done(values: dict[str, str] | None) -> None:
            self.result = values

        self.push_screen(FormDialog("Start", [Field("batch", "Batch number", check=_check)]), done)


async def test_invalid_entry_keeps_the_dialog_open_and_focused() -> None:
    app = _Host()
    async with app.run_test() as pilot:
        await pilot.press(*"x 1")
        message = app.screen.query_one("#form-message", Static)
        assert "starts with B-" in str(message.render())
        await pilot.press("f2")
        assert isinstance(app.screen, FormDialog) and app.result == "unset"
        field = app.screen.query_one("#field-batch", Input)
        assert app.focused is field
        field.value = ""
        await pilot.press(*"B-7")
        await pilot.pause()
        assert str(app.screen.query_one("#form-message", Static).render()) == ""
        await pilot.press("f2")
        await pilot.pause()
        assert app.result == {"batch": "B-7"}
