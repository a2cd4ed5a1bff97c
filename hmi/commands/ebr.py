"""``hmi ebr report | export | verify | unreviewed``: true copies of batch records and the
audit trail review report. ``add_batch_actions`` adds ``report`` and ``export`` to ``hmi batch``;
``add_review_action`` adds ``review`` (sign a review of a time range) to ``hmi audit``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hmi.commands.arguments import iso_time
from hmi.commands.errors import CommandError
from hmi.commands.reading import reading_site


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
        epilog="Exit status: 0 intact; 1 problems found; 2 cannot verify (the file missing,"
        " unreadable or not a bundle, or a bad --trust-key).",
    )
    verify.add_argument("bundle", type=Path, metavar="FILE")
    verify.add_argument(
        "--trust-key",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="a published public key file, or a folder of them (repeatable): only these keys"
        " are trusted; without it the bundle's own keys are, and their fingerprints printed",
    )
    verify.set_defaults(handler=run_verify)
    unreviewed = ebr_sub.add_parser(
        "unreviewed",
        parents=[parent],
        help="batches and audit trail ranges nobody has signed a review for",
    )
    unreviewed.set_defaults(handler=run_unreviewed)


def add_review_action(audit_sub: Any, parent: argparse.ArgumentParser) -> None:
    """``hmi audit review`` (called from hmi/commands/audit.py)."""
    review = audit_sub.add_parser(
        "review",
        parents=[parent],
        help="sign a review of a time range of the audit trail (shift or periodic)",
        description="Shows the events of every terminal in the range, then asks for your"
        " login and your electronic signature (at the prompt, or one answer per line on"
        " standard input). The start is included and the end is not, so consecutive shifts"
        " (06:00-14:00, 14:00-22:00) meet exactly. A supervisor signs a shift review (meaning"
        " 'reviewed'), QA a periodic review (meaning 'audit trail reviewed') or a shift"
        " review. The range must"
        " end no later than now and must not cover again events a review of the same kind"
        " covers. 'hmi ebr unreviewed' lists what nobody has reviewed yet.",
    )
    review.add_argument(
        "--from",
        dest="ts_from",
        required=True,
        type=iso_time,
        metavar="TIME",
        help="start, included: ISO date or date-time, local unless it has an offset"
        " (2026-03-02T06:00)",
    )
    review.add_argument(
        "--to",
        dest="ts_to",
        type=iso_time,
        metavar="TIME",
        help="end, not included (default: now); a date alone: to the end of that day",
    )
    review.add_argument(
        "--kind",
        choices=("shift", "periodic"),
        help="default: shift for a supervisor, periodic for QA",
    )
    review.add_argument("--comment", metavar="TEXT", help="findings, recorded with the review")
    review.set_defaults(handler=run_review)


def _copies(site: Any) -> Any:
    from hmi.commands.batch import build_engine
    from hmi.ebr.copies import BatchRecordCopies

    return BatchRecordCopies.for_site(site, build_engine(site))


def _batch_id(args: argparse.Namespace) -> str:
    return str(args.batch_id).strip().upper()


def _never_overwrite(*paths: Path) -> None:
    """Refuse before anyone logs in (the copies service checks again when it writes)."""
    for path in paths:
        if path.exists():
            raise CommandError(
                f"{path} already exists; a copy is never overwritten, choose a new name", 2
            )


def run_export(args: argparse.Namespace) -> int:
    from hmi.batch.errors import BatchNotFound
    from hmi.commands.acting import acting_user
    from hmi.ebr.assemble import EbrError

    _never_overwrite(args.out)
    with acting_user(args, "audit.export", what="QA or administrator") as acting:
        try:
            result = _copies(acting.site).export_for(acting.session, _batch_id(args), args.out)
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

    _never_overwrite(args.pdf, args.bundle or args.pdf.with_suffix(".bundle.jsonl"))
    with acting_user(args, "audit.export", what="QA or administrator") as acting:
        try:
            result = _copies(acting.site).report_for(
                acting.session, _batch_id(args), args.pdf, bundle=args.bundle, page_format=args.page
            )
        except (BatchNotFound, EbrError) as exc:
            raise CommandError(str(exc), 2) from None
        print(f"Printed batch record {_batch_id(args)} to {result.pdf} ({result.pages} pages)")
        print(f"  from bundle {result.bundle} (SHA-256 {result.sha256})")
        return 0


def run_verify(args: argparse.Namespace) -> int:
    """Verify a batch bundle offline; exit 0 intact, 1 problems found, 2 cannot verify."""
    from hmi.audit.anchors import bundle_trust, load_trust
    from hmi.audit.bundle import BundleError
    from hmi.ebr.bundle import problems_text, read_batch_bundle

    given = load_trust(args.trust_key) if args.trust_key else None  # KeyFileError: exit 2
    try:
        read = read_batch_bundle(args.bundle, trust=None if given is None else given.keys)
    except BundleError as exc:
        raise CommandError(f"cannot verify: {exc}", 2) from None
    for line in (given or bundle_trust(read.contents.keys)).lines():
        print(line)
    record = read.record
    if record is not None:
        h = record.header
        print(f"Batch record {h.batch_id} ({h.product}, {h.recipe_id} v{h.recipe_version},"
              f" {h.status}): {len(record.events)} audit events, {len(record.signatures)}"
              " signatures")  # fmt: skip
    print(f"  {read.report.rows_checked} chain events checked; bundle SHA-256 {read.sha256}")
    for note in read.report.notes:
        print(f"  note: {note}")
    if read.ok:
        print("INTACT: the bundle, its audit events and every record line verify.")
        return 0
    for line in problems_text(read.report):
        print(f"  {line}")
    print("NOT INTACT: the copy cannot be trusted as it is.")
    return 1


def run_unreviewed(args: argparse.Namespace) -> int:
    from hmi.ebr.review import AuditReviews, local_text

    with reading_site(args) as site:
        reviews = AuditReviews(
            engine=site.engine, audit=site.audit, clock=site.clock, sessions=None,
            signatures=None,  # type: ignore[arg-type]  # reading only
        )  # fmt: skip
        report = reviews.unreviewed()
        print(f"Batches without a signed audit trail review: {len(report.batches)}")
        for item in report.batches:
            state = "ready for review" if item.reviewable else "in progress"
            started = local_text(item.started_at)
            print(f"  {item.batch_id:<16} {item.status:<16} {state}, started {started}")
        print(f"Audit trail ranges not covered by a signed review: {len(report.ranges)}")
        for gap in report.ranges:
            print(f"  {gap.terminal_id} seq {gap.from_seq}-{gap.to_seq} ({gap.events} events,"
                  f" {local_text(gap.ts_from)} to {local_text(gap.ts_to)})")  # fmt: skip
        if report.ranges:
            print("  sign a review of a range with: hmi audit review --from TIME [--to TIME]")
        return 0


def _review_time(text: str, option: str, *, end: bool = False) -> str:
    from hmi.ebr.review import RangeInvalid, parse_review_time

    try:
        return parse_review_time(text, name=option, end=end)
    except RangeInvalid as exc:
        raise CommandError(str(exc), 2) from None


def run_review(args: argparse.Namespace) -> int:
    """Sign a review of a time range: the range is checked before anyone is asked to log in,
    shown after login, then signed; every refusal is recorded by the services."""
    from hmi.auth.roles import Role
    from hmi.commands.users import login_interactively, open_auth, translate_errors
    from hmi.ebr.review import AuditReviews, RangeInvalid, ReviewRefused

    ts_from = _review_time(args.ts_from, "--from")
    ts_to = _review_time(args.ts_to, "--to", end=True) if args.ts_to else None
    site, auth = open_auth(args)
    try:
        reviews = AuditReviews(
            engine=site.engine,
            audit=site.audit,
            clock=site.clock,
            sessions=auth.sessions,
            signatures=auth.signatures,
        )
        try:
            reviews.check_times(ts_from, ts_to or reviews.now_end())
        except RangeInvalid as exc:
            raise CommandError(str(exc), 2) from None
        with translate_errors():
            session = login_interactively(auth, what="Supervisor or QA")
        try:
            kind = args.kind or ("shift" if session.role is Role.SUPERVISOR else "periodic")
            with translate_errors():
                reviews.authorize_reviewer(session, kind)
            try:
                scope = reviews.prepare_range(ts_from, ts_to or reviews.now_end(), kind=kind)
            except RangeInvalid as exc:
                raise CommandError(str(exc), 2) from None
            except ReviewRefused as exc:
                raise CommandError(f"{exc}; nothing was signed", 1) from None
            with translate_errors():
                signature = _sign_range(auth, session, scope, kind)
                try:
                    review_id = reviews.sign_range_review(
                        session, scope, signature, kind=kind, comment=args.comment
                    )
                except ReviewRefused as exc:
                    raise CommandError(f"the review was refused (recorded): {exc}", 1) from None
        finally:
            auth.sessions.logout(session)
    finally:
        site.close()
    from hmi.auth.signatures import manifestation

    print(f"Signed {kind} review {review_id} of {scope.events} audit events.")
    print(f"  signed: {manifestation(signature)}")
    return 0


def _sign_range(auth: Any, session: Any, scope: Any, kind: str) -> Any:
    """Show what is about to be signed, then take the electronic signature at the prompt."""
    from hmi.commands.acting import accept_statement
    from hmi.commands.users import ask, ask_secret
    from hmi.ebr.review import AuditReviews

    meaning, _roles = AuditReviews.kind_of(kind)
    print(f"{kind.capitalize()} review of the audit trail:")
    print(f"  {scope.describe()}")
    accept = accept_statement(auth, session.user_id)
    print(
        f"Electronic signature, meaning '{meaning.label.lower()}', over {scope.ref.type}"
        f" {scope.ref.id} (SHA-256 {scope.ref.sha256})."
    )
    needed = auth.signatures.components_needed(session, meaning)
    user_id = ask("Signature - user ID: ") if "user_id" in needed else None
    password = ask_secret("Signature - password: ")
    totp = (
        ask("Signature - a new authenticator code (not the one used to log in): ")
        if "totp" in needed
        else None
    )
    return auth.signatures.sign(
        session,
        scope.ref,
        meaning,
        password=password,
        user_id=user_id,
        totp=totp,
        accept_statement=accept,
    )
