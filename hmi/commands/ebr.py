"""``hmi ebr report | export | verify | unreviewed``: true copies of batch records and the
audit trail review report. ``add_batch_actions`` adds ``report`` and ``export`` to ``hmi batch``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hmi.commands.errors import CommandError, data_dir


def _add_report(sub: Any, parent: argparse.ArgumentParser) -> None:
    report = sub.add_parser(
        "report",
        parents=[parent],
        help="print a batch record to PDF (with its electronic bundle)",
        description="Writes the electronic bundle (beside the PDF unless --bundle is given),"
        " verifies it, and prints the PDF from it; every page names the bundle's SHA-256.",
    )
    report.add_argument("batch_id", metavar="BATCH")
    report.add_argument("--pdf", type=Path, required=True, metavar="FILE")
    report.add_argument("--bundle", type=Path, metavar="FILE", help="where to write the bundle")
    report.add_argument("--page", choices=("A4", "Letter"), default="A4", help="paper size")
    report.set_defaults(handler=run_report)


def _add_export(sub: Any, parent: argparse.ArgumentParser) -> None:
    export = sub.add_parser(
        "export",
        parents=[parent],
        help="write the electronic true copy of a batch record (verifiable offline)",
    )
    export.add_argument("batch_id", metavar="BATCH")
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.set_defaults(handler=run_export)


def add_batch_actions(batch_sub: Any, parent: argparse.ArgumentParser) -> None:
    """``hmi batch report`` and ``hmi batch export`` (called from hmi/commands/batch.py)."""
    _add_report(batch_sub, parent)
    _add_export(batch_sub, parent)


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    ebr = sub.add_parser("ebr", help="batch record copies (PDF, bundle) and audit trail reviews")
    ebr_sub = ebr.add_subparsers(dest="ebr_command", metavar="ACTION", required=True)
    _add_report(ebr_sub, parent)
    _add_export(ebr_sub, parent)
    verify = ebr_sub.add_parser(
        "verify",
        parents=[parent],
        help="verify a batch bundle offline: chain, signatures and every record line",
    )
    verify.add_argument("bundle", type=Path, metavar="FILE")
    verify.add_argument("--trust-key", type=Path, action="append", default=[], metavar="PEM")
    verify.set_defaults(handler=run_verify)
    unreviewed = ebr_sub.add_parser(
        "unreviewed",
        parents=[parent],
        help="batches and audit trail ranges nobody has signed a review for",
    )
    unreviewed.set_defaults(handler=run_unreviewed)


def _copies(site: Any) -> Any:
    from hmi.audit.checkpoint import WitnessFile
    from hmi.commands.batch import build_engine
    from hmi.ebr.copies import BatchRecordCopies

    return BatchRecordCopies(
        build_engine(site),
        site=site.settings.site.site_name,
        line=site.settings.site.line_name,
        witness=WitnessFile(site.settings.witness_path),
    )


def _batch_id(args: argparse.Namespace) -> str:
    return str(args.batch_id).strip().upper()


def run_export(args: argparse.Namespace) -> int:
    from hmi.batch.errors import BatchNotFound
    from hmi.commands.acting import acting_user
    from hmi.ebr.assemble import EbrError

    with acting_user(args, "audit.export", what="QA or administrator") as acting:
        try:
            result = _copies(acting.site).export(
                _batch_id(args), args.out, actor=acting.actor, generated_by=acting.who
            )
        except (BatchNotFound, EbrError) as exc:
            raise CommandError(str(exc), 2) from None
        print(f"Exported batch record {_batch_id(args)} to {result.bundle}")
        print(f"  bundle SHA-256: {result.sha256}")
        print(
            f"  verify with: hmi audit verify --bundle {result.bundle}"
            f" --trust-key {acting.site.settings.public_key_path}"
        )
        return 0


def run_report(args: argparse.Namespace) -> int:
    from hmi.batch.errors import BatchNotFound
    from hmi.commands.acting import acting_user
    from hmi.ebr.assemble import EbrError

    with acting_user(args, "audit.export", what="QA or administrator") as acting:
        try:
            result = _copies(acting.site).report(
                _batch_id(args),
                args.pdf,
                bundle=args.bundle,
                actor=acting.actor,
                generated_by=acting.who,
                page_format=args.page,
            )
        except (BatchNotFound, EbrError) as exc:
            raise CommandError(str(exc), 2) from None
        print(f"Printed batch record {_batch_id(args)} to {result.pdf} ({result.pages} pages)")
        print(f"  from bundle {result.bundle} (SHA-256 {result.sha256})")
        return 0


def run_verify(args: argparse.Namespace) -> int:
    from hmi.audit.store import trusted_keys
    from hmi.ebr.bundle import problems_text, read_batch_bundle

    trust = trusted_keys(args.trust_key) if args.trust_key else None
    read = read_batch_bundle(args.bundle, trust=trust)
    if trust is None:
        ids = ", ".join(sorted(read.contents.keys)) or "none"
        print(f"note: checked against the bundle's own keys ({ids}); compare these fingerprints"
              " with the site's published key or pass --trust-key")  # fmt: skip
    record = read.record
    if record is not None:
        h = record.header
        print(f"Batch record {h.batch_id} ({h.product}, {h.recipe_id} v{h.recipe_version},"
              f" {h.status}): {len(record.events)} audit events, {len(record.signatures)}"
              " signatures")  # fmt: skip
    print(f"  {read.report.rows_checked} chain events checked; bundle SHA-256 {read.sha256}")
    if read.ok:
        print("INTACT: the bundle, its audit events and every record line verify.")
        return 0
    for line in problems_text(read.report):
        print(f"  {line}")
    print("NOT INTACT: the copy cannot be trusted as it is.")
    return 1


def run_unreviewed(args: argparse.Namespace) -> int:
    from hmi.ebr.review import AuditReviews
    from hmi.site import open_site

    site = open_site(data_dir(args), upgrade=False)
    try:
        reviews = AuditReviews(
            engine=site.engine, audit=site.audit, clock=site.clock, sessions=None,
            signatures=None,  # type: ignore[arg-type]  # reading only
        )  # fmt: skip
        report = reviews.unreviewed()
        print(f"Batches without a signed audit trail review: {len(report.batches)}")
        for item in report.batches:
            state = "ready for review" if item.reviewable else "in progress"
            print(f"  {item.batch_id:<16} {item.status:<16} {state}, started {item.started_at}")
        print(f"Audit trail ranges not covered by a signed review: {len(report.ranges)}")
        for gap in report.ranges:
            print(f"  {gap.terminal_id} seq {gap.from_seq}-{gap.to_seq} ({gap.events} events,"
                  f" {gap.ts_from} to {gap.ts_to})")  # fmt: skip
        return 0
    finally:
        site.close()
