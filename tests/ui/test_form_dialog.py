"""The form dialog checks as you type and keeps itself open (with the focus on the field) until
the entry is right, so a gloved operator never loses what they typed."""

from __future__ import annotations

from textual.app import App
from textual.widgets import Input, Label, Static

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


class _Prefilled(App[None]):
    def on_mount(self) -> None:
        self.push_screen(
            FormDialog(
                "Hold the batch",
                [Field("code", "Reason code", value="PROCESS"), Field("text", "Reason")],
            )
        )


async def test_every_field_shows_its_label_with_or_without_a_value() -> None:
    app = _Prefilled()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        dialog = app.screen
        assert dialog.query_one("#field-code", Input).value == "PROCESS"
        for name, label in (("code", "Reason code"), ("text", "Reason")):
            caption = dialog.query_one(f"#label-{name}", Label)
            assert str(caption.render()) == label
            field = dialog.query_one(f"#field-{name}", Input)
            # on screen, right above its field
            assert caption.region.height == 1 and caption.region.bottom == field.region.y
        await pilot.press(*"x")  # typing keeps the label too
        assert str(dialog.query_one("#label-code", Label).render()) == "Reason code"
