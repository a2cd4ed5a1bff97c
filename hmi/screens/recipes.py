"""Recipes: the effective master recipes with version, hash and approval signature."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from hmi.auth.signatures import manifestation
from hmi.batch.model import BatchInfo
from hmi.screens.base import HmiScreen
from hmi.screens.messages import NavigateRequested
from hmi.screens.modals.form import Field, FormDialog


@dataclass(frozen=True)
class RecipeRow:
    recipe_id: str
    version: int
    name: str
    status: str
    sha256: str
    approval: str


class RecipesScreen(HmiScreen):
    """What may run on this line, and who approved it."""

    REQUIRES = "recipe.view"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "start_batch", "Start batch", id="start-batch"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[RecipeRow] = []

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="recipes-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="recipe-detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Recipe", "Version", "Name", "Status", "SHA-256")
        recipes = self.ctx.recipes
        signatures = self.ctx.auth.signatures
        tz = self.ctx.tz
        if recipes is None:
            return

        def load() -> list[RecipeRow]:
            rows = []
            for info in recipes.list_versions():
                if info.status.value not in {"effective", "draft"}:
                    continue
                signed = [
                    manifestation(s, tz=tz)
                    for s in signatures.signatures_for(info.record.type, info.record.id)
                ]
                rows.append(
                    RecipeRow(
                        info.recipe_id,
                        info.version,
                        info.name,
                        info.status.value,
                        info.sha256,
                        "; ".join(signed) or "not approved",
                    )
                )
            return rows

        self.run_blocking(load, self._show)

    def _show(self, rows: list[RecipeRow]) -> None:
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for row in rows:
            table.add_row(
                row.recipe_id,
                f"v{row.version}",
                row.name[:30],
                row.status,
                row.sha256[:16],
                key=f"{row.recipe_id}:{row.version}",
            )
        if rows:
            self._detail(0)
        else:
            self.query_one("#recipe-detail", Static).update("No recipes are stored.")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.cursor_row)

    def _detail(self, index: int) -> None:
        if not 0 <= index < len(self.rows):
            return
        row = self.rows[index]
        self.query_one("#recipe-detail", Static).update(
            f"{row.recipe_id} v{row.version} - {row.name} ({row.status})\n"
            f"SHA-256 {row.sha256}\nApproval: {row.approval}"
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start_batch":
            return (
                self.ctx.may("batch.start")
                and self.ctx.batches is not None
                and not self.ctx.service_mode
            )
        return True

    def action_start_batch(self) -> None:
        table = self.query_one(DataTable)
        runnable = [r for r in self.rows if r.status == "effective"]
        if not runnable:
            self.show_error("No effective recipe to start.")
            return
        row = self.rows[min(max(table.cursor_row, 0), len(self.rows) - 1)]
        if row.status != "effective":
            self.show_error(f"{row.recipe_id} v{row.version} is {row.status}; it cannot run.")
            return
        pattern = self.ctx.batches.settings.batch_number_pattern if self.ctx.batches else ""

        def check_number(text: str) -> str | None:
            number = text.strip().upper()
            if pattern and not re.match(pattern, number):
                return f"'{number}' is not a valid batch number: 3-32 letters, digits or '-'."
            return None

        def answered(values: dict[str, str] | None) -> None:
            session, batches = self.ctx.session, self.ctx.batches
            if values is None or session is None or batches is None:
                return
            number = values["batch"].strip().upper()
            if pattern and not re.match(pattern, number):
                self.show_error(
                    f"'{number}' is not a valid batch number: 3-32 letters, digits or '-'."
                )
                return
            self.run_blocking(
                lambda: batches.start_batch(session, row.recipe_id, row.version, number),
                self._started,
            )

        self.app.push_screen(
            FormDialog(
                f"Start a batch of {row.recipe_id} v{row.version}",
                [Field("batch", "Batch number (e.g. B-2026-0001)", check=check_number)],
                note=row.name,
            ),
            answered,
        )

    def _started(self, info: BatchInfo) -> None:
        self.notify(f"Batch {info.batch_id} started.")
        self.post_message(NavigateRequested("batch"))
