"""A small form dialog: labelled fields (the label shown above the field, with or without a
value), validated by the service, typed result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    password: bool = False
    value: str = ""
    check: Callable[[str], str | None] | None = None
    """Returns a sentence saying what is wrong, or None: shown in the dialog as you type."""


class FormDialog(ModalScreen[dict[str, str] | None]):
    """Returns the entered values by field name, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="cancel"),
        Binding("f2", "submit", "OK", id="ok"),
    ]

    def __init__(self, title: str, fields: Sequence[Field], *, note: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.fields = list(fields)
        self.note = note

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog"):
            yield Label(self.title_text, classes="form-title")
            if self.note:
                yield Static(self.note)
            for f in self.fields:
                # a caption, not a placeholder: it stays visible when the field has a value
                yield Label(f.label, id=f"label-{f.name}", classes="field-caption")
                yield Input(
                    compact=True,
                    value=f.value,
                    password=f.password,
                    id=f"field-{f.name}",
                )
            yield Static("", id="form-message", classes="message error")
            with Horizontal(classes="buttons"):
                yield Button(compact=True, label="OK (F2)", id="ok", variant="primary")
                yield Button(compact=True, label="Cancel (Esc)", id="cancel")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    @on(Input.Submitted)
    def _next(self, event: Input.Submitted) -> None:
        inputs = list(self.query(Input))
        index = inputs.index(event.input)
        if index + 1 < len(inputs):
            inputs[index + 1].focus()
        else:
            self.action_submit()

    def _problem(self, values: dict[str, str]) -> tuple[Field, str] | None:
        for f in self.fields:
            if f.check is not None and values[f.name].strip():
                problem = f.check(values[f.name])
                if problem:
                    return f, problem
        return None

    @on(Input.Changed)
    def _check_as_typed(self) -> None:
        values = {f.name: self.query_one(f"#field-{f.name}", Input).value for f in self.fields}
        found = self._problem(values)
        self.query_one("#form-message", Static).update(found[1] if found else "")

    @on(Button.Pressed, "#ok")
    def action_submit(self) -> None:
        values = {f.name: self.query_one(f"#field-{f.name}", Input).value for f in self.fields}
        missing = [f for f in self.fields if not values[f.name].strip()]
        if missing:
            labels = ", ".join(f.label for f in missing)
            self.query_one("#form-message", Static).update(f"Fill in: {labels}.")
            self.query_one(f"#field-{missing[0].name}", Input).focus()
            return
        found = self._problem(values)
        if found:
            self.query_one("#form-message", Static).update(found[1])
            self.query_one(f"#field-{found[0].name}", Input).focus()
            return
        self.dismiss(values)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
