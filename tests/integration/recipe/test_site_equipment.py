"""A recipe that names a PLC tag this site's tag map does not have is refused when it is
imported, and, if the tag map lost the tag after the import, when QA approves it: never found
out mid-batch at the PLC. The kiosk, the command line and the tests wire the recipe service
with the site's limits in one place (hmi.services)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.auth.services import AuthServices
from hmi.recipe.errors import RecipeInvalid, RecipeStateError
from hmi.recipe.limits import limits_from_settings
from hmi.recipe.service import RecipeService, RecipeStatus
from hmi.services import build_services
from hmi.site import Site
from tests.integration.recipe.conftest import People
from tests.integration.recipe.helpers import events

REVOLUTION_RECIPE = "ibuprofen-pre-blend.toml"


def without_tag(site: Site, auth: AuthServices, tag: str) -> RecipeService:
    """The recipe service of a site whose hmi.toml has no ``[plc.tags.TAG]``."""
    plc = site.settings.plc
    tags = {name: spec for name, spec in plc.tags.items() if name != tag}
    settings = site.settings.model_copy(update={"plc": plc.model_copy(update={"tags": tags})})
    return RecipeService(
        engine=site.engine,
        audit=site.audit,
        clock=site.clock,
        sessions=auth.sessions,
        signatures=auth.signatures,
        limits=limits_from_settings(settings),
    )


def test_a_recipe_naming_a_tag_the_site_lacks_is_refused_at_import(
    site: Site, auth: AuthServices, people: People, recipe_dir: Path
) -> None:
    limited = without_tag(site, auth, "revolutions_setpoint")
    with pytest.raises(RecipeInvalid) as refused:
        limited.import_file(people.login(people.supervisor), recipe_dir / REVOLUTION_RECIPE)
    text = str(refused.value)
    assert "PLC tag 'revolutions_setpoint' is not in this site's tag map" in text
    assert "no [plc.tags.revolutions_setpoint] in hmi.toml" in text
    assert limited.list_versions() == []


def test_a_tag_gone_from_the_map_after_import_stops_the_approval_and_it_is_recorded(
    site: Site, auth: AuthServices, people: People, recipe_dir: Path
) -> None:
    services = build_services(site, auth=auth)
    imported = services.recipes.import_file(
        people.login(people.supervisor), recipe_dir / REVOLUTION_RECIPE
    )
    assert imported.info.status is RecipeStatus.DRAFT
    limited = without_tag(site, auth, "revolutions_setpoint")
    qa = people.qa
    with pytest.raises(RecipeStateError, match="does not fit this site's equipment") as refused:
        limited.approve(
            people.login(qa), "IBU200-PB", imported.info.version, password=qa.password,
            user_id=qa.user_id, totp=people.code(qa), accept_statement=True,
        )  # fmt: skip
    assert "revolutions_setpoint" in str(refused.value)
    assert limited.get("IBU200-PB", imported.info.version).info.status is RecipeStatus.DRAFT
    [refusal] = events(site, "recipe.approve.refused")
    assert "revolutions_setpoint" in str(refusal["reason"])
    assert events(site, "esignature.") == []  # refused before anyone signed
    # With the tag in the map (the site's own wiring), the same version is approved.
    approved = services.recipes.approve(
        people.login(qa), "IBU200-PB", imported.info.version, password=qa.password,
        user_id=qa.user_id, totp=people.code(qa), accept_statement=True,
    )  # fmt: skip
    assert approved.info.status is RecipeStatus.EFFECTIVE
