"""The HMI process killed with SIGKILL at several points, then restarted: the batch continues
at the right step, nothing acknowledged is lost, nothing is done twice, the chain verifies."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlalchemy import select as sql_select

from hmi.audit.tables import audit_event
from hmi.batch.model import BatchStatus, StepStatus
from hmi.batch.tables import batch_step, plc_command
from hmi.clock import from_utc_text
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.integration.batch.support import (
    REPO_ROOT,
    STEP_IDS,
    People,
    audit_actions,
    verify_chain,
)

DRIVER = Path(__file__).with_name("crash_driver.py")
BATCH = "B-2026-0400"


class Kiosk:
    """One HMI process running the driver; read its acknowledgements, kill it."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), *args],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.acked: list[str] = []

    def read_until(self, marker: str | None, timeout: float = 60.0) -> None:
        """Collect ACK lines until ``marker`` (or the end of the process)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                return
            if line.startswith("ACK "):
                self.acked.append(line[4:].strip())
                if marker is not None and self.acked[-1] == marker:
                    return
        self.proc.kill()
        raise AssertionError(f"no {marker!r} within {timeout} s; acked {self.acked}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout: float = 60.0) -> int:
        self.read_until("done", timeout)
        code = self.proc.wait(timeout)
        if code != 0:
            assert self.proc.stderr is not None
            raise AssertionError(f"kiosk exited {code}: {self.proc.stderr.read()[-3000:]}")
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def next_clock(site: Site) -> str:
    """A start time after every recorded event (the chain's timestamps never go backwards)."""
    with site.engine.connect() as conn:
        last = conn.execute(sql_select(func.max(audit_event.c.ts))).scalar()
    return (from_utc_text(str(last)) + timedelta(seconds=1)).isoformat()


@pytest.mark.parametrize(
    ("kill_at", "die_after_plc"),
    [
        ("started step charge-granulate", None),
        ("started step blend", None),
        (None, "start"),
        (None, "discharge"),
    ],
    ids=[
        "after-tare",
        "during-blend",
        "between-start-and-its-result",
        "between-discharge-and-its-result",
    ],
)
def test_kiosk_killed_and_restarted_continues_the_batch(
    site: Site,
    people: People,
    recipes: RecipeService,
    sim: Any,
    plc_client: Any,
    tmp_path: Path,
    kill_at: str | None,
    die_after_plc: str | None,
) -> None:
    people_file = tmp_path / "people.json"
    people.dump(people_file)
    base = [str(site.data_dir), str(people_file), str(plc_client.root), sim.endpoint, BATCH]
    first = Kiosk([*base, "--clock", next_clock(site), "--start"]
                  + (["--die-after-plc", die_after_plc] if die_after_plc else []))  # fmt: skip
    try:
        if kill_at is not None:
            first.read_until(kill_at)
            first.kill()
        else:
            first.read_until(None)
            assert first.proc.wait(30) == -signal.SIGKILL
    finally:
        first.close()
    acknowledged = [a.removeprefix("completed step ") for a in first.acked
                    if a.startswith("completed step ")]  # fmt: skip
    second = Kiosk([*base, "--clock", next_clock(site), "--recover"])
    try:
        second.finish()
    finally:
        second.close()
    assert second.acked[0] == f"recovered {BATCH}" and second.acked[-1] == "done"
    with site.engine.connect() as conn:
        steps = conn.execute(
            sql_select(batch_step.c.step_index, batch_step.c.step_id, batch_step.c.status).where(
                batch_step.c.batch_id == BATCH
            )
        ).all()
        commands = conn.execute(
            sql_select(plc_command.c.command, plc_command.c.result).where(
                plc_command.c.batch_id == BATCH
            )
        ).all()
    assert sorted(s[1] for s in steps) == sorted(STEP_IDS)  # every step exactly once
    assert all(s[2] == StepStatus.COMPLETED.value for s in steps)
    completed_second = [a.removeprefix("completed step ") for a in second.acked
                        if a.startswith("completed step ")]  # fmt: skip
    assert not set(acknowledged) & set(completed_second), "a step was done twice"
    assert acknowledged + completed_second == list(STEP_IDS)
    starts = Counter(result for command, result in commands if command == "start")
    assert sum(starts.values()) == 1, f"the blend was started more than once: {starts}"
    discharges = Counter(result for command, result in commands if command == "discharge")
    assert sum(discharges.values()) == 1, f"discharged more than once: {discharges}"
    if die_after_plc:
        # the PLC's state shows the command was done: Execute for Start, an empty bin (the PLC
        # closed the valve again) for Discharge
        assert Counter(r for c, r in commands if c == die_after_plc) == {"confirmed_on_recovery": 1}
    assert all(result is not None for _c, result in commands)
    actions = [a for a, _e, _r in audit_actions(site, "batch.")]
    assert actions.count("batch.recovered") == 1 and actions.count("batch.completed") == 1
    report = verify_chain(site)
    assert report.ok, report.problems
    from hmi.batch.tables import batch as batch_table

    with site.engine.connect() as conn:
        final = conn.execute(
            sql_select(batch_table.c.status).where(batch_table.c.batch_id == BATCH)
        ).scalar()
    assert final == BatchStatus.AWAITING_REVIEW.value
