"""``hmi run``: the operator terminal of a site, against its configured PLC endpoint."""

from __future__ import annotations

import argparse
from typing import Any

from hmi.commands.errors import data_dir


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "run",
        parents=[parent],
        help="open the operator terminal (TUI) of this site",
        description="Open the operator terminal of the site, connected to its configured PLC.",
    )
    parser.set_defaults(handler=run_terminal)


def run_terminal(args: argparse.Namespace) -> int:
    from hmi.app import make_app
    from hmi.audit.chain import SYSTEM
    from hmi.db import redact_url
    from hmi.site import open_site

    site = open_site(data_dir(args))
    try:
        endpoint = redact_url(site.settings.plc.endpoint)
        site.audit.record_now(
            "terminal.ui.started",
            SYSTEM,
            details={"mode": site.settings.mode, "plc_endpoint": endpoint},
        )

        def gateway() -> Any:
            from hmi.plc.asyncua_gateway import AsyncuaGateway

            return AsyncuaGateway(site.settings.plc, base_dir=site.data_dir, clock=site.clock)

        make_app(site, gateway_factory=gateway).run()
        return 0
    finally:
        site.close()
