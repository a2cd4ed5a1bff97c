"""The batch engine's rules against the in-memory PLC (:class:`hmi.plc.fake.FakeGateway`),
wired as the product wires it (:func:`hmi.services.build_services`): fast and deterministic,
every PLC reaction chosen by the test. The simulator over OPC UA stays the integration test
(tests/integration/batch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from hmi.auth.services import AuthServices
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import PlcCommandFailed
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.batch.report import render_record
from hmi.clock import ManualClock
from hmi.plc.fake import FakeGateway, Refusal
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.integration.batch.support import (
    RECIPE_ID,
    Driver,
    People,
    auth_services,
    import_and_approve,
    kiosk_services,
    monitoring,
    record_training,
    verify_chain,
)

BATCH = "B-2026-0101"


@pytest.fixture
def auth(site: Site) -> AuthServices:
    return auth_services(site)


@pytest.fixture
def people(auth: AuthServices, clock: ManualClock) -> People:
    return People.create(auth, clock)


@pytest.fixture
def recipes(site: Site, auth: AuthServices, people: People) -> RecipeService:
    recipes = import_and_approve(site, auth, people)
    trainer = people.login("qa1")
    for user_id in ("op1", "sup1", "sup2"):
        record_training(auth, trainer, user_id, RECIPE_ID)
    auth.sessions.logout(trainer)
    return recipes


@pytest.fixture
async def plc() -> AsyncIterator[FakeGateway]:
    """A PLC whose simulated time runs a million times faster than the wall clock: a blend
    is complete by the next read after it started, at exactly its blend time."""
    fake = FakeGateway(time_scale=1e6)
    await fake.connect()
    yield fake
    await fake.disconnect()


@pytest.fixture
def engine(site: Site, auth: AuthServices, recipes: RecipeService, plc: FakeGateway) -> BatchEngine:
    return kiosk_services(site, auth, plc).batches


@pytest.fixture
def driver(engine: BatchEngine, people: People, plc: FakeGateway) -> Driver:
    return Driver(engine, people, plc)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the engine's monitor handle what the PLC published (a bounded number of turns of
    the event loop, no clock involved)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what}: not seen")


async def test_a_whole_batch_runs_on_the_fake_plc_and_its_record_is_true(
    site: Site, engine: BatchEngine, driver: Driver, plc: FakeGateway
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH)
    info = engine.get(BATCH)
    assert info.status is BatchStatus.AWAITING_REVIEW
    # What the PLC received is what the recipe asks, in the order the engine sent it.
    calls = [name for kind, name, _ in plc.received if kind == "call"]
    assert calls.index("reset") < calls.index("start") < calls.index("discharge")
    writes = {name: value for kind, name, value in plc.received if kind == "write"}
    assert writes["speed_setpoint"] == 12.0 and writes["blend_time_setpoint"] == 900.0
    record = engine.record(BATCH)
    values = {(v.name, v.source): v.value for v in record.values}
    assert values[("elapsed_time", "plc")] == "900.0"  # exactly the blend time the PLC ran
    assert [(c.command, c.result) for c in record.plc_commands if c.command == "start"] == [
        ("start", "ok")
    ]
    text = "\n".join(render_record(record))
    assert f"Batch {BATCH}" in text and "IG-2026-0042" in text
    assert verify_chain(site).ok


async def test_a_parameter_changed_during_the_batch_is_the_one_written_at_the_next_step(
    engine: BatchEngine, driver: Driver, plc: FakeGateway, people: People
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="lid-interlock")
    change = await engine.change_parameter(
        people.login("sup1"), BATCH, "blend_speed", "13", "granulate coarser than usual"
    )
    assert change is not None
    before = len(plc.received)
    await driver.run(BATCH, stop_after="set-blend")
    written = [(n, v) for k, n, v in plc.received[before:] if k == "write"]
    assert ("speed_setpoint", 13.0) in written and ("speed_setpoint", 12.0) not in written
    assert plc.values["speed_setpoint"] == 13.0


async def test_a_start_the_plc_refuses_is_recorded_with_its_reason_and_nothing_starts(
    engine: BatchEngine, driver: Driver, plc: FakeGateway
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    plc.refuse_next("start", Refusal("BadRequestNotAllowed", "Start refused: guard door open"))
    with pytest.raises(PlcCommandFailed, match="guard door open"):
        await engine.start_step(driver.operator(), BATCH, "blend")
    [start] = [c for c in engine.record(BATCH).plc_commands if c.command == "start"]
    assert start.result == "rejected" and "guard door open" in (start.result_detail or "")
    assert plc.values["state"] == "Idle"  # reset was sent, the start was not taken
    assert engine.get(BATCH).status is BatchStatus.RUNNING


async def test_a_plc_that_holds_by_itself_holds_the_batch_with_its_reason(
    engine: BatchEngine, driver: Driver, people: People
) -> None:
    slow = FakeGateway()  # time passes only when the test says so
    await slow.connect()
    engine.plc = slow
    driver.gateway = slow
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        slow.advance(120)
        assert slow.values["state"] == "Execute"
        slow.hold_by_itself("product temperature high (42.0 °C)")
        await until(lambda: engine.get(BATCH).status is BatchStatus.HELD, "batch held")
    held = engine.get(BATCH)
    assert held.status is BatchStatus.HELD
    assert held.hold_reason == "the PLC is Held: product temperature high (42.0 °C)"


async def test_losing_the_plc_during_the_blend_holds_the_batch(
    engine: BatchEngine, driver: Driver
) -> None:
    slow = FakeGateway()
    await slow.connect()
    engine.plc = slow
    driver.gateway = slow
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        slow.lose("network cable pulled")
        await until(lambda: engine.get(BATCH).status is BatchStatus.HELD, "batch held")
    assert engine.get(BATCH).hold_reason == "communication with the PLC lost"
    [lost] = engine.deviations(BATCH)
    assert lost.kind is DeviationKind.PLC_LOST
    assert lost.description == (
        "communication with the PLC lost during the run: network cable pulled"
    )
