"""``hmi audit verify | export | show | review``: prove, copy, read and review the audit trail."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hmi.commands.acting import Acting, acting_user
from hmi.commands.errors import CommandError, data_dir


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", help="verify, export, read and review the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = audit_sub.add_parser(
        "verify",
        parents=[parent],
        help="check every hash, link, signature and witnessed checkpoint",
        description="Exit status 0 only when everything is intact.",
    )
    verify.add_argument(
        "--bundle", type=Path, metavar="FILE", help="verify an exported bundle offline"
    )
    verify.add_argument(
        "--trust-key",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="public key to trust (repeatable); strict check of a bundle's keys",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.add_argument(
        "--incremental", action="store_true", help="verify from the last verified checkpoint only"
    )
    verify.add_argument("--terminal", help="only this terminal's chain")
    verify.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    verify.set_defaults(handler=run_verify)

    export = audit_sub.add_parser(
        "export", parents=[parent], help="write a verifiable bundle (or a CSV) of the audit trail"
    )
    export.add_argument("--out", type=Path, required=True, metavar="FILE")
    export.add_argument(
        "--format",
        choices=("bundle", "csv"),
        default=None,
        help="default: csv for *.csv, otherwise bundle",
    )
    export.add_argument(
        "--from",
        dest="ts_from",
        metavar="TIME",
        help="ISO date/time (local unless it has an offset)",
    )
    export.add_argument("--to", dest="ts_to", metavar="TIME")
    export.add_argument("--terminal")
    export.set_defaults(handler=run_export)

    show = audit_sub.add_parser("show", parents=[parent], help="list events as a table")
    show.add_argument("--from", dest="ts_from", metavar="TIME")
    show.add_argument("--to", dest="ts_to", metavar="TIME")
    show.add_argument("--user")
    show.add_argument("--action", help="an action or a prefix (e.g. auth. or batch.step)")
    show.add_argument("--entity", metavar="TYPE[:ID]")
    show.add_argument("--terminal")
    show.add_argument("--limit", type=int, default=200)
    show.set_defaults(handler=run_show)

    from hmi.commands.ebr import add_review_action

    add_review_action(audit_sub, parent)


def parse_time(text: str | None, *, end: bool = False) -> str | None:
    """An ISO date or date-time from the user, as stored UTC text (local time unless offset)."""
    from hmi.clock import to_utc_text

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(
            f"'{text}' is not a date or time; use e.g. 2026-01-05 or 2026-01-05T08:30", 2
        ) from None
    if len(text) == 10 and end:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # interpret as local time
    return to_utc_text(moment.astimezone(UTC))


def _print_report(report: Any, source: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"source": source, **report.to_json()}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    console.print(f"[bold]Audit trail verification[/bold]: {source}")
    for name, chain in sorted(report.chains.items()):
        span = f"seq {chain.first_seq}–{chain.last_seq}" if chain.events else "no events"
        keys = ", ".join(sorted(chain.key_ids))
        console.print(
            f"  terminal {name}: {chain.events} events ({span}), {chain.checkpoints} witnessed"
            f" checkpoints, key {keys}"
        )
        if chain.witnessed_to is not None and chain.last_seq is not None:
            tail = chain.last_seq - chain.witnessed_to
            note = f"{tail} later event(s) not yet witnessed" if tail > 0 else "head witnessed"
            console.print(f"    last witnessed seq {chain.witnessed_to}; {note}")
    if report.incremental_from:
        starts = ", ".join(f"{t} from seq {s}" for t, s in report.incremental_from.items())
        console.print(f"  incremental: {starts}")
    console.print(f"  {report.rows_checked} events checked in {report.seconds:.2f} s")
    if report.ok and report.incremental_from:
        console.print(
            "[green bold]INTACT[/] from the last verified checkpoint on (incremental: earlier"
            " rows were verified by an earlier run; witnessed positions rechecked)."
        )
        return
    if report.ok:
        console.print("[green bold]INTACT[/]: every hash, link, signature and checkpoint verifies.")
        return
    table = Table(title=f"{len(report.problems)} problem(s) found", title_justify="left")
    table.add_column("terminal")
    table.add_column("seq", justify="right")
    table.add_column("kind")
    table.add_column("what")
    for problem in report.problems:
        table.add_row(
            problem.terminal or "-",
            "-" if problem.seq is None else str(problem.seq),
            str(problem.kind),
            problem.message,
        )
    console.print(table)
    console.print("[red bold]NOT INTACT[/]: the records above cannot be trusted as they are.")


def run_verify(args: argparse.Namespace) -> int:
    from hmi.audit.store import trusted_keys

    extra = trusted_keys(args.trust_key) if args.trust_key else {}
    if args.bundle is not None:
        from hmi.ebr.bundle import verify_bundle_file

        report, contents = verify_bundle_file(
            args.bundle, trust=extra or None, workers=args.workers
        )
        if not args.trust_key and not args.json:
            ids = ", ".join(sorted(contents.keys)) or "none"
            print(
                f"note: checked against the bundle's own keys ({ids}); compare these fingerprints"
                " with the site's published key or pass --trust-key"
            )
        _print_report(report, str(args.bundle), args.json)
        return 0 if report.ok else 1

    from hmi.audit.chain import SYSTEM, AuditWriteError
    from hmi.audit.checkpoint import WitnessFile
    from hmi.audit.store import VerifyState, verify_database
    from hmi.site import open_site

    site = open_site(data_dir(args), upgrade=False, witness=False)
    settings = site.settings
    trusted = trusted_keys([settings.public_key_path])
    trusted_dir = settings.data_dir / "keys" / "trusted"
    if trusted_dir.is_dir():
        trusted.update(trusted_keys([trusted_dir]))
    trusted.update(extra)
    report = verify_database(
        site.engine,
        trusted=trusted,
        witness=WitnessFile(settings.witness_path),
        terminal=args.terminal,
        state=VerifyState(settings.data_dir / "audit-verify-state.json", site.signer),
        incremental=args.incremental,
        workers=args.workers,
    )
    from hmi.db import redact_url

    _print_report(report, redact_url(settings.database_url), args.json)
    try:
        site.audit.record_now(
            "audit.verify.passed" if report.ok else "audit.verify.failed",
            SYSTEM,
            details={
                "incremental": args.incremental,
                "problems": len(report.problems),
                "rows_checked": report.rows_checked,
                "first_problems": [p.to_json() for p in report.problems[:20]],
                "os_user": getpass.getuser(),
            },
        )
    except AuditWriteError as exc:
        print(f"note: the verification itself could not be recorded: {exc}", file=sys.stderr)
    site.close()
    return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise CommandError(
            f"{args.out} already exists; an exported copy is never overwritten, choose a new name",
            2,
        )
    if not args.out.parent.is_dir():
        raise CommandError(f"the folder {args.out.parent} does not exist", 2)
    ts_from, ts_to = parse_time(args.ts_from), parse_time(args.ts_to, end=True)
    with acting_user(args, "audit.export", what="QA or administrator") as acting:
        return _export(args, acting, ts_from, ts_to)


def _export(
    args: argparse.Namespace, acting: Acting, ts_from: str | None, ts_to: str | None
) -> int:
    from hmi.audit.bundle import write_bundle, write_csv
    from hmi.audit.checkpoint import WitnessFile
    from hmi.audit.store import load_rows
    from hmi.clock import to_utc_text

    site = acting.site
    rows = load_rows(site.engine, terminal=args.terminal, ts_from=ts_from, ts_to=ts_to)
    if not rows:
        raise CommandError("no audit events match that range; nothing was exported", 1)
    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "bundle")
    if fmt == "csv":
        write_csv(args.out, rows)
        digest = None
    else:
        from hmi.audit.store import trusted_keys

        spans: dict[str, tuple[int, int]] = {}
        for row in rows:
            low, high = spans.get(row[0], (row[1], row[1]))
            spans[row[0]] = (min(low, row[1]), max(high, row[1]))
        points, _ = WitnessFile(site.settings.witness_path).read()
        points = [
            p
            for p in points
            if p.terminal in spans and spans[p.terminal][0] <= p.seq <= spans[p.terminal][1]
        ]
        keys = trusted_keys([site.settings.public_key_path])
        digest = write_bundle(
            args.out,
            signer=site.signer,
            header={
                "created_at": to_utc_text(site.clock.now()),
                "exported_by": {
                    "user_id": acting.session.user_id,
                    "name": acting.session.full_name,
                    "terminal": site.settings.site.terminal_id,
                },
                "site": site.settings.site.site_name,
                "line": site.settings.site.line_name,
                "scope": {"terminal": args.terminal, "from": ts_from, "to": ts_to},
                "partial": bool(ts_from) or any(low != 1 for low, _ in spans.values()),
            },
            keys=keys.values(),
            rows=rows,
            checkpoints=points,
        )
    site.audit.record_now(
        "audit.exported",
        acting.actor,
        details={
            "format": fmt,
            "file": str(args.out),
            "events": len(rows),
            "sha256": digest,
            "from": ts_from,
            "to": ts_to,
            "terminal": args.terminal,
        },
    )
    print(f"Exported {len(rows)} events to {args.out} ({fmt})")
    if digest:
        print(f"  bundle SHA-256: {digest}")
        print(
            f"  verify with: hmi audit verify --bundle {args.out}"
            f" --trust-key {site.settings.public_key_path}"
        )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hmi.audit.store import EventFilter, query_events
    from hmi.clock import from_utc_text, to_local_text
    from hmi.site import open_site

    if args.limit < 1:
        raise CommandError("--limit must be at least 1", 2)
    entity_type, _, entity_id = (args.entity or "").partition(":")
    if args.entity is not None and not entity_type.strip():
        raise CommandError("--entity takes TYPE or TYPE:ID, e.g. batch:B-2026-0042", 2)
    site = open_site(data_dir(args), upgrade=False)
    events = query_events(
        site.engine,
        EventFilter(
            ts_from=parse_time(args.ts_from),
            ts_to=parse_time(args.ts_to, end=True),
            actor_id=args.user.strip().lower() if args.user else None,  # IDs are stored lower-case
            action=args.action,
            entity_type=entity_type or None,
            entity_id=entity_id or None,
            terminal=args.terminal,
            limit=args.limit,
        ),
    )
    table = Table(title=f"{len(events)} audit event(s), newest first", title_justify="left")
    for column in ("time (local)", "terminal:seq", "user (role)", "action"):
        table.add_column(column, no_wrap=True)
    for column in ("entity", "change", "reason"):
        table.add_column(column, overflow="fold")
    for event in events:
        change = ""
        if event["field"] or event["old_value"] is not None or event["new_value"] is not None:
            old = "-" if event["old_value"] is None else event["old_value"]
            new = "-" if event["new_value"] is None else event["new_value"]
            change = f"{event['field']}: {old} → {new}" if event["field"] else f"{old} → {new}"
        entity = f"{event['entity_type']}:{event['entity_id']}" if event["entity_type"] else ""
        table.add_row(
            to_local_text(from_utc_text(event["ts"])),
            f"{event['terminal_id']}:{event['seq']}",
            f"{event['actor_id']} ({event['actor_role']})",
            event["action"],
            entity,
            change,
            event["reason"] or "",
        )
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(table)
    site.close()
    return 0
