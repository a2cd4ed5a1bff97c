"""``hmi demo batches``: a new demo site with complete batches of the shipped recipes, run by the
real command through the batch engine and the bundled simulator (a child process on a free
loopback port), as a trainee, a QA reviewer or an inspector would get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hmi.audit.tables import audit_event
from hmi.db import make_engine

HMI = str(Path(sys.executable).with_name("hmi"))


def hmi(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HMI, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("demo") / "site"
    made = hmi("demo", "batches", "--data", str(data), "--count", "4", "--seed", "3")
    assert made.returncode == 0, made.stderr
    return data, made.stdout


def test_the_batches_are_made_and_each_recipe_runs(generated: tuple[Path, str]) -> None:
    data, out = generated
    lines = [line for line in out.splitlines() if line.startswith("  DEMO-")]
    assert len(lines) == 4
    for recipe in ("CLV-BLENDER-01", "IBU200-PB", "PARA500-FB"):
        assert any(recipe in line for line in lines), out
    listed = hmi("batch", "list", "--data", str(data))
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 4
    assert "released" in listed.stdout
    assert f"Open the site with: hmi demo --data {data}" in out
    accounts = json.loads((data / "demo-accounts.json").read_text())
    assert {a["role"] for a in accounts} >= {"operator", "supervisor", "qa"}


def test_the_generated_site_verifies_and_says_its_history_is_simulated(
    generated: tuple[Path, str],
) -> None:
    data, _out = generated
    verified = hmi("audit", "verify", "--data", str(data))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "INTACT" in verified.stdout
    engine = make_engine(f"sqlite:///{data / 'hmi.db'}")
    try:
        with engine.connect() as conn:
            rows = (
                conn.execute(
                    audit_event.select().where(audit_event.c.action == "demo.batches.generated")
                )
                .mappings()
                .all()
            )
            last_ts = max(r.ts for r in conn.execute(audit_event.select()))
    finally:
        engine.dispose()
    [event] = rows
    details = json.loads(event["details"])
    assert details["count"] == 4 and details["seed"] == 3 and len(details["batches"]) == 4
    assert details["simulated_from"] < details["simulated_to"]
    from hmi.clock import SystemClock, to_utc_text

    assert last_ts < to_utc_text(SystemClock().now())  # the kiosk goes on from there


def test_every_generated_batch_prints(generated: tuple[Path, str], tmp_path: Path) -> None:
    data, out = generated
    for line in out.splitlines():
        if not line.startswith("  DEMO-"):
            continue
        batch_id = line.split()[0]
        shown = hmi("batch", "show", batch_id, "--data", str(data))
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"Batch {batch_id}")


def test_a_site_that_exists_is_refused_and_left_alone(tmp_path: Path) -> None:
    data = tmp_path / "site"
    data.mkdir()
    (data / "notes.txt").write_text("mine\n")
    refused = hmi("demo", "batches", "--data", str(data), "--count", "1")
    assert refused.returncode == 2
    assert "is not empty: give a new directory" in refused.stderr
    assert sorted(p.name for p in data.iterdir()) == ["notes.txt"]
