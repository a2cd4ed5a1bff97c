"""The batch engine's rules against the in-memory PLC (:class:`hmi.plc.fake.FakeGateway`),
wired as the product wires it (:func:`hmi.services.build_services`): fast and deterministic,
every PLC reaction chosen by the test. The other tests here run the same engine against the
simulator over OPC UA."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest

from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import PlcCommandFailed, SignatureProblem
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.batch.report import render_record
from hmi.plc.fake import FakeGateway, Refusal
from hmi.site import Site
from tests.integration.batch.support import (
    RECIPE_ID,
    Driver,
    People,
    monitoring,
    record_training,
    verify_chain,
)

BATCH = "B-2026-0101"


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    """The kiosk's PLC for this module (the batch fixtures' engine and driver use it): simulated
    time runs a million times faster than the wall clock, so a blend is complete by the next
    read after it started, at exactly its blend time."""
    fake = FakeGateway(time_scale=1e6)
    await fake.connect()
    yield fake
    await fake.disconnect()


@pytest.fixture
async def slow(engine: BatchEngine, driver: Driver) -> AsyncIterator[FakeGateway]:
    """A PLC on which time passes only when the test says so, in place of ``gateway``."""
    fake = FakeGateway()
    await fake.connect()
    engine.plc = fake
    driver.gateway = fake
    yield fake
    await fake.disconnect()


@contextlib.asynccontextmanager
async def blending(engine: BatchEngine, driver: Driver) -> AsyncIterator[None]:
    """The batch up to its blend, the blend started, the engine's monitor watching."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    with monitoring(engine):
        await engine.start_step(driver.operator(), BATCH, "blend")
        yield


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the engine's monitor handle what the PLC published (a bounded number of turns of
    the event loop, no clock involved)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what}: not seen")


async def test_a_whole_batch_runs_on_the_fake_plc_and_its_record_is_true(
    site: Site, engine: BatchEngine, driver: Driver, gateway: FakeGateway
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH)
    info = engine.get(BATCH)
    assert info.status is BatchStatus.AWAITING_REVIEW
    # What the PLC received is what the recipe asks, in the order the engine sent it.
    calls = [name for kind, name, _ in gateway.received if kind == "call"]
    assert calls.index("reset") < calls.index("start") < calls.index("discharge")
    writes = {name: value for kind, name, value in gateway.received if kind == "write"}
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
    engine: BatchEngine, driver: Driver, gateway: FakeGateway, people: People
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="lid-interlock")
    change = await engine.change_parameter(
        people.login("sup1"), BATCH, "blend_speed", "13", "granulate coarser than usual"
    )
    assert change is not None
    before = len(gateway.received)
    await driver.run(BATCH, stop_after="set-blend")
    written = [(n, v) for k, n, v in gateway.received[before:] if k == "write"]
    assert ("speed_setpoint", 13.0) in written and ("speed_setpoint", 12.0) not in written
    assert gateway.values["speed_setpoint"] == 13.0


async def test_a_start_the_plc_refuses_is_recorded_with_its_reason_and_nothing_starts(
    engine: BatchEngine, driver: Driver, gateway: FakeGateway
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    gateway.refuse_next("start", Refusal("BadRequestNotAllowed", "Start refused: guard door open"))
    with pytest.raises(PlcCommandFailed, match="guard door open"):
        await engine.start_step(driver.operator(), BATCH, "blend")
    [start] = [c for c in engine.record(BATCH).plc_commands if c.command == "start"]
    assert start.result == "rejected" and "guard door open" in (start.result_detail or "")
    assert gateway.values["state"] == "Idle"  # reset was sent, the start was not taken
    assert engine.get(BATCH).status is BatchStatus.RUNNING


async def test_a_plc_that_holds_by_itself_holds_the_batch_with_its_reason(
    engine: BatchEngine, driver: Driver, slow: FakeGateway
) -> None:
    async with blending(engine, driver):
        slow.advance(120)
        assert slow.values["state"] == "Execute"
        slow.hold_by_itself("product temperature high (42.0 °C)")
        await until(lambda: engine.get(BATCH).status is BatchStatus.HELD, "batch held")
    held = engine.get(BATCH)
    assert held.status is BatchStatus.HELD
    assert held.hold_reason == "the PLC is Held: product temperature high (42.0 °C)"


async def test_losing_the_plc_during_the_blend_holds_the_batch(
    engine: BatchEngine, driver: Driver, slow: FakeGateway
) -> None:
    async with blending(engine, driver):
        slow.lose("network cable pulled")
        await until(lambda: engine.get(BATCH).status is BatchStatus.HELD, "batch held")
    assert engine.get(BATCH).hold_reason == "communication with the PLC lost"
    [lost] = engine.deviations(BATCH)
    assert lost.kind is DeviationKind.PLC_LOST
    assert lost.description == (
        "communication with the PLC lost during the run: network cable pulled"
    )


async def test_a_signature_step_is_completed_by_the_signer_and_only_such_a_step(
    engine: BatchEngine, driver: Driver, people: People
) -> None:
    """The signing rule decides who completes a signature step (batch.step.sign): QA may
    complete one, but only one that names QA; production steps stay production's."""
    driver.start(BATCH)
    qa = people.login("qa1")
    with pytest.raises(PermissionDenied, match=r"batch\.step\.complete"):
        await engine.complete_step(qa, BATCH, "line-clearance", {"confirmed": True})
    await driver.run(BATCH, stop_after="sign-performed")
    record_training(people.auth, people.login("sup1"), "qa1", RECIPE_ID)
    assert engine.completion_permission(BATCH, "sign-verified") == "batch.step.sign"
    assert engine.completion_permission(BATCH, "discharge") == "batch.step.complete"
    qa = people.login("qa1")
    ref = engine.step_record(BATCH, "sign-verified", {})
    signature = people.sign(qa, ref, Meaning.VERIFIED)
    with pytest.raises(SignatureProblem, match="signed by the logged-in supervisor"):
        await engine.complete_step(qa, BATCH, "sign-verified", {}, signatures=[signature])
    assert engine.current_step(BATCH) is not None


async def test_a_quantity_typed_with_a_decimal_comma_is_the_number_recorded(
    engine: BatchEngine, driver: Driver, people: People
) -> None:
    """What the screen checks as it is typed is what the engine accepts: 0,90 is 0.90."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="charge-granulate")
    data = {"lot": "MG-2026-117", "quantity": "0,90"}
    session = driver.operator()
    ref = engine.step_record(BATCH, "charge-mgst", data)
    performed = people.sign(session, ref, Meaning.PERFORMED)
    verified = people.cosign(session, performed, "sup1", Meaning.VERIFIED)
    await engine.complete_step(
        session, BATCH, "charge-mgst", data, signatures=[performed, verified]
    )
    [quantity] = [
        v for v in engine.values(BATCH) if (v.name, v.step_id) == ("quantity", "charge-mgst")
    ]
    assert (quantity.value, quantity.in_limits) == ("0.90", True)
