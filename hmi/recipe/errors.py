"""Errors of the recipe package: each says what was wrong and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe file: where (file, step or parameter, field) and what.

    ``where`` is ``"file"`` when the file itself cannot be read or parsed, ``"recipe"`` for
    top-level fields, ``"parameter 'name'"`` for a parameter and
    ``"step 'id' (#n)"`` for a step (``"step #n"`` when the step has no usable ID).
    """

    file: str
    where: str
    field: str | None
    message: str

    def __str__(self) -> str:
        if self.where == "file" and self.field is None:
            return f"{self.file}: {self.message}"
        location = self.where if self.field is None else f"{self.where}, field '{self.field}'"
        return f"{self.file}: {location}: {self.message}"


class RecipeError(Exception):
    """Base class: a recipe operation was refused; the message says why."""


class RecipeInvalid(RecipeError):
    """A recipe file failed validation; ``problems`` lists every problem found, not the first."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: {count} problem{'s' if count != 1 else ''}:\n{lines}")


class RecipeNotFound(RecipeError):
    """No stored recipe version matches the given ID (and version)."""


class RecipeStateError(RecipeError):
    """The requested lifecycle change is not allowed from the version's current status."""


class RecipeImportRefused(RecipeError):
    """A valid file was not imported (same ID and version already stored with other content)."""


class RecipeIntegrityError(RecipeError):
    """A stored recipe no longer matches its recorded SHA-256: it must not be used."""


class RecipePermissionDenied(RecipeError):
    """The acting user may not perform this recipe operation (the refusal is recorded)."""
