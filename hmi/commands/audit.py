"""``hmi audit verify | export | show | review``: prove, copy, read and review the audit trail."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmi.commands.acting import Acting, acting_user
from hmi.commands.arguments import bounded_int, iso_time, parse_moment
from hmi.commands.errors import CommandError, data_dir

#: ``hmi audit show --limit`` and ``hmi audit verify --workers`` at most.
MAX_SHOWN = 100_000
MAX_WORKERS = 64

if TYPE_CHECKING:
    from hmi.audit.checkpoint import Checkpoint


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    audit = sub.add_parser("audit", help="verify, export, read and review the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    verify = audit_sub.add_parser(
        "verify",
        parents=[parent],
        help="check every hash, link, signature and witnessed checkpoint",
        description="Checks the site's audit trail (or, with --bundle, an exported copy) as"
        " docs/audit-format.md specifies: every hash, link, signature, stored form, key"
        " enrolment and witnessed checkpoint, and with --against every position a copy held"
        " elsewhere vouches for. It only reads: nothing is written to the database it checks"
        " (a review of the trail is signed with 'hmi audit review').",
        epilog="Exit status: 0 intact; 1 problems found (each named with its kind and place);"
        " 2 cannot verify (a database or file missing or unreadable, not a bundle or a"
        " checkpoint file, a format version this verifier does not know, a bad --trust-key, or"
        " an unknown --terminal).",
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
        help="a published public key file, or a folder of them (repeatable): only these keys"
        " are trusted; without it the keys found in the site folder (or the bundle) are, and"
        " their fingerprints are printed to compare with the published ones",
    )
    verify.add_argument(
        "--against",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="an earlier copy held elsewhere (a bundle, a copy of the witness file, or the"
        " chain head file written beside a CSV export; repeatable): the trail must still"
        " extend every position it holds",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable report")
    verify.add_argument(
        "--incremental", action="store_true", help="verify from the last verified checkpoint only"
    )
    verify.add_argument("--terminal", help="only this terminal's chain")
    verify.add_argument(
        "--workers",
        type=bounded_int(1, MAX_WORKERS),
        default=None,
        help=f"processes, 1 to {MAX_WORKERS} (default: all cores)",
    )
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
        type=iso_time,
        metavar="TIME",
        help="ISO date/time (local unless it has an offset)",
    )
    export.add_argument(
        "--to", dest="ts_to", type=iso_time, metavar="TIME", help="a date alone: its whole day"
    )
    export.add_argument("--terminal")
    export.set_defaults(handler=run_export)

    show = audit_sub.add_parser("show", parents=[parent], help="list events as a table")
    show.add_argument(
        "--from",
        dest="ts_from",
        type=iso_time,
        metavar="TIME",
        help="ISO date/time (local unless it has an offset)",
    )
    show.add_argument(
        "--to", dest="ts_to", type=iso_time, metavar="TIME", help="a date alone: its whole day"
    )
    show.add_argument("--user")
    show.add_argument("--action", help="an action or a prefix (e.g. auth. or batch.step)")
    show.add_argument("--entity", metavar="TYPE[:ID]")
    show.add_argument("--terminal")
    show.add_argument(
        "--limit",
        type=bounded_int(1, MAX_SHOWN),
        default=200,
        help=f"at most this many events, newest first (1 to {MAX_SHOWN}; default 200)",
    )
    show.set_defaults(handler=run_show)

    from hmi.commands.ebr import add_review_action

    add_review_action(audit_sub, parent)


def parse_time(text: str | None, *, end: bool = False) -> str | None:
    """An ISO date or date-time from the user, as stored UTC text (local time unless offset;
    a date alone ending a range is its whole day). See :func:`parse_moment`."""
    from hmi.clock import to_utc_text

    if text is None:
        return None
    try:
        return to_utc_text(parse_moment(text, end=end))
    except ValueError as exc:
        raise CommandError(str(exc), 2) from None


def _print_report(report: Any, source: str, as_json: bool, trust: Any) -> None:
    if as_json:
        print(
            json.dumps({"source": source, "trust": trust.to_json(), **report.to_json()}, indent=2)
        )
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(f"[bold]Audit trail verification[/bold]: {escape(source)}")
    for line in trust.lines():
        console.print(f"  {escape(line)}")
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
    for note in report.notes:
        console.print(f"  note: {escape(note)}")
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
            escape(problem.message),
        )
    console.print(table)
    console.print("[red bold]NOT INTACT[/]: the records above cannot be trusted as they are.")


def run_verify(args: argparse.Namespace) -> int:
    """Verify, reading only; exit 0 intact, 1 problems found, 2 cannot verify."""
    from hmi.audit.anchors import AnchorError, load_trust
    from hmi.audit.bundle import BundleError
    from hmi.db import DatabaseError

    given = load_trust(args.trust_key) if args.trust_key else None  # KeyFileError: exit 2
    for path in args.against:
        if not path.is_file():
            raise CommandError(f"cannot verify against {path}: no such file", 2)
    try:
        if args.bundle is not None:
            return _verify_bundle(args, given)
        return _verify_site(args, given)
    except (BundleError, AnchorError, DatabaseError) as exc:
        raise CommandError(f"cannot verify: {exc}", 2) from None


def _verify_bundle(args: argparse.Namespace, given: Any) -> int:
    from hmi.audit.anchors import BundleChains, bundle_trust, check_against, read_against
    from hmi.ebr.bundle import verify_bundle_file

    report, contents = verify_bundle_file(
        args.bundle, trust=None if given is None else given.keys, workers=args.workers
    )
    trust = given or bundle_trust(contents.keys)
    if args.terminal is not None:
        _only_terminal(report, args.terminal, args.bundle)
    if args.against:
        copies = [read_against(path, trust.keys) for path in args.against]
        check_against(report, copies, BundleChains(contents), args.terminal)
    _print_report(report, str(args.bundle), args.json, trust)
    return 0 if report.ok else 1


def _only_terminal(report: Any, terminal: str, bundle: Path) -> None:
    """``--terminal`` on a bundle: the whole file is checked (its signature covers every line),
    the report keeps that terminal's chain and the problems of the file itself."""
    if terminal not in report.chains:
        held = ", ".join(sorted(report.chains)) or "none"
        raise CommandError(
            f"the bundle {bundle} holds no chain for terminal {terminal} (it holds: {held})", 2
        )
    others = sorted(name for name in report.chains if name != terminal)
    report.problems = [p for p in report.problems if p.terminal in (None, terminal)]
    report.chains = {terminal: report.chains[terminal]}
    if others:
        report.notes.append(
            f"--terminal {terminal}: the chains of {', '.join(others)} held in the bundle were"
            " checked but are not reported"
        )


def _verify_site(args: argparse.Namespace, given: Any) -> int:
    from hmi.audit.anchors import read_against, site_trust
    from hmi.audit.checkpoint import WitnessFile
    from hmi.audit.store import VerifyState, has_chain, verify_database
    from hmi.db import redact_url
    from hmi.site import open_for_verification

    # Read-only: no upgrade, no checkpoint, no event, and no need of the private key.
    site = open_for_verification(data_dir(args))
    try:
        settings = site.settings
        trust = given or site_trust(
            settings.public_key_path, settings.data_dir / "keys" / "trusted"
        )
        if args.terminal is not None and not has_chain(site.engine, args.terminal):
            raise CommandError(f"no chain for terminal {args.terminal} in this database", 2)
        copies = [read_against(path, trust.keys) for path in args.against]
        report = verify_database(
            site.engine,
            trusted=trust.keys,
            witness=WitnessFile(settings.witness_path),
            terminal=args.terminal,
            state=VerifyState(settings.data_dir / "audit-verify-state.json", site.signer),
            incremental=args.incremental,
            workers=args.workers,
            against=copies,
        )
        _print_report(report, redact_url(settings.database_url), args.json, trust)
    finally:
        site.close()
    return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> int:
    fmt = args.format or ("csv" if args.out.suffix.lower() == ".csv" else "bundle")
    for path in (args.out, *([heads_file(args.out)] if fmt == "csv" else [])):
        if path.exists():
            raise CommandError(
                f"{path} already exists; an exported copy is never overwritten, choose a new name",
                2,
            )
    if not args.out.parent.is_dir():
        raise CommandError(f"the folder {args.out.parent} does not exist", 2)
    ts_from, ts_to = parse_time(args.ts_from), parse_time(args.ts_to, end=True)
    with acting_user(args, "audit.export", what="QA or administrator") as acting:
        return _export(args, acting, fmt, ts_from, ts_to)


def heads_file(out: Path) -> Path:
    """Where a CSV export's signed chain heads go: checkpoint lines, beside the CSV."""
    return out.with_name(out.name + ".head.jsonl")


def _export(
    args: argparse.Namespace, acting: Acting, fmt: str, ts_from: str | None, ts_to: str | None
) -> int:
    from hmi.audit.bundle import write_bundle, write_csv
    from hmi.audit.checkpoint import WitnessFile
    from hmi.audit.store import chain_heads, heads_details, load_rows
    from hmi.clock import to_utc_text

    site = acting.site
    created_at = to_utc_text(site.clock.now())
    # The heads first: the copy holds events up to them, so it is exactly what they sign.
    terminals = None if args.terminal is None else [args.terminal]
    heads = chain_heads(site.engine, site.signer, created_at, terminals)
    limit = {point.terminal: point.seq for point in heads}
    rows = [
        row
        for row in load_rows(site.engine, terminal=args.terminal, ts_from=ts_from, ts_to=ts_to)
        if row[1] <= limit.get(row[0], 0)
    ]
    if not rows:
        raise CommandError("no audit events match that range; nothing was exported", 1)
    spans: dict[str, tuple[int, int]] = {}
    for row in rows:
        low, high = spans.get(row[0], (row[1], row[1]))
        spans[row[0]] = (min(low, row[1]), max(high, row[1]))
    heads = [point for point in heads if point.terminal in spans]
    digest = None
    if fmt == "csv":
        write_csv(args.out, rows)
        write_heads(heads_file(args.out), heads)
    else:
        from hmi.audit.store import registered_keys, trusted_keys
        from hmi.audit.verify import ROW_FIELDS
        from hmi.db import read_only

        points, _ = WitnessFile(site.settings.witness_path).read()
        points = [
            p
            for p in points
            if p.terminal in spans and spans[p.terminal][0] <= p.seq <= spans[p.terminal][1]
        ]
        # the key of every event held, and the exporting terminal's (it signs the bundle)
        with read_only(site.engine) as conn:
            keys = registered_keys(conn, {str(row[ROW_FIELDS.index("key_id")]) for row in rows})
        keys.update(trusted_keys([site.settings.public_key_path]))
        digest = write_bundle(
            args.out,
            signer=site.signer,
            header={
                "created_at": created_at,
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
            heads=heads,
            ends_at_head=ts_to is None and all(spans[p.terminal][1] == p.seq for p in heads),
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
            "chain_heads": heads_details(heads),
        },
    )
    print(f"Exported {len(rows)} events to {args.out} ({fmt})")
    for point in heads:
        print(f"  chain head {point.terminal}: seq {point.seq}, row hash {point.row_hash} (signed)")
    if digest:
        print(f"  bundle SHA-256: {digest}")
        print(
            f"  verify with: hmi audit verify --bundle {args.out}"
            f" --trust-key {site.settings.public_key_path}"
        )
        print(f"  keep it to check the trail against later: hmi audit verify --against {args.out}")
    else:
        print(
            f"  signed chain heads in {heads_file(args.out)}; keep it to check the trail"
            f" against later: hmi audit verify --against {heads_file(args.out)}"
        )
    return 0


def write_heads(path: Path, heads: Sequence[Checkpoint]) -> None:
    """The signed chain heads of a CSV export, as checkpoint lines (the witness file's form)."""
    from hmi.audit import canonical

    path.write_bytes(b"".join(canonical.canonical_bytes(p.to_json()) + b"\n" for p in heads))


def run_show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hmi.audit.store import EventFilter, query_events
    from hmi.clock import from_utc_text, to_local_text
    from hmi.commands.reading import reading_site

    entity_type, _, entity_id = (args.entity or "").partition(":")
    if args.entity is not None and not entity_type.strip():
        raise CommandError("--entity takes TYPE or TYPE:ID, e.g. batch:B-2026-0042", 2)
    with reading_site(args) as site:
        events = query_events(
            site.engine,
            EventFilter(
                ts_from=parse_time(args.ts_from),
                ts_to=parse_time(args.ts_to, end=True),
                actor_id=args.user.strip().lower() if args.user else None,  # stored lower-case
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
    return 0
