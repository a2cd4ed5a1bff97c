"""The stored copy is protected: content is immutable, rows are kept, statuses only move
forward, and a row altered behind the database's back is detected before it can run."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from hmi.recipe.errors import RecipeIntegrityError
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.helpers.audit import outside_engine
from tests.integration.recipe.conftest import People

FINAL_BLEND = "paracetamol-final-blend.toml"


@pytest.fixture
def stored(people: People, recipes: RecipeService, recipe_dir: Path) -> None:
    recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE recipe_version SET content = 'x'", "content is immutable"),
        ("UPDATE recipe_version SET sha256 = 'x'", "content is immutable"),
        ("DELETE FROM recipe_version", "DELETE refused"),
        ("UPDATE recipe_version SET status = 'superseded'", "status change not allowed"),
    ],
)
def test_database_refuses_changes_to_the_controlled_copy(
    site: Site, statement: str, message: str
) -> None:
    with pytest.raises(IntegrityError, match=message), outside_engine(site).begin() as conn:
        conn.execute(text(statement))


@pytest.mark.usefixtures("stored")
def test_only_one_effective_version_per_recipe(site: Site, recipes: RecipeService) -> None:
    second = recipes.get("PARA500-FB", 4)
    outside = outside_engine(site)  # another program holding the file: only triggers
    with outside.begin() as conn:
        conn.execute(text("UPDATE recipe_version SET status = 'effective'"))
    with pytest.raises(IntegrityError, match="UNIQUE"), outside.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO recipe_version (recipe_id, version, name, product, format, status,"
                " content, content_sha256, canonical_json, sha256, source_path, imported_by,"
                " imported_at) VALUES ('PARA500-FB', 4, 'n', 'p', 1, 'effective', :c, 'h', '{}',"
                " 'h', 'x', 'sup1', 't')"
            ),
            {"c": second.content},
        )


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize("column", ["content", "canonical_json"])
def test_row_altered_behind_the_database_is_never_used(
    site: Site, recipes: RecipeService, column: str
) -> None:
    attacker = sqlite3.connect(site.data_dir / "hmi.db", isolation_level=None)
    try:
        attacker.execute("DROP TRIGGER recipe_version_content_frozen")
        attacker.execute(f"UPDATE recipe_version SET {column} = replace({column}, '12', '13')")
    finally:
        attacker.close()
    with pytest.raises(RecipeIntegrityError, match="does not match its recorded SHA-256"):
        recipes.get("PARA500-FB", 4)


def test_consistently_rewritten_row_fails_its_approval_signature(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    """Someone with the file rewrites text, canonical JSON and both hashes consistently: the
    row then looks self-consistent, but the QA signature covers the old content."""
    from hmi.recipe.loader import load_recipe_text

    recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)
    session = people.login(people.qa)
    recipes.approve(
        session, "PARA500-FB", 4, password=people.qa.password, user_id="qa1",
        totp=people.code(people.qa), accept_statement=True,
    )  # fmt: skip
    forged = load_recipe_text(
        recipes.get("PARA500-FB", 4).content.replace("setpoint = 12", "setpoint = 13"), "forged"
    )
    attacker = sqlite3.connect(site.data_dir / "hmi.db", isolation_level=None)
    try:
        attacker.execute("DROP TRIGGER recipe_version_content_frozen")
        attacker.execute(
            "UPDATE recipe_version SET content = ?, content_sha256 = ?, canonical_json = ?,"
            " sha256 = ?",
            (forged.text, forged.content_sha256, forged.canonical_json, forged.sha256),
        )
    finally:
        attacker.close()
    assert recipes.get("PARA500-FB", 4).recipe.parameter("blend_speed").setpoint == 13
    with pytest.raises(RecipeIntegrityError, match="no valid approval signature"):
        recipes.runnable("PARA500-FB", 4)
    with pytest.raises(RecipeIntegrityError, match="no valid approval signature"):
        recipes.effective("PARA500-FB")
