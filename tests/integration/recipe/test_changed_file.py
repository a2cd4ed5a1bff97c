"""The database copy is the controlled one: editing a file afterwards changes nothing that runs,
and the file shows up as "changed, not approved"."""

from __future__ import annotations

from pathlib import Path

from hmi.recipe.service import FileState, RecipeService, RecipeStatus
from hmi.site import Site
from tests.integration.recipe.conftest import People
from tests.integration.recipe.helpers import assert_chain_intact, events

FINAL_BLEND = "paracetamol-final-blend.toml"


def import_and_approve(recipes: RecipeService, people: People, path: Path) -> None:
    recipes.import_file(people.login(people.supervisor), path)
    session = people.login(people.qa)
    recipes.approve(
        session,
        "PARA500-FB",
        4,
        password=people.qa.password,
        user_id="qa1",
        totp=people.code(people.qa),
        accept_statement=True,
    )


def test_edited_file_is_changed_not_approved_and_changes_nothing_that_runs(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    path = recipe_dir / FINAL_BLEND
    import_and_approve(recipes, people, path)
    approved_sha = recipes.effective("PARA500-FB").info.sha256
    assert recipes.file_status(path).state is FileState.MATCHES
    assert recipes.file_status(path).label == "matches stored version (effective)"

    path.write_text(
        path.read_text(encoding="utf-8").replace("setpoint = 12", "setpoint = 13"),
        encoding="utf-8",
    )
    status = recipes.file_status(path)
    assert status.state is FileState.CHANGED
    assert status.label == "changed, not approved"
    assert (status.recipe_id, status.version, status.stored_status) == (
        "PARA500-FB", 4, RecipeStatus.EFFECTIVE
    )  # fmt: skip
    assert status.stored_sha256 == approved_sha != status.file_sha256

    runnable = recipes.runnable("PARA500-FB", 4)
    assert runnable.recipe.parameter("blend_speed").setpoint == 12
    assert runnable.info.sha256 == approved_sha
    assert "setpoint = 12" in runnable.content
    events_before = len(events(site, ""))
    recipes.list_versions()
    recipes.file_status(path)
    assert len(events(site, "")) == events_before  # reading and comparing change nothing
    assert_chain_intact(site)


def test_comment_only_edit_is_the_same_recipe(
    people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    path = recipe_dir / FINAL_BLEND
    import_and_approve(recipes, people, path)
    path.write_text("# reviewed 2026-03-01\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    status = recipes.file_status(path)
    assert status.state is FileState.EQUIVALENT
    assert "comments/layout differ" in status.label


def test_not_imported_and_invalid_files(
    people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    path = recipe_dir / FINAL_BLEND
    import_and_approve(recipes, people, path)
    newer = recipe_dir / "v5.toml"
    newer.write_text(
        path.read_text(encoding="utf-8").replace("version = 4", "version = 5"), encoding="utf-8"
    )
    status = recipes.file_status(newer)
    assert (status.state, status.version, status.effective_version) == (
        FileState.NOT_IMPORTED,
        5,
        4,
    )
    broken = recipe_dir / "broken.toml"
    broken.write_text(path.read_text(encoding="utf-8").replace("format = 1", "format = 7"))
    invalid = recipes.file_status(broken)
    assert invalid.state is FileState.INVALID and invalid.label == "invalid"
    assert "format 1" in invalid.problems[0] and str(broken) in invalid.problems[0]
