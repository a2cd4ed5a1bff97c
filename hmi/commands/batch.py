"""``hmi batch list | show BATCH``: the electronic batch records of a site, in the terminal."""

from __future__ import annotations

import argparse
from typing import Any

from hmi.commands.errors import CommandError
from hmi.commands.reading import reading_site


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    batch = sub.add_parser("batch", help="list batches and print a batch record")
    batch_sub = batch.add_subparsers(dest="batch_command", metavar="ACTION", required=True)
    listing = batch_sub.add_parser("list", parents=[parent], help="list the site's batches")
    listing.add_argument(
        "--status",
        choices=("running", "held", "awaiting_review", "released", "rejected", "aborted"),
        help="only batches in this status",
    )
    listing.set_defaults(handler=run_list)
    show = batch_sub.add_parser(
        "show",
        parents=[parent],
        help="print a batch record: steps, values, deviations, signatures, PLC commands",
    )
    show.add_argument("batch_id", metavar="BATCH")
    show.set_defaults(handler=run_show)

    from hmi.commands.ebr import add_batch_actions

    add_batch_actions(batch_sub, parent)


def build_engine(site: Any) -> Any:
    """The batch engine as the command line uses it: the site's services, no PLC."""
    from hmi.services import build_services

    return build_services(site).batches


def run_list(args: argparse.Namespace) -> int:
    from hmi.batch.model import BatchStatus
    from hmi.batch.report import batch_line

    with reading_site(args) as site:
        engine = build_engine(site)
        status = BatchStatus(args.status) if args.status else None
        batches = engine.list_batches(status=status)
        if not batches:
            print("no batches" + (f" in status {args.status}" if args.status else ""))
        for info in batches:
            print(batch_line(info))
        return 0


def run_show(args: argparse.Namespace) -> int:
    from hmi.batch.errors import BatchNotFound
    from hmi.batch.report import render_record

    with reading_site(args) as site:
        engine = build_engine(site)
        try:
            record = engine.record(args.batch_id.strip().upper())
        except BatchNotFound as exc:
            raise CommandError(str(exc), 2) from None
        print("\n".join(render_record(record)))
        return 0
