"""``hmi demo``: a throwaway training site, the bundled simulator and the TUI, in one command.

``hmi demo codes --data DIR`` prints the current authenticator codes of a kept demo site.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hmi.commands.arguments import bounded_float, bounded_int
from hmi.commands.errors import CommandError


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "demo",
        parents=[parent],
        help="run a demo site with the bundled PLC simulator and the operator terminal",
        description=(
            "Create a throwaway demo site (or keep it with --data DIR), seed demo accounts for"
            " every role, import and approve the shipped recipes, start the bundled simulator"
            " on a free loopback port with a secure endpoint, and open the terminal."
        ),
    )
    _simulator_arguments(
        parser, "simulator noise seed", 0.1, 10.0, "default 10: a 15-minute blend in 90 s"
    )
    parser.set_defaults(handler=run_demo)
    demo_sub = parser.add_subparsers(dest="demo_command", metavar="SUBCOMMAND")
    codes = demo_sub.add_parser(
        "codes",
        parents=[parent],
        help="print the demo accounts and their current authenticator codes",
    )
    codes.set_defaults(handler=print_codes)
    batches = demo_sub.add_parser(
        "batches",
        parents=[parent],
        help="make a new demo site holding complete batches, run on the bundled simulator",
        description=(
            "Create a new demo site in --data DIR and run COUNT complete batches of the shipped"
            " recipes through the batch engine and the bundled simulator, with deviations,"
            " corrections and signatures as at the kiosk, and QA's release of some. The history"
            " is simulated: the site is back-dated so that it ends before now, and the trail"
            " says so (demo.batches.generated). Open it afterwards with: hmi demo --data DIR"
        ),
    )
    batches.add_argument(
        "--count", type=bounded_int(1, 200), default=5, help="batches to run (1 to 200)"
    )
    _simulator_arguments(
        batches,
        "seed of the choices made (deviations, corrections, releases) and of the simulator's"
        " noise: the same seed makes the same choices",
        10,
        1000.0,
        "default 1000: a 15-minute blend in about a second",
    )
    batches.set_defaults(handler=run_batches)


def _simulator_arguments(
    parser: argparse.ArgumentParser, seed_help: str, low_scale: float, scale: float, note: str
) -> None:
    parser.add_argument(
        "--seed",
        type=bounded_int(0, 2**31 - 1),
        default=1,
        help=f"{seed_help} (0 to 2147483647)",
    )
    parser.add_argument(
        "--time-scale",
        type=bounded_float(low_scale, 1000),
        default=scale,
        help=f"simulated seconds per real second, {low_scale:g} to 1000 ({note})",
    )


def print_codes(args: argparse.Namespace) -> int:
    from hmi.auth.totp import step_at
    from hmi.clock import SystemClock
    from hmi.demo import DEMO_FILE, current_codes, load_accounts

    if args.data is None:
        raise CommandError("give the demo site: hmi demo codes --data DIR", 2)
    data = Path(args.data)
    if not (data / DEMO_FILE).is_file():
        raise CommandError(f"{data} is not a demo site (no {DEMO_FILE})", 2)
    now = SystemClock().now()
    left = 30 - int(now.timestamp()) % 30
    print(f"Demo accounts (codes valid for {left} more seconds):")
    for user, code in current_codes(load_accounts(data), step_at(now)):
        print(f"  {user.user_id:<11} {user.role:<12} {user.password:<26} {code or '-'}")
    return 0


def run_batches(args: argparse.Namespace) -> int:
    """``hmi demo batches``: see the parser's description."""
    import asyncio

    from hmi.clock import ManualClock, SystemClock
    from hmi.demo import (
        DEMO_LINE_NAME,
        DEMO_SITE_NAME,
        DEMO_TERMINAL,
        DemoError,
        configure_demo,
        find_free_port,
        save_accounts,
        seed_demo_site,
    )
    from hmi.demo_batches import GenerationFailed, Summary, back_dated_start, generate
    from hmi.site import init_site, open_site, site_exists

    if args.data is None:
        raise CommandError("give a new directory for the demo site: --data DIR", 2)
    data = Path(args.data)
    if site_exists(data) or (data.exists() and any(data.iterdir())):
        raise CommandError(
            f"{data} is not empty: give a new directory (the generated history is back-dated"
            " and can only start a site)",
            2,
        )
    clock = ManualClock(back_dated_start(args.count, SystemClock().now()))
    init_site(
        data, terminal_id=DEMO_TERMINAL, site_name=DEMO_SITE_NAME, line_name=DEMO_LINE_NAME,
        mode="demo", clock=clock,
    ).close()  # fmt: skip
    port = find_free_port()
    configure_demo(data, port, cheap_argon2=True)
    from hmi.config import load_settings

    settings = load_settings(data)
    plc = settings.plc
    simulator = _start_simulator(settings, data, port, args)
    site = open_site(data, clock=clock)
    try:
        simulator.wait_ready()
        users = seed_demo_site(site)
        save_accounts(data, users)

        def say(summary: Summary) -> None:
            print(
                f"  {summary.batch_id}  {summary.recipe:<20} {summary.status.label:<16}"
                f" {summary.deviations} deviation(s), {summary.corrections} correction(s)"
            )

        async def run() -> list[Summary]:
            from hmi.plc.asyncua_gateway import AsyncuaGateway
            from hmi.services import build_services

            gateway = AsyncuaGateway(plc, base_dir=data, clock=clock)
            await gateway.connect()
            try:
                services = build_services(site, gateway, clock=clock)
                return await generate(
                    services, gateway, users, clock, count=args.count, seed=args.seed,
                    report=say,
                )  # fmt: skip
            finally:
                await gateway.disconnect()

        started = clock.now()
        print(f"hmi demo batches: {args.count} batch(es) on {data}")
        done = asyncio.run(run())
    except (DemoError, GenerationFailed) as exc:
        raise CommandError(str(exc)) from None
    finally:
        site.close()
        simulator.stop()
    released = sum(1 for s in done if s.status.value == "released")
    print(
        f"{len(done)} batch(es): {released} released by QA, {len(done) - released} awaiting"
        f" review or aborted; simulated from {started:%Y-%m-%d %H:%M} to"
        f" {clock.now():%Y-%m-%d %H:%M} UTC. Open the site with: hmi demo --data {data}"
    )
    return 0


def _start_simulator(settings: Any, data: Path, port: int, args: argparse.Namespace) -> Any:
    """The bundled simulator for a demo site: the site's client certificate made if missing,
    the simulator started trusting it (see :class:`hmi.demo.SimulatorProcess`)."""
    from hmi.demo import SimulatorProcess
    from hmi.plc.certificates import ensure_client_certificate

    plc = settings.plc
    ensure_client_certificate(
        settings.path(plc.client_certificate),
        settings.path(plc.client_private_key),
        plc.application_uri,
    )
    simulator = SimulatorProcess(data, port, seed=args.seed, time_scale=args.time_scale)
    simulator.start(
        settings.path(plc.client_certificate),
        settings.path(plc.server_certificate),
        settings.path(plc.password_file),
    )
    return simulator


def run_demo(args: argparse.Namespace) -> int:
    from hmi.demo import (
        DEMO_LINE_NAME,
        DEMO_SITE_NAME,
        DEMO_TERMINAL,
        DemoError,
        configure_demo,
        find_free_port,
    )
    from hmi.site import init_site, site_exists

    started = time.monotonic()
    keep = args.data is not None
    data = Path(args.data) if keep else Path(tempfile.mkdtemp(prefix="hmi-demo-"))
    fresh = not site_exists(data)
    try:
        if fresh:
            init_site(
                data,
                terminal_id=DEMO_TERMINAL,
                site_name=DEMO_SITE_NAME,
                line_name=DEMO_LINE_NAME,
                mode="demo",
            ).close()
        port = find_free_port()
        configure_demo(data, port, cheap_argon2=fresh)
        from hmi.config import load_settings

        settings = load_settings(data)
        if settings.mode != "demo":
            raise CommandError(f"{data} is not a demo site; use 'hmi run' for a real site", 2)
        simulator = _start_simulator(settings, data, port, args)
        try:
            return _run_terminal(data, fresh, simulator, started, keep=keep)
        finally:
            status = simulator.stop()
            _record_stop(data, status)
    except DemoError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if not keep:
            shutil.rmtree(data, ignore_errors=True)


def _run_terminal(data: Path, fresh: bool, simulator: Any, started: float, *, keep: bool) -> int:
    from hmi.app import make_app
    from hmi.audit.chain import SYSTEM
    from hmi.auth.services import build_auth_services
    from hmi.db import redact_url
    from hmi.demo import load_accounts, save_accounts, seed_demo_site
    from hmi.screens.context import DemoAccount
    from hmi.site import open_site

    site = open_site(data)
    try:
        auth = build_auth_services(site.settings, site.engine, site.audit, site.clock)

        def accounts() -> list[DemoAccount]:
            return [
                DemoAccount(u.user_id, u.role, u.password, u.totp_secret)
                for u in load_accounts(data)
            ]

        def prepare() -> list[DemoAccount]:
            """Seeding hashes a dozen passwords: done behind the first paint."""
            save_accounts(data, seed_demo_site(site))
            return accounts()

        site.audit.record_now(
            "terminal.ui.started",
            SYSTEM,
            details={"mode": "demo", "plc_endpoint": redact_url(site.settings.plc.endpoint)},
        )

        def gateway() -> Any:
            from hmi.plc.asyncua_gateway import AsyncuaGateway

            return AsyncuaGateway(site.settings.plc, base_dir=site.data_dir, clock=site.clock)

        app = make_app(
            site,
            auth=auth,
            demo_accounts=[] if fresh else accounts(),
            prepare=prepare if fresh else None,
            gateway_factory=gateway,
            plc_ready=simulator.wait_ready_async,
            quit_warning=""
            if keep
            else "This demo site and its batches are deleted when the HMI closes"
            " (keep one with: hmi demo --data DIR).",
        )
        print(f"hmi demo: site {data} ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        app.run()
        return 0
    finally:
        site.close()


def _record_stop(data: Path, status: int | None) -> None:
    from hmi.audit.chain import SYSTEM
    from hmi.site import open_site

    site = open_site(data, upgrade=False)
    try:
        site.audit.record_now("demo.simulator.stopped", SYSTEM, details={"exit_status": status})
    finally:
        site.close()
