"""Recipes: the effective master recipes with version, hash and approval signature."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.widgets import DataTable, Static

from hmi.auth.signatures import manifestation
from hmi.screens.base import HmiScreen


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
