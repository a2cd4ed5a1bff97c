"""Crash campaign: a kiosk process killed with SIGKILL at many points of a whole batch, then
restarted until the batch is done; and the time from a PLC loss to the batch held.

    python bench/crash_campaign.py [--random 3] [--seed 11] [--only NAME] [--json]

Each run copies a prepared site (accounts, the shipped recipe approved, people trained), powers
the bundled simulator up afresh (in this process, time scale 300, secure session) and runs
``tests/integration/batch/crash_driver.py`` against it, killing it:

- after each acknowledged step (and once the blend has started);
- right after the PLC accepted Reset, Start, Discharge and each setpoint write, before the
  result is recorded (the window where the outcome is unknown);
- inside the N-th audit transaction, before its commit (mid-transaction);
- with a command's intent committed, before and after the journal's "sending" line (the PLC
  never receives it);
- after a random delay (``--random`` runs, seeded);
- twice: killed again while recovering.

Then it restarts the kiosk with ``--recover`` until the batch is done, and checks:

- **lost events**: a step the killed kiosk acknowledged as completed that the record does not
  hold as completed (and the chain must verify);
- **repeated effects**: the simulator's own log of accepted commands: Start, Discharge and
  Reset accepted more often than the batch needs;
- **wrong reconciliations**: a command recorded as effective (``ok`` /
  ``confirmed_on_recovery``) more or fewer times than the PLC accepted it; a write recorded
  ``confirmed_on_recovery`` that the journal never shows as sent; a step done twice.

Last, PLC loss during a blend: the heartbeat frozen (the PLC hangs, the socket stays open)
and the server stopped (the socket closes): time from the fault to the batch held, printed as
a ratio to the configured heartbeat timeout (the time the product is allowed to wait before it
may call the PLC lost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hmi.batch.journal import JOURNAL_FILE, CommandJournal
from hmi.batch.model import BatchStatus, StepStatus
from hmi.clock import ManualClock, from_utc_text
from hmi.plc import describe_certificate, ensure_client_certificate, trust_server_certificate
from hmi.site import init_site, open_site
from plc_sim.model import Fault
from plc_sim.server import SimulatorConfig, SimulatorThread
from tests.integration.batch.support import (
    RECIPE_ID,
    STEP_IDS,
    Driver,
    People,
    auth_services,
    gateway_for,
    import_and_approve,
    kiosk_services,
    record_training,
    verify_chain,
)

PASSWORD = "campaign-plc-password"
#: The summary's counts that must all be 0.
FAILURES = (
    "lost_events",
    "steps_done_twice",
    "repeated_effects",
    "wrong_reconciliations",
    "not_intact",
    "not_awaiting_review",
)
#: The methods the HMI itself calls (the driver calls Charge and the lid methods for the
#: operator's hands; writes are checked against the journal).
HMI_COMMANDS = ("reset", "start", "hold", "unhold", "stop", "abort", "clear", "discharge")
BATCH = "B-2026-0990"
DRIVER = Path(__file__).resolve().parents[1] / "tests" / "integration" / "batch" / "crash_driver.py"
REPO = Path(__file__).resolve().parents[1]


class Accepted(logging.Handler):
    """The simulator's log of what it accepted ("Start accepted", "write to X accepted")."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.endswith(" accepted"):
            self.seen[message.removesuffix(" accepted").lower()] += 1
        elif message.startswith("write to ") and " accepted: " in message:
            self.seen["write " + message.split()[2]] += 1


@dataclass
class Kill:
    name: str
    first: list[str]  # driver options of the killed run
    at_ack: str | None = None  # killed from outside after this acknowledgement
    after_s: float | None = None  # killed from outside after this delay
    recovery: list[str] = field(default_factory=list)  # options of a recovery killed again
    recovery_ack: str | None = None


def kill_points(rng: random.Random, randoms: int) -> list[Kill]:
    points = [
        Kill(f"after-step:{step}", [], at_ack=f"completed step {step}") for step in STEP_IDS[:-1]
    ]
    points.append(Kill("blend-started", [], at_ack="started step blend"))
    for command in (
        "reset",
        "start",
        "discharge",
        "write:speed_setpoint",
        "write:blend_time_setpoint",
    ):
        points.append(Kill(f"plc-accepted:{command}", ["--die-after-plc", command]))
    for n in (5, 15, 25, 35):
        points.append(Kill(f"mid-transaction:{n}", ["--die-in-transaction", str(n)]))
    for command in ("start", "write"):
        points.append(Kill(f"before-journal:{command}", ["--die-before-journal", command]))
        points.append(Kill(f"after-journal:{command}", ["--die-after-journal", command]))
    for i in range(randoms):
        points.append(Kill(f"random:{i + 1}", [], after_s=round(rng.uniform(0.8, 4.0), 2)))
    points.append(
        Kill(
            "double:blend+recovery-transaction",
            [],
            at_ack="started step blend",
            recovery=["--die-in-transaction", "2"],
        )
    )
    points.append(
        Kill(
            "double:start-accepted+recovered",
            ["--die-after-plc", "start"],
            recovery=[],
            recovery_ack=f"recovered {BATCH}",
        )
    )
    return points


class Kiosk:
    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, str(DRIVER), *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.acked: list[str] = []

    def run(
        self, marker: str | None = None, after_s: float | None = None, limit: float = 180
    ) -> str:
        """Read acknowledgements until ``marker`` or ``after_s`` (then SIGKILL) or the end."""
        assert self.proc.stdout is not None
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if after_s is not None and time.monotonic() - start >= after_s:
                self.proc.send_signal(signal.SIGKILL)
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("ACK "):
                self.acked.append(line[4:].strip())
                if marker is not None and self.acked[-1] == marker:
                    self.proc.send_signal(signal.SIGKILL)
                    break
        else:
            self.proc.kill()
        code = self.proc.wait(30)
        assert self.proc.stderr is not None
        err = self.proc.stderr.read()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        if code == -signal.SIGKILL:
            return "killed"
        if code == 0 and self.acked and self.acked[-1] == "done":
            return "done"
        raise RuntimeError(f"kiosk exited {code}: {err[-2000:]}")

    def completed(self) -> list[str]:
        return [
            a.removeprefix("completed step ") for a in self.acked if a.startswith("completed step ")
        ]


def next_clock(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        last = conn.execute("SELECT max(ts) FROM audit_event").fetchone()[0]
    finally:
        conn.close()
    return (from_utc_text(str(last)) + timedelta(seconds=1)).isoformat()


def prepare(root: Path) -> tuple[Path, Path, Path]:
    """The client's certificate and password, and a template site with its people file."""
    client = root / "client"
    ensure_client_certificate(
        client / "plc" / "pki" / "own" / "client-cert.der",
        client / "plc" / "pki" / "own" / "client-key.pem",
        "urn:line-hmi:hmi",
    )
    (client / "plc" / "password").write_text(PASSWORD + "\n")
    clock = ManualClock(datetime.now(UTC) - timedelta(hours=2))
    template = root / "template"
    init_site(template, terminal_id="KIOSK-01", site_name="Campaign Site", clock=clock).close()
    site = open_site(template, clock=clock)
    auth = auth_services(site)
    people = People.create(auth, clock)
    import_and_approve(site, auth, people)
    trainer = people.login("qa1")
    for user in ("op1", "sup1", "sup2"):
        record_training(auth, trainer, user, RECIPE_ID)
    auth.sessions.logout(trainer)
    site.close()
    people_file = root / "people.json"
    people.dump(people_file)
    return client, template, people_file


def check(site_dir: Path, acked: list[str], accepted: Counter[str]) -> dict[str, Any]:
    site = open_site(site_dir)
    try:
        with site.engine.connect() as conn:
            steps = conn.exec_driver_sql(
                "SELECT step_id, status FROM batch_step WHERE batch_id = ?", (BATCH,)
            ).all()
            commands = conn.exec_driver_sql(
                "SELECT id, command, arguments, result FROM plc_command WHERE batch_id = ?",
                (BATCH,),
            ).all()
            status = conn.exec_driver_sql(
                "SELECT status FROM batch WHERE batch_id = ?", (BATCH,)
            ).scalar()
        intact = verify_chain(site).ok
    finally:
        site.close()
    completed = Counter(s for s, st in steps if st == StepStatus.COMPLETED.value)
    lost = [s for s in acked if completed[s] == 0]
    twice = [s for s, n in completed.items() if n > 1] + [
        s for s, n in Counter(acked).items() if n > 1
    ]
    journal = CommandJournal(site_dir / JOURNAL_FILE).read()
    effective: Counter[str] = Counter()
    wrong: list[str] = []
    for command_id, command, arguments, result in commands:
        key = command
        if command == "write":
            key = "write " + json.loads(arguments)["tag"]
            known = journal.get(int(command_id))
            if result == "confirmed_on_recovery" and (known is None or not known.sent):
                wrong.append(f"write {command_id} confirmed but never sent")
        if result in ("ok", "confirmed_on_recovery"):
            effective[key] += 1
    for key in sorted(HMI_COMMANDS):  # the driver's Charge and lid calls are the operator's
        if effective[key] != accepted[key]:
            wrong.append(
                f"{key}: recorded effective {effective[key]}, PLC accepted {accepted[key]}"
            )
    repeated = {k: n for k, n in accepted.items() if k in ("start", "discharge", "reset") and n > 1}
    return {
        "every_step_once": sorted(completed) == sorted(STEP_IDS) and not twice,
        "lost": lost,
        "twice": twice,
        "repeated": repeated,
        "wrong": wrong,
        "intact": intact,
        "status": status,
    }


def campaign(
    root: Path,
    sim: SimulatorThread,
    accepted: Accepted,
    points: list[Kill],
    client: Path,
    template: Path,
    people_file: Path,
) -> list[dict[str, Any]]:
    results = []
    for number, point in enumerate(points, 1):
        site_dir = root / f"run-{number:02d}"
        shutil.copytree(template, site_dir)
        sim.call(lambda server: server.reset_simulation())
        accepted.seen.clear()
        base = [str(site_dir), str(people_file), str(client), sim.endpoint, BATCH]
        began = time.monotonic()
        first = Kiosk([*base, "--clock", next_clock(site_dir / "hmi.db"), "--start", *point.first])
        outcome = first.run(point.at_ack, point.after_s)
        if outcome != "killed":
            raise RuntimeError(f"{point.name}: the kiosk finished the batch before the kill")
        acked = first.completed()
        restarts = 0
        if outcome == "killed" and (point.recovery or point.recovery_ack):
            again = Kiosk(
                [*base, "--clock", next_clock(site_dir / "hmi.db"), "--recover", *point.recovery]
            )
            restarts += 1
            if again.run(point.recovery_ack) == "killed":
                acked += again.completed()
            else:
                raise RuntimeError(f"{point.name}: the recovery was not killed")
        while outcome != "done":
            restarts += 1
            later = Kiosk([*base, "--clock", next_clock(site_dir / "hmi.db"), "--recover"])
            outcome = later.run()
            acked += later.completed()
            if restarts > 3:
                raise RuntimeError(f"{point.name}: not done after {restarts} restarts")
        result = check(site_dir, acked, Counter(accepted.seen))
        result |= {
            "point": point.name,
            "restarts": restarts,
            "seconds": round(time.monotonic() - began, 1),
        }
        ok = (
            result["every_step_once"]
            and not result["lost"]
            and not result["repeated"]
            and not result["wrong"]
            and result["intact"]
        )
        print(
            f"  {number:2d} {point.name:40s} {'ok' if ok else 'PROBLEM'}  restarts"
            f" {restarts}  {result['seconds']:5.1f} s" + ("" if ok else f"  {json.dumps(result)}"),
            flush=True,
        )
        results.append(result)
        shutil.rmtree(site_dir)
    return results


async def loss_to_hold(
    root: Path, sim: SimulatorThread, client: Path, template: Path, people_file: Path, fault: str
) -> dict[str, float]:
    """Run to the blend, inject the fault, time until the batch is held."""
    site_dir = root / f"loss-{fault}"
    shutil.copytree(template, site_dir)
    clock = ManualClock(datetime.fromisoformat(next_clock(site_dir / "hmi.db")))
    site = open_site(site_dir, clock=clock)
    auth = auth_services(site)
    people = People.load(auth, clock, people_file)
    gateway = gateway_for(
        client,
        sim.endpoint,
        client / "plc" / "pki" / "trusted" / "server.der",
        client / "plc" / "password",
        heartbeat_timeout_s=1.0,  # the product's default
    )
    await gateway.connect()
    services = kiosk_services(site, auth, gateway)
    alarms, engine = services.alarms, services.batches
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(engine.monitor()), loop.create_task(alarms.run(gateway))]
    driver = Driver(engine, people, gateway)
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await engine.start_step(driver.operator(), BATCH, "blend")
    began = time.monotonic()
    if fault == "heartbeat-frozen":
        sim.call(lambda server: server.inject_fault(Fault.COMM_FREEZE))
    else:
        sim.call(lambda server: server.stop())
    while engine.get(BATCH).status is not BatchStatus.HELD:
        if time.monotonic() - began > 30:
            raise RuntimeError(f"{fault}: the batch was not held within 30 s")
        await asyncio.sleep(0.005)
    held = time.monotonic() - began
    for task in tasks:
        task.cancel()
    with_timeout = gateway._settings.heartbeat_timeout_s
    async with asyncio.timeout(10):
        await gateway.disconnect()
    site.close()
    return {"held_s": held, "heartbeat_timeout_s": with_timeout}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--random", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--only", help="run only the kill points whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    accepted = Accepted()
    sim_log = logging.getLogger("plc_sim.server")
    sim_log.setLevel(logging.INFO)
    sim_log.addHandler(accepted)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)  # a PLC lost on purpose below
    points = kill_points(random.Random(args.seed), args.random)
    if args.only:
        points = [p for p in points if args.only in p.name]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        client, template, people_file = prepare(root)
        config = SimulatorConfig(
            data_dir=root / "sim",
            port=0,
            seed=7,
            time_scale=300.0,
            password=PASSWORD,
            trusted_clients=(client / "plc" / "pki" / "own" / "client-cert.der",),
        )
        print(f"crash campaign: {len(points)} kill points, one whole batch each", flush=True)
        with SimulatorThread(config) as sim:
            trust_server_certificate(
                describe_certificate(sim.server.certificate_path.read_bytes()),
                client / "plc" / "pki" / "trusted" / "server.der",
            )
            results = campaign(root, sim, accepted, points, client, template, people_file)
            sim.call(lambda server: server.reset_simulation())
            frozen = asyncio.run(
                loss_to_hold(root, sim, client, template, people_file, "heartbeat-frozen")
            )
            sim.call(lambda server: server.clear_fault())
            sim.call(lambda server: server.reset_simulation())
            closed = asyncio.run(
                loss_to_hold(root, sim, client, template, people_file, "server-stopped")
            )
    summary = {
        "kill_points": len(results),
        "restarts": sum(r["restarts"] for r in results),
        "lost_events": sum(len(r["lost"]) for r in results),
        "steps_done_twice": sum(len(r["twice"]) for r in results),
        "repeated_effects": sum(sum(r["repeated"].values()) - len(r["repeated"]) for r in results),
        "wrong_reconciliations": sum(len(r["wrong"]) for r in results),
        "not_intact": sum(not r["intact"] for r in results),
        "not_awaiting_review": sum(
            r["status"] != BatchStatus.AWAITING_REVIEW.value for r in results
        ),
        "loss_to_hold": {"heartbeat_frozen": frozen, "socket_closed": closed},
    }
    if args.json:
        print(json.dumps({"summary": summary, "runs": results}, indent=2))
    else:
        print(f"kill points {summary['kill_points']}, restarts {summary['restarts']}")
        for key in FAILURES:
            print(f"  {key:24s} {summary[key]}")
        for name, figure in summary["loss_to_hold"].items():
            print(
                f"  PLC loss ({name}) -> batch held {figure['held_s'] * 1000:7.0f} ms;"
                f" ratio to the heartbeat timeout ({figure['heartbeat_timeout_s']:g} s)"
                f" {figure['held_s'] / figure['heartbeat_timeout_s']:.2f}"
            )
    return 0 if sum(summary[k] for k in FAILURES) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
