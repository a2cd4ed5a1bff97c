"""Import, approve (QA e-signature), supersede and retire, each with its audit event."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.auth.errors import AuthenticationFailed, PermissionDenied
from hmi.auth.services import AuthServices
from hmi.auth.signatures import RecordRef
from hmi.recipe.errors import (
    RecipeError,
    RecipeImportRefused,
    RecipeInvalid,
    RecipeNotFound,
    RecipeStateError,
)
from hmi.recipe.service import ImportOutcome, RecipeService, RecipeStatus
from hmi.site import Site
from tests.integration.recipe.conftest import People
from tests.integration.recipe.helpers import (
    assert_chain_intact,
    event_count,
    events,
    version_rows,
)

FINAL_BLEND = "paracetamol-final-blend.toml"


def new_version(recipe_dir: Path, version: int, setpoint: int = 12) -> Path:
    """A copy of the final blend with another version number (and speed setpoint)."""
    text = (recipe_dir / FINAL_BLEND).read_text(encoding="utf-8")
    path = recipe_dir / f"final-blend-v{version}.toml"
    path.write_text(
        text.replace("version = 4", f"version = {version}").replace(
            "setpoint = 12", f"setpoint = {setpoint}"
        ),
        encoding="utf-8",
    )
    return path


def approve(recipes: RecipeService, people: People, version: int = 4, who: str = "qa") -> object:
    person = getattr(people, who)
    session = people.login(person)
    return recipes.approve(
        session,
        "PARA500-FB",
        version,
        password=person.password,
        user_id=person.user_id,
        totp=people.code(person),
        accept_statement=True,
    )


def test_import_stores_a_draft_with_its_text_and_hashes(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    path = recipe_dir / FINAL_BLEND
    result = recipes.import_file(people.login(people.supervisor), path)
    assert result.outcome is ImportOutcome.IMPORTED
    assert result.info.status is RecipeStatus.DRAFT
    [row] = version_rows(site)
    assert row["content"] == path.read_text(encoding="utf-8")
    assert (row["recipe_id"], row["version"], row["imported_by"]) == ("PARA500-FB", 4, "sup1")
    assert row["sha256"] == result.info.sha256 and len(row["sha256"]) == 64
    [event] = events(site)
    assert (event["action"], event["actor_id"], event["actor_role"]) == (
        "recipe.imported", "sup1", "supervisor"
    )  # fmt: skip
    assert (event["entity_type"], event["entity_id"]) == ("recipe_version", "PARA500-FB/4")
    assert (event["field"], event["new_value"]) == ("status", "draft")
    assert event["details"]["sha256"] == row["sha256"]
    assert event["details"]["content_sha256"] == row["content_sha256"]
    with pytest.raises(RecipeStateError, match="no effective"):
        recipes.effective("PARA500-FB")
    with pytest.raises(RecipeStateError, match="only the effective"):
        recipes.runnable("PARA500-FB", 4)
    assert_chain_intact(site)


def test_reimport_of_identical_content_is_a_no_op(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    session = people.login(people.supervisor)
    recipes.import_file(session, recipe_dir / FINAL_BLEND)
    before = event_count(site)
    again = recipes.import_file(session, recipe_dir / FINAL_BLEND)
    assert again.outcome is ImportOutcome.UNCHANGED
    assert "already stored with identical content" in again.message
    assert event_count(site) == before and len(version_rows(site)) == 1


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("setpoint = 12", "setpoint = 13", "with different content"),
        ("# Master recipe:", "# Edited comment. Master recipe:", "only in comments or layout"),
    ],
)
def test_same_id_and_version_with_other_content_is_refused_and_recorded(
    site: Site,
    people: People,
    recipes: RecipeService,
    recipe_dir: Path,
    old: str,
    new: str,
    expected: str,
) -> None:
    session = people.login(people.supervisor)
    path = recipe_dir / FINAL_BLEND
    first = recipes.import_file(session, path)
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    with pytest.raises(RecipeImportRefused, match=expected):
        recipes.import_file(session, path)
    [row] = version_rows(site)
    assert row["sha256"] == first.info.sha256 and row["content_sha256"] == first.info.content_sha256
    refused = events(site, "recipe.import.refused")
    assert len(refused) == 1 and expected in refused[0]["reason"]
    assert refused[0]["details"]["stored_sha256"] == first.info.sha256
    assert_chain_intact(site)


def test_invalid_file_never_reaches_the_database(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    session = people.login(people.supervisor)
    path = recipe_dir / FINAL_BLEND
    path.write_text(
        path.read_text(encoding="utf-8").replace("low = 10", "low = 15"), encoding="utf-8"
    )
    before = event_count(site)
    with pytest.raises(RecipeInvalid) as caught:
        recipes.import_file(session, path)
    assert [(p.where, p.field) for p in caught.value.problems] == [
        ("parameter 'blend_speed'", "low")
    ]
    assert event_count(site) == before
    assert version_rows(site) == []


def test_import_needs_a_permitted_role_and_the_refusal_is_recorded(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    with pytest.raises(PermissionDenied):
        recipes.import_file(people.login(people.operator), recipe_dir / FINAL_BLEND)
    assert version_rows(site) == []
    [denial] = events(site, "auth.permission.denied")
    assert denial["actor_id"] == "op1" and denial["details"]["action"] == "recipe.import"
    assert (
        recipes.import_file(people.login(people.qa), recipe_dir / FINAL_BLEND).info.imported_by
        == "qa1"
    )


def test_qa_approval_signs_the_version_and_makes_it_effective(
    site: Site, auth: AuthServices, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    imported = recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)
    result = approve(recipes, people)
    assert result.info.status is RecipeStatus.EFFECTIVE  # type: ignore[attr-defined]
    signature = result.signature  # type: ignore[attr-defined]
    assert (signature.signer_id, signature.meaning.value) == ("qa1", "approved")
    assert signature.record == RecordRef("recipe_version", "PARA500-FB/4", imported.info.sha256)
    [check] = auth.signatures.verify(signature.record)
    assert check.valid, check.problems
    effective = recipes.effective("PARA500-FB")
    assert effective.info.approved_by == "qa1"
    assert effective.info.approval_ref == signature.signature_id
    assert recipes.runnable("PARA500-FB", 4).recipe.parameter("blend_speed").setpoint == 12
    [approved] = events(site, "recipe.approved")
    assert (approved["old_value"], approved["new_value"], approved["meaning"]) == (
        "draft", "effective", "approved"
    )  # fmt: skip
    assert approved["details"]["signature_id"] == signature.signature_id
    assert approved["details"]["sha256"] == imported.info.sha256
    assert [e["action"] for e in events(site, "esignature.signed")] == ["esignature.signed"]
    assert_chain_intact(site)


@pytest.mark.parametrize("who", ["admin", "supervisor"])
def test_only_qa_may_approve(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path, who: str
) -> None:
    recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)
    with pytest.raises(PermissionDenied):
        approve(recipes, people, who=who)
    assert version_rows(site)[0]["status"] == "draft"
    assert events(site, "esignature.signed") == []
    denied = events(site, "auth.permission.denied")
    assert [(d["actor_role"], d["details"]["action"]) for d in denied] == [
        ("admin" if who == "admin" else "supervisor", "recipe.approve")
    ]
    assert_chain_intact(site)


def test_wrong_password_signs_nothing_and_approves_nothing(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)
    session = people.login(people.qa)
    with pytest.raises(AuthenticationFailed):
        recipes.approve(
            session,
            "PARA500-FB",
            4,
            password="not-the-password",
            user_id="qa1",
            totp=people.code(people.qa),
            accept_statement=True,
        )
    assert version_rows(site)[0]["status"] == "draft"
    assert events(site, "recipe.approved") == []
    assert len(events(site, "esignature.refused")) == 1
    assert_chain_intact(site)


def test_approving_a_newer_version_supersedes_the_effective_one(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    session = people.login(people.supervisor)
    recipes.import_file(session, recipe_dir / FINAL_BLEND)
    recipes.import_file(session, new_version(recipe_dir, 5, setpoint=11))
    approve(recipes, people, 4)
    result = approve(recipes, people, 5)
    assert result.superseded.version == 4  # type: ignore[attr-defined]
    statuses = {row["version"]: row["status"] for row in version_rows(site)}
    assert statuses == {4: "superseded", 5: "effective"}
    assert recipes.effective("PARA500-FB").recipe.parameter("blend_speed").setpoint == 11
    with pytest.raises(RecipeStateError, match="superseded"):
        recipes.runnable("PARA500-FB", 4)
    [superseded] = events(site, "recipe.superseded")
    assert (superseded["entity_id"], superseded["old_value"], superseded["new_value"]) == (
        "PARA500-FB/4", "effective", "superseded"
    )  # fmt: skip
    assert_chain_intact(site)


def test_an_older_draft_cannot_replace_a_newer_effective_version(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    session = people.login(people.supervisor)
    recipes.import_file(session, new_version(recipe_dir, 5))
    recipes.import_file(session, recipe_dir / FINAL_BLEND)
    approve(recipes, people, 5)
    with pytest.raises(RecipeStateError, match="newer"):
        approve(recipes, people, 4)
    assert {r["version"]: r["status"] for r in version_rows(site)} == {4: "draft", 5: "effective"}
    [refused] = events(site, "recipe.approve.refused")
    assert refused["entity_id"] == "PARA500-FB/4" and "newer" in refused["reason"]
    assert_chain_intact(site)


def test_approving_twice_is_refused_and_recorded(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)
    approve(recipes, people)
    with pytest.raises(RecipeStateError, match="only a draft can be approved"):
        approve(recipes, people)
    assert len(events(site, "recipe.approve.refused")) == 1
    assert len(events(site, "esignature.signed")) == 1


def test_retire_takes_the_effective_version_out_of_use(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    recipes.import_file(people.login(people.supervisor), recipe_dir / FINAL_BLEND)
    approve(recipes, people)
    session = people.login(people.qa)
    with pytest.raises(RecipeError, match="reason is required"):
        recipes.retire(session, "PARA500-FB", 4, "  ")
    info = recipes.retire(session, "PARA500-FB", 4, "product discontinued")
    assert (info.status, info.retired_by, info.retire_reason) == (
        RecipeStatus.RETIRED, "qa1", "product discontinued"
    )  # fmt: skip
    with pytest.raises(RecipeStateError, match="no effective"):
        recipes.effective("PARA500-FB")
    with pytest.raises(RecipeStateError, match="only a draft or an effective"):
        recipes.retire(session, "PARA500-FB", 4, "again")
    [retired] = events(site, "recipe.retired")
    assert (retired["old_value"], retired["new_value"], retired["reason"]) == (
        "effective", "retired", "product discontinued"
    )  # fmt: skip
    assert len(events(site, "recipe.retire.refused")) == 1
    with pytest.raises(PermissionDenied):
        recipes.retire(people.login(people.supervisor), "PARA500-FB", 4, "not allowed")
    assert_chain_intact(site)


def test_list_show_and_diff(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    session = people.login(people.supervisor)
    recipes.import_file(session, recipe_dir / FINAL_BLEND)
    recipes.import_file(session, new_version(recipe_dir, 5, setpoint=11))
    recipes.import_file(session, recipe_dir / "ibuprofen-pre-blend.toml")
    listed = [(v.recipe_id, v.version, v.status.value) for v in recipes.list_versions()]
    assert listed == [
        ("IBU200-PB", 2, "draft"),
        ("PARA500-FB", 4, "draft"),
        ("PARA500-FB", 5, "draft"),
    ]
    assert [v.version for v in recipes.list_versions("PARA500-FB")] == [4, 5]
    assert recipes.get("PARA500-FB").info.version == 5  # no effective version: the newest
    diff = recipes.diff("PARA500-FB", 4, 5)
    assert diff[0].startswith("--- PARA500-FB v4 (draft") and diff[1].startswith(
        "+++ PARA500-FB v5"
    )
    changed = [line for line in diff if line[:1] in "+-" and line[:3] not in ("---", "+++")]
    assert sorted(changed) == ["+setpoint = 11", "+version = 5", "-setpoint = 12", "-version = 4"]
    semantic = recipes.diff("PARA500-FB", 4, 5, semantic=True)
    assert '-      "setpoint": "12",' in semantic and '+      "setpoint": "11",' in semantic
    with pytest.raises(RecipeNotFound):
        recipes.get("PARA500-FB", 9)


def test_the_importer_cannot_approve_their_own_import(
    site: Site, people: People, recipes: RecipeService, recipe_dir: Path
) -> None:
    recipes.import_file(people.login(people.qa), recipe_dir / FINAL_BLEND)
    with pytest.raises(RecipeStateError, match="four-eyes"):
        approve(recipes, people, who="qa")
    assert events(site, "esignature.signed") == []
    [refused] = events(site, "recipe.approve.refused")
    assert refused["actor_id"] == "qa1" and "four-eyes" in refused["reason"]
    approve(recipes, people, who="qa2")
    assert recipes.effective("PARA500-FB").info.approved_by == "qa2"
    assert_chain_intact(site)
