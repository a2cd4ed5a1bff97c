"""A kiosk process for the crash tests: runs the shipped recipe against the simulator and prints
every action the engine acknowledged (``ACK ...``), so the test can SIGKILL it at a known point.

    python tests/integration/batch/crash_driver.py SITE PEOPLE.json CLIENT_ROOT ENDPOINT BATCH
        --clock ISO [--start] [--recover] [--until STEP] [--die-after-plc COMMAND]

``--die-after-plc start`` kills the process with SIGKILL right after the PLC accepted that
command and before its result is recorded: the one window where the outcome is unknown
(``write:TAG`` for a setpoint write). ``--die-in-transaction N`` kills it inside its N-th
audit event's transaction, before the commit. ``--die-before-journal COMMAND`` and
``--die-after-journal COMMAND`` kill it when that command's intent is committed, before or
after the journal's "sending" line (in both cases the PLC never receives it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from sqlalchemy import select

from hmi.audit.chain import AuditLog
from hmi.batch.journal import CommandJournal
from hmi.batch.tables import plc_command
from hmi.site import open_site
from tests.integration.batch.support import (
    Driver,
    People,
    SteppingClock,
    auth_services,
    gateway_for,
    kiosk_services,
)


def ack(text: str) -> None:
    print(f"ACK {text}", flush=True)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def die_in_transaction(n: int) -> None:
    """SIGKILL inside the N-th audit event's transaction (its rows written, not committed)."""
    real_record = AuditLog.record
    count = [0]

    def record(self: AuditLog, *a: Any, **k: Any) -> Any:
        event = real_record(self, *a, **k)
        count[0] += 1
        if count[0] == n:
            die()
        return event

    AuditLog.record = record  # type: ignore[method-assign]


def die_at_journal(site: Any, before: str | None, after: str | None) -> None:
    """SIGKILL when ``before``/``after`` (a PLC command name) is about to be sent: before or
    after the journal's "sending" line is written."""
    real_sending = CommandJournal.sending

    def command_of(command_id: int) -> str:
        with site.engine.connect() as conn:
            return str(
                conn.execute(
                    select(plc_command.c.command).where(plc_command.c.id == command_id)
                ).scalar()
            )

    def sending(self: CommandJournal, command_id: int) -> None:
        name = command_of(command_id)
        if name == before:
            die()
        real_sending(self, command_id)
        if name == after:
            die()

    CommandJournal.sending = sending  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> int:
    clock = SteppingClock(datetime.fromisoformat(args.clock))
    site = open_site(Path(args.site), clock=clock)
    auth = auth_services(site)
    people = People.load(auth, clock, Path(args.people))
    root = Path(args.client_root)
    gateway = gateway_for(
        root, args.endpoint, root / "plc" / "pki" / "trusted" / "server.der",
        root / "plc" / "password",
    )  # fmt: skip
    await gateway.connect()
    if args.die_in_transaction:
        die_in_transaction(args.die_in_transaction)
    if args.die_before_journal or args.die_after_journal:
        die_at_journal(site, args.die_before_journal, args.die_after_journal)
    if args.die_after_plc and args.die_after_plc.startswith("write:"):
        real_write = gateway.write

        async def write(tag: str, value: Any) -> Any:
            result = await real_write(tag, value)
            if f"write:{tag}" == args.die_after_plc:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        gateway.write = write
    elif args.die_after_plc:
        real_call = gateway.call

        async def call(method: str, *values: Any) -> Any:
            result = await real_call(method, *values)
            if method == args.die_after_plc:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        gateway.call = call
    services = kiosk_services(site, auth, gateway)
    alarms, engine = services.alarms, services.batches
    if args.recover:
        recovered = await engine.recover()
        ack(f"recovered {None if recovered is None else recovered.batch_id}")
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(engine.monitor()), loop.create_task(alarms.run(gateway))]
    driver = Driver(engine, people, gateway, ack=ack)
    if args.start:
        driver.start(args.batch)
    await driver.run(args.batch, stop_after=args.until)
    for task in tasks:
        task.cancel()
    async with asyncio.timeout(5):
        await gateway.disconnect()
    site.close()
    ack("done")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    for name in ("site", "people", "client_root", "endpoint", "batch"):
        parser.add_argument(name)
    parser.add_argument("--clock", required=True)
    parser.add_argument("--start", action="store_true")
    parser.add_argument("--recover", action="store_true")
    parser.add_argument("--until")
    parser.add_argument("--die-after-plc")
    parser.add_argument("--die-in-transaction", type=int)
    parser.add_argument("--die-before-journal")
    parser.add_argument("--die-after-journal")
    code = asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    os._exit(code)  # asyncua may leave non-daemon threads behind; the work is committed
