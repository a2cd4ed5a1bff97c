"""A batch with deviations of several kinds, a corrected value and a co-signature, driven
through the real batch engine against the simulator."""

from __future__ import annotations

from dataclasses import dataclass

from hmi.alarms.service import AlarmService
from hmi.auth.roles import Meaning
from hmi.batch.engine import BatchEngine
from tests.integration.batch.support import Driver, monitoring

SKIP_REASON = "line cleared under change control CC-12 – Ø-check by Zoë"
OOT_REASON = "container held 0.80 kg only; QA informed (Łódź warehouse)"
CORRECTION_REASON = "typo in the lot number: the label reads MG-2026-118"
ALARM_REASON = "load cell drift alarm; scale re-zeroed, weighings repeated"


@dataclass(frozen=True)
class Made:
    batch_id: str
    lot_value_id: int
    corrected_value_id: int


async def batch_with_deviations(
    driver: Driver,
    engine: BatchEngine,
    batch_id: str,
    *,
    alarms: AlarmService | None = None,
    release: bool = True,
) -> Made:
    """Skip (co-signed), an out-of-tolerance charge with its reason, an alarm during a step
    (acknowledged, with its deviation's reason), a corrected lot number, the rest of the
    recipe, then (optionally) QA disposition, review and release."""
    driver.start(batch_id)
    session = driver.operator()
    skip = engine.request_skip(session, batch_id, "line-clearance", "PLANNED", SKIP_REASON)
    ref = engine.deviation_record(skip.deviation_id)
    request = driver.people.sign(session, ref, Meaning.REQUESTED)
    cosigned = driver.people.cosign(session, request, "sup1", Meaning.COSIGNED)
    await engine.cosign_deviation(session, skip.deviation_id, request, cosigned)
    with monitoring(engine):
        await driver.step(batch_id, "charge-granulate")
        data = {"lot": "MG-2026-117", "quantity": "0.80"}
        session = driver.operator()
        ref = engine.step_record(batch_id, "charge-mgst", data)
        performed = driver.people.sign(session, ref, Meaning.PERFORMED)
        verified = driver.people.cosign(session, performed, "sup1", Meaning.VERIFIED)
        await engine.complete_step(
            session, batch_id, "charge-mgst", data, signatures=[performed, verified]
        )
        [oot] = [d for d in engine.deviations(batch_id) if d.kind.value == "out_of_tolerance"]
        engine.give_reason(session, oot.deviation_id, "MATERIAL", OOT_REASON)
        if alarms is not None:
            raised = alarms.raise_alarm("LOADCELL_DRIFT", "load cell drift detected", 500)
            alarms.acknowledge(session, raised.alarm_id, "seen at the kiosk")
            alarms.clear_alarm("LOADCELL_DRIFT")
            for item in engine.deviations(batch_id):
                if item.kind.value == "alarm" and item.reason_text is None:
                    engine.give_reason(session, item.deviation_id, "EQUIPMENT", ALARM_REASON)
        lot = next(
            v for v in engine.values(batch_id) if v.step_id == "charge-mgst" and v.name == "lot"
        )
        driver.people.clock.advance(40 * 60)  # corrected 40 min later: a late entry as well
        corrected = engine.correct_value(
            driver.operator(), batch_id, lot.value_id, "MG-2026-118", CORRECTION_REASON
        )
        await driver.run(batch_id)
    if release:
        driver.qa_release(batch_id)
    return Made(batch_id, lot.value_id, corrected.value_id)
