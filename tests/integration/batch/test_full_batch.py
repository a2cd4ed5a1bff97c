"""A complete batch of the shipped recipe against the simulator, released by QA."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from hmi.batch.engine import BatchEngine
from hmi.batch.model import BatchStatus, StepStatus
from hmi.batch.tables import batch_step
from hmi.cli import main
from hmi.site import Site
from tests.integration.batch.support import STEP_IDS, Driver, monitoring, verify_chain


async def test_full_batch_released_without_deviation(
    site: Site,
    engine: BatchEngine,
    driver: Driver,
    gateway: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acked: list[str] = []
    driver.ack = acked.append
    driver.start("B-2026-0001")
    with monitoring(engine):
        await driver.run("B-2026-0001")
    info = engine.get("B-2026-0001")
    assert info.status is BatchStatus.AWAITING_REVIEW
    assert engine.deviations("B-2026-0001") == []
    driver.qa_release("B-2026-0001")
    record = engine.record("B-2026-0001")
    assert record.info.status is BatchStatus.RELEASED
    assert [s.step_id for s in record.steps] == list(STEP_IDS)
    assert all(s.status is StepStatus.COMPLETED for s in record.steps)
    values = {(v.step_id, v.name): v for v in record.values}
    speed = values[("set-blend", "blend_speed")]
    assert (speed.value, speed.unit, speed.source) == ("12.0", "rpm", "plc")
    assert values[("set-blend", "blend_time")].value == "900.0"
    quantity = values[("charge-granulate", "quantity")]
    assert quantity.in_limits is True and quantity.source == "computed"
    assert values[("blend", "elapsed_time")].source == "plc"
    assert float(values[("blend", "elapsed_time")].value) >= 900
    meanings = [s.meaning.value for s in record.signatures]
    assert meanings.count("verified") == 3 and "released" in meanings
    assert "audit_trail_reviewed" in meanings
    commands = [c.command for c in record.plc_commands]
    assert commands[:2] == ["write", "write"] and "start" in commands
    assert all(c.result == "ok" for c in record.plc_commands)
    with site.engine.connect() as conn:
        rows = conn.execute(
            select(func.count())
            .select_from(batch_step)
            .where(batch_step.c.batch_id == "B-2026-0001")
        ).scalar()
    assert rows == len(STEP_IDS)
    report = verify_chain(site)
    assert report.ok, report.problems
    assert acked[0] == "started B-2026-0001" and acked[-1] == "completed step sign-verified"
    capsys.readouterr()
    assert main(["batch", "list", "--data", str(site.data_dir)]) == 0
    listing = capsys.readouterr().out
    assert "B-2026-0001" in listing and "released" in listing and "PARA500-FB v4" in listing
    assert main(["batch", "show", "b-2026-0001", "--data", str(site.data_dir)]) == 0
    shown = capsys.readouterr().out
    assert "Batch B-2026-0001 - Paracetamol 500 mg final blend" in shown
    assert "12. Supervisor verification [completed] by sup1" in shown
    assert "Olga Operator (op1) - Performed" in shown
    assert "Sam Supervisor (sup1) - Verified" in shown
    assert "Quinn Quality (qa1) - Released" in shown and "(UTC 2026-" in shown
    assert "Deviations (0)" in shown and "CHANGED AFTER FIRST ENTRY" not in shown
    assert main(["batch", "show", "NOPE-1", "--data", str(site.data_dir)]) == 2
