"""``hmi init``: create a site data directory."""

from __future__ import annotations

import argparse
from typing import Any

from hmi.commands.errors import data_dir


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "init",
        parents=[parent],
        help="create a new site: config, keys, database and the first audit events",
        description="Create a site data directory. Refuses to touch an existing site.",
    )
    parser.add_argument("--terminal-id", default="KIOSK-01", help="this terminal's ID (default KIOSK-01)")
    parser.add_argument("--site-name", default="Site", help="site name printed on records")
    parser.add_argument("--line-name", default="Line 1", help="line name printed on records")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from hmi.site import init_site

    target = data_dir(args)
    site = init_site(
        target, terminal_id=args.terminal_id, site_name=args.site_name, line_name=args.line_name
    )
    settings = site.settings
    print(f"Created site '{settings.site.site_name}' / '{settings.site.line_name}' in {target}")
    print(f"  terminal:    {settings.site.terminal_id}")
    print(f"  config:      {target / 'hmi.toml'}")
    print(f"  database:    {settings.database_url}")
    print(f"  public key:  {settings.public_key_path} (key id {site.signer.key_id})")
    print(f"  witness:     {settings.witness_path}")
    site.close()
    return 0
