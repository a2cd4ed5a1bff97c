"""A kiosk process for the crash tests: runs the shipped recipe against the simulator and prints
every action the engine acknowledged (``ACK ...``), so the test can SIGKILL it at a known point.

    python tests/integration/batch/crash_driver.py SITE PEOPLE.json CLIENT_ROOT ENDPOINT BATCH
        --clock ISO [--start] [--recover] [--until STEP] [--die-after-plc COMMAND]

``--die-after-plc start`` kills the process with SIGKILL right after the PLC accepted that
command and before its result is recorded: the one window where the outcome is unknown.
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

from hmi.recipe.service import RecipeService
from hmi.site import open_site
from tests.integration.batch.support import (
    Driver,
    People,
    SteppingClock,
    auth_services,
    build_alarms,
    build_engine,
    gateway_for,
)


def ack(text: str) -> None:
    print(f"ACK {text}", flush=True)


async def main(args: argparse.Namespace) -> int:
    clock = SteppingClock(datetime.fromisoformat(args.clock))
    site = open_site(Path(args.site), clock=clock)
    auth = auth_services(site)
    people = People.load(auth, clock, Path(args.people))
    recipes = RecipeService(
        engine=site.engine, audit=site.audit, clock=clock, sessions=auth.sessions,
        signatures=auth.signatures,
    )  # fmt: skip
    root = Path(args.client_root)
    gateway = gateway_for(
        root, args.endpoint, root / "plc" / "pki" / "trusted" / "server.der",
        root / "plc" / "password",
    )  # fmt: skip
    await gateway.connect()
    if args.die_after_plc:
        real_call = gateway.call

        async def call(method: str, *values: Any) -> Any:
            result = await real_call(method, *values)
            if method == args.die_after_plc:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        gateway.call = call
    alarms = build_alarms(site, auth)
    engine = build_engine(site, auth, recipes, gateway, alarms=alarms)
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
    code = asyncio.run(main(parser.parse_args()))
    sys.stdout.flush()
    os._exit(code)  # asyncua may leave non-daemon threads behind; the work is committed
