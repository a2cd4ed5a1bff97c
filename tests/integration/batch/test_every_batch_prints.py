"""Every batch prints: batches of the shipped recipe driven through the engine with generated
disturbances (a parameter changed, an entered value corrected, a hold and resume, an alarm,
the PLC holding by itself, a restart of the terminal, an abort, an out-of-specification
result, QA's release or not), each on a fresh site against the in-memory PLC. For every one,
``hmi batch show`` prints the record, the PDF and its bundle are made and the bundle verifies,
and the site's whole trail verifies.

The examples are derived from a fixed seed (the suite must give the same result on every
run); each example is a complete batch of its own, so a failure names the script that broke
it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hmi.auth.roles import Meaning
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import BatchHeld, DeviationOpen, StepNotReady
from hmi.batch.model import BatchStatus, DeviationStatus
from hmi.batch.report import render_record
from hmi.clock import ManualClock
from hmi.demo_batches import supervising
from hmi.ebr.bundle import read_batch_bundle
from hmi.ebr.copies import BatchRecordCopies
from hmi.plc.fake import FakeGateway
from hmi.services import Services
from hmi.site import Site, init_site, open_site
from tests.integration.batch.support import (
    RECIPE_ID,
    STEP_IDS,
    Driver,
    People,
    auth_services,
    import_and_approve,
    kiosk_services,
    record_training,
    verify_chain,
)

BATCH = "B-2026-0777"
BLEND_S = 900.0


@dataclass(frozen=True)
class Script:
    """What happens during one batch, besides the steps themselves."""

    speed: str | None  # a supervisor's F4 change of blend_speed before "set-blend"
    correct_lot: bool  # the magnesium stearate lot corrected after its charge
    hold_at: str | None  # the operator holds here; a supervisor resumes
    alarm: bool  # a PLC alarm during the blend
    plc_holds: bool  # the PLC holds the blend by itself; a supervisor resumes
    restart_at: str | None  # the terminal restarts before this step (a new engine recovers)
    abort_at: str | None  # a supervisor aborts here: the batch ends aborted
    out_of_spec: bool  # a blend-uniformity result outside 90-110 %
    release: bool  # QA dispositions, reviews and releases a finished batch
    minutes: str | None = None  # a supervisor's F4 change of blend_time before "set-blend"
    quantity: str | None = None  # the magnesium stearate quantity corrected after its charge
    skip: str | None = None  # this step is skipped (the operator asks, a supervisor co-signs)
    override_wait: bool = False  # the lid sensor fails at "lid-interlock": step overridden


STEPS = st.sampled_from(STEP_IDS)
SCRIPTS = st.builds(
    Script,
    speed=st.sampled_from([None, "11", "13", "14.5"]),  # 14.5 is outside 10-14: co-signed
    correct_lot=st.booleans(),
    hold_at=st.none() | STEPS,
    alarm=st.booleans(),
    plc_holds=st.booleans(),
    restart_at=st.none() | STEPS,
    abort_at=st.none() | st.sampled_from(STEP_IDS[1:]),
    out_of_spec=st.booleans(),
    release=st.booleans(),
    minutes=st.sampled_from([None, "14.5", "17"]),  # 17 is outside 14-16: co-signed
    quantity=st.sampled_from([None, "0.91", "0.80"]),  # 0.80 is outside 0.882-0.918 kg
    # steps whose skipping leaves every later step possible
    skip=st.none() | st.sampled_from(["lid-interlock", "stopped", "bu-samples", "discharge"]),
    override_wait=st.booleans(),
)


@dataclass
class Kiosk:
    site: Site
    people: People
    plc: FakeGateway
    services: Services
    driver: Driver

    @property
    def engine(self) -> BatchEngine:
        return self.services.batches


@contextlib.contextmanager
def fresh_site(root: Path) -> Iterator[tuple[Site, People, Any]]:
    clock = ManualClock(datetime(2026, 3, 2, 7, 30, tzinfo=UTC))
    init_site(root / "site", clock=clock).close()
    site = open_site(root / "site", clock=clock)
    try:
        auth = auth_services(site)
        people = People.create(auth, clock)
        import_and_approve(site, auth, people)
        trainer = people.login("qa1")
        for user_id in ("op1", "sup1", "sup2"):
            record_training(auth, trainer, user_id, RECIPE_ID)
        auth.sessions.logout(trainer)
        yield site, people, auth
    finally:
        site.close()


async def settled(check: Any, what: str) -> None:
    """Let the monitor handle what the PLC published: turns of the event loop, no clock."""
    for _ in range(5000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{what}: not seen")


async def handled(kiosk: Kiosk) -> None:
    """Reasons for every open deviation, co-signatures where the policy asks."""
    await kiosk.driver.handle_deviations(BATCH, "EQUIPMENT", "cause found and put right")


async def resume(kiosk: Kiosk) -> None:
    await handled(kiosk)
    if kiosk.engine.get(BATCH).status is BatchStatus.HELD:
        await kiosk.engine.resume(
            kiosk.people.login("sup1"), BATCH, "checked at the blender, safe to go on"
        )


async def do_step(kiosk: Kiosk, script: Script, step_id: str) -> None:
    engine, driver, plc = kiosk.engine, kiosk.driver, kiosk.plc
    if script.skip == step_id:
        engine.request_skip(driver.operator(), BATCH, step_id, "PROCESS", "not needed today")
        await handled(kiosk)
        return
    if step_id == "lid-interlock" and script.override_wait:
        plc.report(lid_closed=False)  # the switch fails although the lid is closed
        engine.request_override(
            driver.operator(), BATCH, step_id, "EQUIPMENT", "lid switch faulty, lid checked"
        )
        await handled(kiosk)
        plc.report(lid_closed=True)  # the switch is mended before the blend
        return
    if step_id == "set-blend":
        for name, value in (("blend_speed", script.speed), ("blend_time", script.minutes)):
            if value is not None:
                await engine.change_parameter(
                    kiosk.people.login("sup1"), BATCH, name, value, "granulate coarser"
                )
                await handled(kiosk)
    if step_id == "blend":
        await engine.start_step(driver.operator(), BATCH, "blend")
        plc.advance(BLEND_S / 3)
        if script.alarm:
            plc.raise_alarm("MOTOR_CURRENT_HIGH", "motor current high", severity=500)
            await settled(lambda: engine.deviations(BATCH), "alarm deviation")
            plc.clear_alarm("MOTOR_CURRENT_HIGH")
            await handled(kiosk)
        if script.plc_holds:
            plc.hold_by_itself("product temperature high (41.0 °C)")
            await settled(lambda: engine.get(BATCH).status is BatchStatus.HELD, "PLC hold")
            await resume(kiosk)
        plc.advance(BLEND_S)
        await settled(lambda: plc.values["state"] == "Complete", "blend complete")
        await complete(kiosk, lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}))
        return
    if step_id == "bu-samples":
        top = "86.0" if script.out_of_spec else "99.4"
        results = {"TOP": top, "MIDDLE": "100.3", "BOTTOM": "98.8"}
        await complete(
            kiosk,
            lambda: engine.complete_step(driver.operator(), BATCH, step_id, {"results": results}),
        )
        await handled(kiosk)
        return
    await complete(kiosk, lambda: driver.step(BATCH, step_id))


async def complete(kiosk: Kiosk, action: Any) -> None:
    """Do a step; a deviation blocking it is handled first (the operator's reason, the
    supervisor's co-signature, a resume if it held the batch), then it is done again."""
    for _ in range(5):
        try:
            await action()
        except (DeviationOpen, StepNotReady, BatchHeld):
            await resume(kiosk)
            continue
        if kiosk.engine.get(BATCH).status is BatchStatus.HELD:
            await resume(kiosk)  # the step held the batch as it completed (a critical result)
        return
    await action()


async def run_script(kiosk: Kiosk, script: Script) -> None:
    engine, driver = kiosk.engine, kiosk.driver
    driver.start(BATCH)
    for step_id in STEP_IDS:
        if script.restart_at == step_id:
            kiosk.services = kiosk_services(kiosk.site, kiosk.people.auth, kiosk.plc)
            kiosk.driver = driver = Driver(kiosk.engine, kiosk.people, kiosk.plc)
            engine = kiosk.engine
            await engine.recover()
            await resume(kiosk)
        if script.abort_at == step_id:
            info = await engine.abort(
                kiosk.people.login("sup1"), BATCH, "EQUIPMENT", "granulate wet, batch abandoned"
            )
            assert info.status is BatchStatus.ABORTED
            return
        if script.hold_at == step_id:
            await engine.hold(driver.operator(), BATCH)
            await resume(kiosk)
        current = engine.current_step(BATCH)
        if current is None or current.step_id != step_id:
            continue  # completed by the engine itself (a wait step) meanwhile
        async with supervising(kiosk.services, kiosk.plc):
            await do_step(kiosk, script, step_id)
        if step_id == "charge-mgst" and script.skip != step_id:
            for name, old, new in (
                ("lot", "MG-2026-117", "MG-2026-118" if script.correct_lot else None),
                ("quantity", "0.90", script.quantity),
            ):
                if new is None:
                    continue
                [value] = [v for v in engine.values(BATCH) if v.name == name and v.value == old]
                engine.correct_value(
                    driver.operator(), BATCH, value.value_id, new, "read off the wrong bag"
                )
            await handled(kiosk)


def release(kiosk: Kiosk) -> None:
    driver, engine = kiosk.driver, kiosk.engine
    session = kiosk.people.login("qa1")
    for item in engine.deviations(BATCH):
        if item.disposition is None and item.status is not DeviationStatus.OPEN:
            driver.disposition(session, item.deviation_id, "accepted", "assessed: no impact")
    ref = engine.batch_record_ref(BATCH)
    review = kiosk.people.sign(session, ref, Meaning.AUDIT_TRAIL_REVIEWED)
    engine.review_audit_trail(session, BATCH, review)
    engine.release(session, BATCH, kiosk.people.sign(session, ref, Meaning.RELEASED))


@settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=SCRIPTS)
# Found by this test: a parameter change outside the limits, once co-signed and written,
# marked its deviation done in a transaction without an event about the deviation, so the
# batch's record no longer matched its trail and could not be printed.
@example(script=Script("14.5", False, None, False, False, None, None, False, True))
@example(script=Script(None, True, None, False, False, None, None, False, True, "17", "0.80"))
def test_every_generated_batch_prints_and_verifies(tmp_path_factory: Any, script: Script) -> None:
    root = tmp_path_factory.mktemp("batch")
    asyncio.run(_check(root, script))


async def _check(root: Path, script: Script) -> None:
    with fresh_site(root) as (site, people, auth):
        plc = FakeGateway()
        await plc.connect()
        services = kiosk_services(site, auth, plc)
        kiosk = Kiosk(site, people, plc, services, Driver(services.batches, people, plc))
        await run_script(kiosk, script)
        engine = kiosk.engine
        info = engine.get(BATCH)
        assert info.status in (BatchStatus.AWAITING_REVIEW, BatchStatus.ABORTED), info.status
        if script.release and info.status is BatchStatus.AWAITING_REVIEW:
            release(kiosk)
            assert engine.get(BATCH).status is BatchStatus.RELEASED
        record = engine.record(BATCH)
        lines = render_record(record)
        assert lines[0].startswith(f"Batch {BATCH}")
        if script.correct_lot and script.abort_at not in STEP_IDS[:3]:
            assert any("MG-2026-118" in line for line in lines)
        copies = BatchRecordCopies.for_site(site, engine)
        made = copies.report_for(people.login("qa1"), BATCH, root / "record.pdf")
        assert made.pdf is not None and made.pdf.read_bytes().startswith(b"%PDF")
        assert made.pages and made.pages > 0
        bundle = read_batch_bundle(made.bundle, workers=1)
        assert bundle.ok, [p.message for p in bundle.report.problems[:5]]
        assert bundle.record is not None and bundle.record.header.batch_id == BATCH
        assert verify_chain(site).ok
        await plc.disconnect()
