"""The ``plc-sim`` command: run the blender simulator as an OPC UA server until SIGINT/SIGTERM.

When the server accepts connections it prints one line to stdout, for people and for the
programs that start it (the HMI demo, the tests)::

    plc-sim ready endpoint=opc.tcp://127.0.0.1:4840/blender/ security=Basic256Sha256/SignAndEncrypt
    certificate=/path/pki/own/cert.der sha256=<hex> user=hmi password_file=/path/password

(one line; values containing spaces are shell-quoted).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from plc_sim import interface as itf
from plc_sim.security import SimulatorSecurityError, copy_certificate
from plc_sim.server import SimulatorConfig, SimulatorError, SimulatorServer

READY_PREFIX = "plc-sim ready"


def default_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("plc-sim", appauthor=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plc-sim",
        description="Powder blender PLC simulator: an OPC UA server for training and tests.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=int,
        default=itf.DEFAULT_PORT,
        help=f"TCP port (default {itf.DEFAULT_PORT}; 0 lets the OS pick a free one)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the measurement noise")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="simulated seconds per real second (e.g. 60 runs a 15-minute blend in 15 s)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the certificate, trusted clients and password live "
        "(default: the platform's data directory for plc-sim)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="also offer an endpoint without security (never on a real network)",
    )
    parser.add_argument("--username", default=itf.DEFAULT_USERNAME, help="the one user name")
    parser.add_argument(
        "--password-file",
        type=Path,
        default=None,
        help="file holding the password (created with a random one if missing; "
        "default DATA_DIR/password)",
    )
    parser.add_argument(
        "--trust-client",
        type=Path,
        action="append",
        default=[],
        metavar="CERT",
        help="trust this client certificate (PEM or DER); may be repeated",
    )
    parser.add_argument(
        "--export-certificate",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the server certificate (DER) here, for the client to trust",
    )
    parser.add_argument(
        "--tick-interval", type=float, default=0.05, help="PLC scan interval in seconds"
    )
    parser.add_argument(
        "--bench-tags",
        type=int,
        default=0,
        help="add N extra Double variables under Simulation/Bench (benchmarks)",
    )
    parser.add_argument(
        "--bench-rate",
        type=float,
        default=10.0,
        help="average change rate of the bench tags (Hz; random intervals)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log detail on stderr",
    )
    return parser


def ready_line(server: SimulatorServer) -> str:
    security = "Basic256Sha256/SignAndEncrypt"
    if server.config.insecure:
        security += "+None"
    fields = {
        "endpoint": server.endpoint,
        "security": security,
        "certificate": str(server.certificate_path),
        "sha256": server.certificate_fingerprint,
        "user": server.config.username,
        "password_file": str(server.password_file) if server.config.password is None else "(given)",
    }
    return READY_PREFIX + " " + " ".join(f"{k}={shlex.quote(v)}" for k, v in fields.items())


async def serve(config: SimulatorConfig, export_certificate: Path | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = SimulatorServer(config)
    try:
        await server.start()
    except (SimulatorError, SimulatorSecurityError, OSError) as exc:
        await server.stop()
        print(f"plc-sim: {exc}", file=sys.stderr)
        return 1
    try:
        if export_certificate is not None:
            copy_certificate(server.certificate_path, export_certificate)
        print(ready_line(server), flush=True)
        await stop.wait()
    finally:
        await server.stop()
    print("plc-sim stopped", file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "debug":
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    try:
        config = SimulatorConfig(
            data_dir=args.data_dir or default_data_dir(),
            host=args.host,
            port=args.port,
            seed=args.seed,
            time_scale=args.time_scale,
            insecure=args.insecure,
            username=args.username,
            password_file=args.password_file,
            tick_interval_s=args.tick_interval,
            bench_tags=args.bench_tags,
            bench_rate_hz=args.bench_rate,
            trusted_clients=tuple(args.trust_client),
        )
    except ValueError as exc:
        print(f"plc-sim: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(config, args.export_certificate))
    except KeyboardInterrupt:  # pragma: no cover - signal handlers normally win
        return 130


if __name__ == "__main__":
    sys.exit(main())
