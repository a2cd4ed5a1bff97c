"""PLC gateway benchmark against the bundled simulator on loopback, in one run.

    python bench/plc_bench.py [--seconds 12] [--rounds 6] [--sustain 10] [--tags 50] [--rate 10]

Starts ``plc-sim`` as a subprocess (Basic256Sha256 SignAndEncrypt, user/password, as the HMI
runs it) with ``--tags`` extra Double variables changing at ``--rate`` Hz, each change stamped
with its source time. Prints:

- simulator start-up time (process start to its ready line);
- read and write round trips, p50/p99: the gateway (checked read; write confirmed by
  read-back) and a bare asyncua client on the same connection settings;
- latency from a value change in the server to the update delivered by the gateway's event
  stream, p50/p95, as a ratio to a bare asyncua client's subscription (iterator API, same
  publishing interval, same security) on the same server, both measured at the same time on
  the same changes (the machine's noise hits both alike); fresh subscriptions for both in
  every round, so that every phase of the publishing cycle is sampled;
- whether the gateway keeps up with ``tags x rate`` changes/s over a sustained run: updates
  delivered, stream backlog and the latency trend (a growing backlog shows as growing
  latency).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import DataChangeEvent
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from hmi.plc import (
    AsyncuaGateway,
    PlcSettings,
    TagSpec,
    TagValuesChanged,
    describe_certificate,
    ensure_client_certificate,
    trust_server_certificate,
)

PASSWORD = "bench-password-not-secret"
APP_URI = "urn:line-hmi:hmi"
NS_URI = "urn:line-hmi:plc-sim:blender"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(value: float) -> str:
    return f"{value * 1000:7.2f} ms"


class Site:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cert = root / "plc" / "pki" / "own" / "client-cert.der"
        self.key = root / "plc" / "pki" / "own" / "client-key.pem"
        self.password_file = root / "plc" / "password"
        self.trusted = root / "plc" / "pki" / "trusted" / "server.der"
        ensure_client_certificate(self.cert, self.key, APP_URI)
        self.password_file.write_text(PASSWORD + "\n", encoding="utf-8")


def start_simulator(site: Site, data_dir: Path, tags: int, rate: float) -> tuple[Any, str, float]:
    command = [
        sys.executable, "-m", "plc_sim", "--port", "0", "--data-dir", str(data_dir),
        "--password-file", str(site.password_file), "--trust-client", str(site.cert),
        "--bench-tags", str(tags), "--bench-rate", str(rate),
    ]  # fmt: skip
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            raise SystemExit("plc-sim did not start")
        if line.startswith("plc-sim ready"):
            break
    startup = time.perf_counter() - started
    endpoint = re.search(r"endpoint=(\S+)", line).group(1)  # type: ignore[union-attr]
    cert_path = re.search(r"certificate=(\S+)", line).group(1)  # type: ignore[union-attr]
    trust_server_certificate(describe_certificate(Path(cert_path).read_bytes()), site.trusted)
    return proc, endpoint, startup


def gateway_settings(endpoint: str, tags: int, interval_ms: int) -> PlcSettings:
    tag_map = dict(PlcSettings().tags)
    for i in range(tags):
        tag_map[f"bench_{i:04d}"] = TagSpec(
            node=f"nsu={NS_URI};s=Simulation.Bench.Tag{i:04d}", type="float", low=0
        )
    return PlcSettings(endpoint=endpoint, publishing_interval_ms=interval_ms, tags=tag_map)


async def bare_client(site: Site, endpoint: str) -> Any:
    client = Client(endpoint, timeout=4)
    client.application_uri = APP_URI
    client.session_timeout = 60_000
    client.set_user("hmi")
    client.set_password(PASSWORD)
    await client.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=str(site.cert),
        private_key=str(site.key),
        server_certificate=str(site.trusted),
    )
    await client.connect()
    return client


async def round_trips(gateway: AsyncuaGateway, client: Any, count: int) -> dict[str, list[float]]:
    ns = await client.get_namespace_index(NS_URI)
    node = client.get_node(ua.NodeId("Blender.SpeedSetpoint", ns))
    results: dict[str, list[float]] = {k: [] for k in ("bare read", "bare write", "gw read")}
    results["gw write"] = []
    for i in range(count):
        value = 10.0 + (i % 10)
        t = time.perf_counter()
        await node.read_value()
        results["bare read"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await node.write_value(ua.DataValue(ua.Variant(value, ua.VariantType.Double)))
        results["bare write"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await gateway.read("speed_setpoint")
        results["gw read"].append(time.perf_counter() - t)
        t = time.perf_counter()
        await gateway.write("speed_setpoint", value + 0.5)
        results["gw write"].append(time.perf_counter() - t)
    return results


def age(source: datetime | None, now: float) -> float | None:
    return None if source is None else now - source.timestamp()


async def bare_latency(client: Any, tags: int, interval_ms: int, seconds: float) -> list[float]:
    ns = await client.get_namespace_index(NS_URI)
    nodes = [client.get_node(ua.NodeId(f"Simulation.Bench.Tag{i:04d}", ns)) for i in range(tags)]
    subscription = await client.create_subscription(interval_ms, None, queue_maxsize=100_000)
    await subscription.subscribe_data_change(nodes, sampling_interval=0.0)
    latencies: list[float] = []

    async def consume() -> None:
        async for event in subscription:  # the leanest asyncua consumer: no per-event timeout
            if isinstance(event, DataChangeEvent):
                lag = age(event.data.monitored_item.Value.SourceTimestamp, time.time())
                if lag is not None:
                    latencies.append(lag)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(seconds)
    consumer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await consumer
    await subscription.delete()
    return latencies[tags:]  # drop the initial values (not changes)


async def gateway_latency(
    gateway: AsyncuaGateway, seconds: float
) -> tuple[list[float], list[tuple[float, float]], int, int, int]:
    """Consume the gateway's stream for ``seconds``; the bench tags' values are counters, so
    the number of changes the server made in the window is known exactly."""
    latencies: list[tuple[float, float]] = []  # (time into the run, latency)
    backlog_max = 0
    delivered = 0
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    start = time.monotonic()
    async with gateway.events() as stream:
        stream.get_nowait()  # the current state and snapshot, not changes
        stream.get_nowait()
        while (elapsed := time.monotonic() - start) < seconds:
            try:
                event = await asyncio.wait_for(stream.get(), 0.5)
            except TimeoutError:
                continue
            backlog_max = max(backlog_max, stream.backlog)
            if not isinstance(event, TagValuesChanged):
                continue
            now = time.time()
            for name, update in event.updates.items():
                if name.startswith("bench_") and isinstance(update.value, float):
                    delivered += 1
                    latencies.append((elapsed, now - update.timestamp.timestamp()))
                    first.setdefault(name, update.value - 1)
                    last[name] = update.value
    changes = int(sum(last[name] - first[name] for name in last))
    return [lat for _, lat in latencies], latencies, backlog_max, delivered, changes


async def run(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="plc-bench-") as tmp:
        site = Site(Path(tmp) / "site")
        proc, endpoint, startup = start_simulator(site, Path(tmp) / "sim", args.tags, args.rate)
        try:
            settings = gateway_settings(endpoint, args.tags, args.interval_ms)
            gateway = AsyncuaGateway(settings, base_dir=site.root)
            t = time.perf_counter()
            await gateway.connect()
            connect_s = time.perf_counter() - t
            client = await bare_client(site, endpoint)
            trips = await round_trips(gateway, client, args.round_trips)
            bare: list[float] = []
            gw: list[float] = []
            share = args.seconds / args.rounds
            for round_ in range(args.rounds):  # both at once: the same changes, the same noise
                if round_:  # fresh subscriptions for both: every publishing phase gets sampled
                    await gateway.disconnect()
                    await gateway.connect()
                bare_task = asyncio.create_task(
                    bare_latency(client, args.tags, args.interval_ms, share)
                )
                lat, _, _, _, _ = await gateway_latency(gateway, share)
                bare += await bare_task
                gw += lat
            sustained = await gateway_latency(gateway, args.sustain)
            _, timeline, backlog_max, delivered, changes = sustained
            await client.disconnect()
            await gateway.disconnect()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"PLC gateway benchmark: {args.tags} tags at {args.rate:g} Hz, publishing interval "
          f"{args.interval_ms} ms, Basic256Sha256 SignAndEncrypt, loopback")  # fmt: skip
    print(f"  simulator start-up (process to ready line)   {startup:6.2f} s")
    print(f"  gateway connect (discover, session, tag map, heartbeat) {connect_s * 1000:6.0f} ms")
    print(f"  round trips ({args.round_trips} each)          p50          p99")
    for name, label in (
        ("bare read", "bare asyncua read"),
        ("gw read", "gateway read (checked)"),
        ("bare write", "bare asyncua write"),
        ("gw write", "gateway write + read-back"),
    ):
        values = trips[name]
        print(f"    {label:28s} {ms(percentile(values, 0.5))}   {ms(percentile(values, 0.99))}")
    b50, b95 = percentile(bare, 0.5), percentile(bare, 0.95)
    g50, g95 = percentile(gw, 0.5), percentile(gw, 0.95)
    print("  change in server -> update delivered             p50          p95      samples")
    print(f"    bare asyncua subscription    {ms(b50)}   {ms(b95)}   {len(bare):8d}")
    print(f"    gateway event stream         {ms(g50)}   {ms(g95)}   {len(gw):8d}")
    ratio = g95 / b95
    verdict = "meets" if ratio <= 1.2 else "MISSES"
    print(f"    ratio gateway / bare         p50 {g50 / b50:5.2f}x   p95 {ratio:5.2f}x  "
          f"({verdict} the 1.2x p95 target)")  # fmt: skip
    third = args.sustain / 3
    early = statistics.median([lat for t, lat in timeline if t < third])
    late = statistics.median([lat for t, lat in timeline if t >= 2 * third])
    keeps_up = delivered >= 0.9 * changes and late < early + 0.02 and backlog_max <= 3
    verdict = "no growing backlog" if keeps_up else "FALLING BEHIND"
    print(f"  {args.tags} tags x {args.rate:g} Hz through the gateway for {args.sustain:g} s: "
          f"{changes} changes in the server ({changes / args.sustain:.0f}/s), {delivered} "
          f"updates delivered ({delivered / changes:.0%}; the server's queue of one coalesces "
          f"changes closer than a publishing interval); stream backlog max {backlog_max}; "
          f"median latency first/last third {early * 1000:.1f}/{late * 1000:.1f} ms -> "
          f"{verdict}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="latency run, in total")
    parser.add_argument("--rounds", type=int, default=6, help="rounds of the latency run")
    parser.add_argument("--sustain", type=float, default=10.0, help="sustained-load run, s")
    parser.add_argument("--tags", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10.0, help="changes per tag per second")
    parser.add_argument("--interval-ms", type=int, default=50, help="publishing interval")
    parser.add_argument("--round-trips", type=int, default=300)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
