"""Batch record copies benchmark: PDF and bundle generation for a batch with 50 steps and
2,000 audit events, and bundle verification compared with ``hmi audit verify``.

    python bench/report_bench.py [--steps 50] [--events 2000] [--repeat 5] [--json]

A site is created in a temporary directory with real keys and accounts; a 50-step recipe
(check and sample steps, so no PLC is needed) is imported, approved and executed through the
batch engine; entered sample results are then corrected (each correction a real engine call
with its audit event) until 2,000 audit events concern the batch. Timed, median of
``--repeat`` runs:

- assemble: the record, its chain segment and its checks, from the database;
- bundle: assemble + write the signed bundle (``hmi batch export``);
- pdf: bundle + read it back verified + print the PDF from it (``hmi batch report``);
- verify bundle: the command ``hmi audit verify --bundle FILE`` against ``hmi audit verify``
  on the site holding the same events, whole processes, as a ratio (target <= 1.2); and the
  same work in one process: ``verify_bundle_file`` (every check of the audit bundle and of
  the batch record lines) against ``verify_database``, and ``read_batch_bundle``, which
  verifies and puts the record together for printing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

from hmi.audit.bundle import read_bundle
from hmi.audit.chain import Actor
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.store import check_business_rows, trusted_keys, verify_database
from hmi.audit.tables import audit_event
from hmi.audit.verify import VerifyReport
from hmi.batch.engine import BatchEngine
from hmi.clock import ManualClock
from hmi.ebr.bundle import read_batch_bundle, verify_bundle_file
from hmi.ebr.copies import BatchRecordCopies
from hmi.site import Site, init_site, open_site
from tests.integration.batch.support import (
    People,
    auth_services,
    kiosk_services,
    record_training,
)

RECIPE_ID = "BENCH-50"
BATCH = "B-BENCH-0001"


def recipe_text(steps: int) -> str:
    parts = [
        'format = 1\nid = "BENCH-50"\nname = "Benchmark blend"\nproduct = "Benchmark product"\n'
        'version = 1\ndescription = "Many checks and samples."\n'
    ]
    for n in range(steps):
        if n % 2 == 0:
            parts.append(
                f'\n[[steps]]\nid = "check-{n}"\nkind = "check"\ntitle = "Check {n}"\n'
                f'text = "Check number {n} is done as the SOP says."\n'
            )
        else:
            parts.append(
                f'\n[[steps]]\nid = "sample-{n}"\nkind = "sample"\ntitle = "Sample {n}"\n'
                'sample_ids = ["A", "B", "C"]\nresult = "Assay (% of label claim)"\n'
                'unit = "%"\nlow = 90.0\nhigh = 110.0\n'
            )
    return "".join(parts)


def related_events(site: Site) -> int:
    t = audit_event.c
    with site.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(t.entity_type == "batch", t.entity_id == BATCH)
            ).scalar_one()
        )


async def build(site: Site, steps: int, events: int) -> BatchEngine:
    clock = site.clock
    auth = auth_services(site)
    people = People.create(auth, clock)
    services = kiosk_services(site, auth)
    recipes = services.recipes
    importer = people.login("sup1")
    recipes.import_text(importer, recipe_text(steps), "bench.toml")
    qa = people["qa1"]
    session = people.login(qa)
    for user in ("op1", "sup1"):
        record_training(auth, session, user, RECIPE_ID)
    recipes.approve(
        session, RECIPE_ID, 1, password=qa.password, user_id=qa.user_id,
        totp=people.code(qa), accept_statement=True,
    )  # fmt: skip
    engine = services.batches
    operator = people.login("op1")
    engine.start_batch(operator, RECIPE_ID, 1, BATCH)
    for n in range(steps):
        if n % 2 == 0:
            await engine.complete_step(operator, BATCH, f"check-{n}", {"confirmed": True})
        else:
            results = {"A": "99.1", "B": "100.4", "C": "98.7"}
            await engine.complete_step(operator, BATCH, f"sample-{n}", {"results": results})
    current = {v.value_id: v for v in engine.values(BATCH) if v.source == "entered"}
    step = 0
    while related_events(site) < events:
        latest = [v for v in current.values() if v.replaced_by is None]
        target = latest[step % len(latest)]
        value = f"{99 + (step % 10) / 10:.1f}"
        fixed = engine.correct_value(
            operator, BATCH, target.value_id, value, f"transcription check {step}: re-read"
        )
        current.pop(target.value_id)
        current[fixed.value_id] = fixed
        step += 1
        if step % 200 == 0:
            clock.advance(60)
    return engine


_CLI = "import sys; from hmi import cli; sys.exit(cli.main(sys.argv[1:]))"


def _cli(*argv: str) -> None:
    """One ``hmi`` command in a fresh process (start-up included), as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-c", _CLI, *argv], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"hmi {' '.join(argv)} failed: {done.stdout}{done.stderr}")


def timed(action: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times = []
    result = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="report-bench-"))
    clock = ManualClock(datetime(2026, 3, 2, 7, 30, tzinfo=UTC))
    init_site(base / "site", terminal_id="KIOSK-01", site_name="Bench", clock=clock).close()
    site = open_site(base / "site", clock=clock)
    started = time.perf_counter()
    engine = asyncio.run(build(site, args.steps, args.events))
    setup_s = time.perf_counter() - started
    copies = BatchRecordCopies(
        engine, site="Bench", line="Line 1", witness=WitnessFile(site.settings.witness_path)
    )
    actor = Actor("qa1", "qa")
    out = base / "out"
    assemble_s, assembled = timed(lambda: copies.assemble(BATCH, generated_by="qa1"), args.repeat)
    bundle_s, exported = timed(
        lambda: copies.export(BATCH, out / "b.jsonl", actor=actor, generated_by="qa1"), args.repeat
    )
    pdf_s, printed = timed(
        lambda: copies.report(BATCH, out / "r.pdf", actor=actor, generated_by="qa1"), args.repeat
    )
    trusted = trusted_keys([site.settings.public_key_path])
    witness = WitnessFile(site.settings.witness_path)
    # Interleaved, so a passing load on the machine hits both sides alike; medians.
    bundle_file = out / "b.jsonl"
    runs: dict[str, list[float]] = {"db": [], "verify": [], "read": [], "reader": [], "rows": []}
    for _ in range(args.repeat):
        for name, action in (
            ("db", lambda: verify_database(site.engine, trusted=trusted, witness=witness)),
            ("rows", lambda: check_business_rows(site.engine, VerifyReport())),
            ("verify", lambda: verify_bundle_file(bundle_file)),
            ("read", lambda: read_batch_bundle(bundle_file)),
            ("reader", lambda: read_bundle(bundle_file)),
        ):
            took, outcome = timed(action, 1)
            runs[name].append(took)
            if name == "db":
                db_report = outcome
            elif name == "read":
                read = outcome
            elif name == "verify":
                verify_report = outcome[0]
    verify_db_s, verify_bundle_s, read_record_s, reader_s, rows_s = (
        statistics.median(runs[name]) for name in ("db", "verify", "read", "reader", "rows")
    )
    assert read.ok and db_report.ok and verify_report.ok
    cli_bundle_s, _ = timed(
        lambda: _cli("audit", "verify", "--bundle", str(bundle_file)), args.repeat
    )
    cli_db_s, _ = timed(lambda: _cli("audit", "verify", "--data", str(site.data_dir)), args.repeat)
    result = {
        "steps": args.steps,
        "related_events": len(assembled.record.events),
        "bundle_events": len(assembled.context.rows),
        "database_events": db_report.rows_checked,
        "pdf_pages": printed.pages,
        "bundle_bytes": (out / "b.jsonl").stat().st_size,
        "setup_s": round(setup_s, 2),
        "assemble_s": round(assemble_s, 3),
        "bundle_s": round(bundle_s, 3),
        "pdf_s": round(pdf_s, 3),
        "verify_bundle_s": round(verify_bundle_s, 3),
        "read_batch_bundle_s": round(read_record_s, 3),
        "verify_database_s": round(verify_db_s, 3),
        "audit_bundle_reader_s": round(reader_s, 3),
        "verify_ratio": round(verify_bundle_s / verify_db_s, 2),
        "cli_verify_bundle_s": round(cli_bundle_s, 3),
        "cli_audit_verify_s": round(cli_db_s, 3),
        "cli_verify_ratio": round(cli_bundle_s / cli_db_s, 2),
        "row_cross_check_s": round(rows_s, 3),
        "row_cross_check_share_of_cli_verify": round(rows_s / cli_db_s, 3),
        "verify_ratio_per_event": round(
            (verify_bundle_s / verify_report.rows_checked) / (verify_db_s / db_report.rows_checked),
            2,
        ),
    }
    site.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"batch {BATCH}: {args.steps} steps, {result['related_events']} audit events about it,"
          f" {result['bundle_events']} in the bundle's chain segment, {result['database_events']}"
          " in the database")  # fmt: skip
    print(f"  set-up (engine calls):       {setup_s:7.2f} s")
    print(f"  assemble record:             {assemble_s:7.3f} s")
    print(f"  bundle (export):             {bundle_s:7.3f} s  ({result['bundle_bytes']} bytes)")
    print(f"  PDF (export+verify+print):   {pdf_s:7.3f} s  ({printed.pages} pages)")
    print(f"  verify bundle (hmi audit verify --bundle, all checks): {verify_bundle_s:7.3f} s")
    print(f"  verify + record put together for printing:  {read_record_s:7.3f} s"
          f" = {read_record_s / verify_db_s:.2f}x")  # fmt: skip
    print(f"  hmi audit verify (database): {verify_db_s:7.3f} s")
    print(f"  of which the audit bundle reader (hmi.audit.bundle.read_bundle): {reader_s:.3f} s"
          f" = {reader_s / verify_db_s:.2f}x")  # fmt: skip
    print(
        f"  in-process ratio bundle/database: {result['verify_ratio']:5.2f}"
        " (the bundle also cross-checks every record line against its audit event)"
    )
    print(f"  in-process ratio per event checked: {result['verify_ratio_per_event']:5.2f}")
    print(f"  command line, whole process: hmi audit verify --bundle {cli_bundle_s:.2f} s,"
          " hmi audit verify"
          f" {cli_db_s:.2f} s, ratio {result['cli_verify_ratio']:.2f} (target <= 1.2)")  # fmt: skip
    print(f"  business-row cross-check (inside hmi audit verify): {rows_s:.3f} s ="
          f" {rows_s / (cli_db_s - rows_s) * 100:.1f} % added to the command's wall time"
          " (target <= 15 %)")  # fmt: skip
    _ = exported


if __name__ == "__main__":
    main()
