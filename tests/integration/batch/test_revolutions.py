"""A revolution-based recipe (IBU200-PB) against the bundled simulator: the batch writes the
revolution count the recipe sets, the blend ends at it, and the record holds what the PLC did."""

from __future__ import annotations

from typing import Any

from hmi.auth.roles import Meaning
from hmi.auth.services import AuthServices
from hmi.batch.engine import BatchEngine
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.integration.batch.support import (
    REPO_ROOT,
    Driver,
    eventually,
    monitoring,
    record_training,
    retry,
    verify_chain,
)

BATCH = "B-2026-0800"
RECIPE = "IBU200-PB"


async def _approved(driver: Driver, recipes: RecipeService, auth: AuthServices) -> None:
    people = driver.people
    recipes.import_file(people.login("sup1"), REPO_ROOT / "recipes" / "ibuprofen-pre-blend.toml")
    qa = people["qa1"]
    session = people.login(qa)
    recipes.approve(
        session, RECIPE, 2, password=qa.password, user_id=qa.user_id, totp=people.code(qa),
        accept_statement=True,
    )  # fmt: skip
    for user_id in ("op1", "sup1"):
        record_training(auth, session, user_id, RECIPE)


def _current(engine: BatchEngine) -> str | None:
    step = engine.current_step(BATCH)
    return None if step is None else step.step_id


async def test_a_revolution_based_blend_runs_to_the_count_the_recipe_sets(
    site: Site,
    engine: BatchEngine,
    driver: Driver,
    recipes: RecipeService,
    auth: AuthServices,
    gateway: Any,
) -> None:
    await _approved(driver, recipes, auth)
    people = driver.people
    operator = driver.operator()
    engine.start_batch(operator, RECIPE, 2, BATCH)

    async def signed_check(step_id: str, data: dict[str, Any]) -> None:
        session = driver.operator()
        ref = engine.step_record(BATCH, step_id, data)
        performed = people.sign(session, ref, Meaning.PERFORMED)
        verified = people.cosign(session, performed, "sup1", Meaning.VERIFIED)
        await engine.complete_step(session, BATCH, step_id, data, signatures=[performed, verified])

    with monitoring(engine):
        await signed_check("line-clearance", {"confirmed": True})
        await eventually(lambda: _current(engine) == "charge-mcc", timeout=15, what="bin ready")
        await gateway.call("open_lid")
        for step_id, kg in (("charge-mcc", 90.0), ("charge-api", 60.0), ("charge-ccs", 6.0)):
            await engine.start_step(driver.operator(), BATCH, step_id)
            await gateway.call("charge", kg)
            await retry(
                lambda s=step_id: engine.complete_step(
                    driver.operator(), BATCH, s, {"lot": f"LOT-{s}"}
                ),
                timeout=30,
            )
        await signed_check("charge-csd", {"lot": "LOT-CSD", "quantity": "1500"})
        await gateway.call("close_lid")
        await eventually(lambda: _current(engine) == "set-speed", timeout=15, what="lid closed")
        await engine.complete_step(driver.operator(), BATCH, "set-speed", {})
        assert int((await gateway.read("revolutions_setpoint")).value) == 200
        await engine.start_step(driver.operator(), BATCH, "pre-blend")
        await retry(
            lambda: engine.complete_step(driver.operator(), BATCH, "pre-blend", {}), timeout=60
        )
    values = {v.name: v for v in engine.values(BATCH) if v.step_id in ("set-speed", "pre-blend")}
    assert values["blend_revolutions"].value == "200"  # written to the PLC and read back
    revolutions = values["revolutions"]
    assert revolutions.in_limits and 200 <= float(revolutions.value) <= 210
    assert (revolutions.low, revolutions.high) == ("195", "210")
    assert not [d for d in engine.deviations(BATCH) if d.step_id == "pre-blend"]
    written = [
        c.arguments for c in engine.record(BATCH).plc_commands
        if c.command == "write" and c.arguments.get("tag") == "revolutions_setpoint"
    ]  # fmt: skip
    assert len(written) == 1
    assert verify_chain(site).ok
