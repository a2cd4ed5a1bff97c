"""Batch engine benchmark: excursion-to-deviation latency and a whole batch's engine overhead.

    python bench/batch_bench.py [--excursions 40] [--json]

1. Excursion latency. A batch of the shipped recipe runs against the in-process simulator up
   to the blend; the blend then runs in real time (time scale 1) while the benchmark pushes the
   product temperature (a monitored, non-critical parameter, limits 15-35 °C) out of its limits
   and back, ``--excursions`` times. For each excursion three instants are taken on one
   monotonic clock: the value changed in the simulator, the gateway delivered it to an
   ordinary consumer stream (the gateway's own update latency), and the engine's deviation was
   committed (listener called after the commit). The target is deviation latency <= 1.5x the
   gateway latency (p50 and p95).
2. Engine overhead. A complete batch at time scale 300 (the 15-minute blend in 3 s): total
   wall time, time spent inside successful engine calls, audit events written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select

from hmi.audit.tables import audit_event
from hmi.batch.engine import BatchEngine
from hmi.batch.model import DeviationInfo, DeviationKind
from hmi.clock import ManualClock
from hmi.plc import (
    describe_certificate,
    ensure_client_certificate,
    trust_server_certificate,
)
from hmi.plc.fake import FakeGateway
from hmi.site import Site, init_site, open_site
from plc_sim.server import SimulatorConfig, SimulatorThread
from tests.integration.batch.support import (
    RECIPE_ID,
    Driver,
    People,
    auth_services,
    build_engine,
    gateway_for,
    import_and_approve,
    record_training,
    set_model,
)

PASSWORD = "bench-plc-password"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def prepared_site(root: Path) -> tuple[Site, Any, People]:
    """A site with the shipped recipe approved and the people trained on it."""
    clock = ManualClock(datetime.now(UTC))
    init_site(root / "site", clock=clock).close()
    site = open_site(root / "site", clock=clock)
    auth = auth_services(site)
    people = People.create(auth, clock)
    import_and_approve(site, auth, people)
    trainer = people.login("qa1")
    for user in ("op1", "sup1"):
        record_training(auth, trainer, user, RECIPE_ID)
    auth.sessions.logout(trainer)
    return site, auth, people


async def kiosk(root: Path, sim: SimulatorThread) -> tuple[Site, BatchEngine, Driver, Any]:
    client = root / "client"
    trusted = client / "plc" / "pki" / "trusted" / "server.der"
    password = client / "plc" / "password"
    trust_server_certificate(
        describe_certificate(sim.server.certificate_path.read_bytes()), trusted
    )
    password.write_text(PASSWORD)
    site, auth, people = prepared_site(root)
    gateway = gateway_for(client, sim.endpoint, trusted, password)
    await gateway.connect()
    engine = build_engine(site, auth, gateway)
    return site, engine, Driver(engine, people, gateway), gateway


async def fake_kiosk(root: Path) -> tuple[Site, BatchEngine, Driver, Any]:
    """The same kiosk on the in-memory PLC: the engine's own cost, no network or simulator."""
    site, auth, people = prepared_site(root)
    gateway = FakeGateway(time_scale=1e6)
    await gateway.connect()
    engine = build_engine(site, auth, gateway)
    return site, engine, Driver(engine, people, gateway), gateway


async def excursion_latency(root: Path, sim: SimulatorThread, count: int) -> dict[str, Any]:
    site, engine, driver, gateway = await kiosk(root, sim)
    batch = "BENCH-EXC-1"
    driver.start(batch)
    await driver.run(batch, stop_after="set-blend")
    committed: dict[str, float] = {}

    def on_deviation(info: DeviationInfo) -> None:
        if info.kind is DeviationKind.EXCURSION:
            committed[info.deviation_id] = time.perf_counter()

    engine.on_deviation(on_deviation)
    monitor = asyncio.get_running_loop().create_task(engine.monitor())
    gateway_seen: list[float] = []
    high = [False]
    # The gateway's own latency: the instant it hands a new value to its consumers' streams
    # (before any consumer, the engine included, has been scheduled to look at it).
    publish = gateway._publish_tags

    def publish_and_time(updates: dict[str, Any]) -> None:
        update = updates.get("product_temperature")
        if update is not None and update.good and isinstance(update.value, float):
            if update.value > 35 and not high[0]:
                gateway_seen.append(time.perf_counter())
            high[0] = update.value > 35
        publish(updates)

    gateway._publish_tags = publish_and_time
    await engine.start_step(driver.operator(), batch, "blend")
    await set_model(sim, time_scale=1.0)
    while str((await gateway.read("state")).value) != "Execute":
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.3)  # every monitored value inside its limits: monitoring armed
    changed_at: list[float] = []
    gateway_lat: list[float] = []
    engine_lat: list[float] = []

    async def wait_for(check: Callable[[], bool]) -> None:
        deadline = time.perf_counter() + 5
        while not check():
            if time.perf_counter() > deadline:
                raise RuntimeError("no excursion seen within 5 s")
            await asyncio.sleep(0.001)

    for _ in range(count):
        before_dev, before_gw = len(committed), len(gateway_seen)

        async def heat(server: Any) -> float:
            server.model.temperature = 36.5
            return time.perf_counter()

        changed_at.append(await sim.acall(heat))
        await wait_for(
            lambda d=before_dev, g=before_gw: len(committed) > d and len(gateway_seen) > g  # type: ignore[misc]
        )
        dev_time = max(committed.values())
        gateway_lat.append(gateway_seen[-1] - changed_at[-1])
        engine_lat.append(dev_time - changed_at[-1])
        await set_model(sim, temperature=25.0)
        await asyncio.sleep(0.15)  # back inside the limits: the excursion ends
    monitor.cancel()
    await set_model(sim, time_scale=300.0)
    await gateway.disconnect()
    site.close()
    g50, g95 = pct(gateway_lat, 0.5) * 1000, pct(gateway_lat, 0.95) * 1000
    e50, e95 = pct(engine_lat, 0.5) * 1000, pct(engine_lat, 0.95) * 1000
    return {
        "excursions": count,
        "gateway_update_ms": {"p50": round(g50, 2), "p95": round(g95, 2)},
        "deviation_recorded_ms": {"p50": round(e50, 2), "p95": round(e95, 2)},
        "ratio": {"p50": round(e50 / g50, 3), "p95": round(e95 / g95, 3)},
        "engine_extra_ms": {
            "p50": round(
                statistics.median(e - g for e, g in zip(engine_lat, gateway_lat, strict=True))
                * 1000,
                2,
            ),
        },
        "target_ratio": 1.5,
    }


async def batch_overhead(made: tuple[Site, BatchEngine, Driver, Any]) -> dict[str, Any]:
    site, engine, driver, gateway = made
    spent: list[float] = []

    def timed(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = await method(*args, **kwargs)
            spent.append(time.perf_counter() - started)
            return result

        return wrapper

    engine.complete_step = timed(engine.complete_step)  # type: ignore[method-assign]
    engine.start_step = timed(engine.start_step)  # type: ignore[method-assign]
    with site.engine.connect() as conn:
        events_before = conn.execute(select(func.count()).select_from(audit_event)).scalar() or 0
    batch = "BENCH-RUN-1"
    monitor = asyncio.get_running_loop().create_task(engine.monitor())
    started = time.perf_counter()
    driver.start(batch)
    await driver.run(batch)
    total = time.perf_counter() - started
    monitor.cancel()
    with site.engine.connect() as conn:
        events = (
            conn.execute(select(func.count()).select_from(audit_event)).scalar() or 0
        ) - events_before
    await gateway.disconnect()
    site.close()
    return {
        "steps": len(engine.recipe_of(engine.get(batch)).steps),
        "batch_wall_s": round(total, 2),
        "simulated_blend_wall_s": round(900 / 300, 2),
        "engine_calls": len(spent),
        "engine_call_s_total": round(sum(spent), 3),
        "engine_call_ms_median": round(statistics.median(spent) * 1000, 2),
        "engine_call_ms_p95": round(pct(spent, 0.95) * 1000, 2),
        "audit_events": int(events),
        "note": "engine call time includes PLC reads/writes and signature checks; the rest of"
        " the wall time is the driver's signing (argon2, cheap test cost) and PLC waiting",
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--excursions", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        client = root / "client"
        ensure_client_certificate(
            client / "plc" / "pki" / "own" / "client-cert.der",
            client / "plc" / "pki" / "own" / "client-key.pem",
            "urn:line-hmi:hmi",
        )
        config = SimulatorConfig(
            data_dir=root / "sim",
            port=0,
            time_scale=300.0,
            password=PASSWORD,
            trusted_clients=(client / "plc" / "pki" / "own" / "client-cert.der",),
        )
        with SimulatorThread(config) as sim:
            (root / "a").mkdir()
            (root / "b").mkdir()
            (root / "a" / "client").symlink_to(client, target_is_directory=True)
            (root / "b" / "client").symlink_to(client, target_is_directory=True)
            latency = await excursion_latency(root / "a", sim, args.excursions)
            sim.call(lambda server: server.reset_simulation())
            overhead = await batch_overhead(await kiosk(root / "b", sim))
        (root / "c").mkdir()
        on_fake = await batch_overhead(await fake_kiosk(root / "c"))
    result = {"excursion_latency": latency, "batch_overhead": overhead, "on_fake_plc": on_fake}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        lat = latency
        print(f"excursion -> deviation over {lat['excursions']} excursions (real-time blend):")
        print(
            f"  gateway update latency  p50 {lat['gateway_update_ms']['p50']:8.2f} ms"
            f"   p95 {lat['gateway_update_ms']['p95']:8.2f} ms"
        )
        print(
            f"  deviation recorded      p50 {lat['deviation_recorded_ms']['p50']:8.2f} ms"
            f"   p95 {lat['deviation_recorded_ms']['p95']:8.2f} ms"
        )
        print(
            f"  ratio (target <= 1.5)   p50 {lat['ratio']['p50']:8.3f}      p95"
            f" {lat['ratio']['p95']:8.3f}"
        )
        for label, ov in (("simulator over OPC UA", overhead), ("in-memory PLC", on_fake)):
            print(f"complete batch ({ov['steps']} steps) on the {label}:")
            print(
                f"  wall {ov['batch_wall_s']} s; {ov['engine_calls']} engine calls took"
                f" {ov['engine_call_s_total']} s (median {ov['engine_call_ms_median']} ms,"
                f" p95 {ov['engine_call_ms_p95']} ms); {ov['audit_events']} audit events"
            )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
