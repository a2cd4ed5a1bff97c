"""Helpers for audit tests: build chains, tamper with the SQLite file as an attacker would."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine

from hmi.audit.chain import Actor
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.store import trusted_keys, verify_database
from hmi.audit.verify import Kind, VerifyReport
from hmi.site import Site

OPERATOR = Actor("op1", "operator", "sess-1")


def add_events(site: Site, count: int, *, prefix: str = "test.event") -> None:
    for index in range(count):
        site.audit.record_now(
            f"{prefix}", OPERATOR, entity=("batch", "B-1"), field="weight",
            old_value=str(index), new_value=str(index + 1), reason=f"step {index}",
            details={"index": index},
        )  # fmt: skip


def verify(site: Site, **kwargs: object) -> VerifyReport:
    return verify_database(
        site.engine,
        trusted=trusted_keys([site.settings.public_key_path]),
        witness=WitnessFile(site.settings.witness_path),
        workers=1,
        **kwargs,  # type: ignore[arg-type]
    )


def kinds_at(report: VerifyReport) -> set[tuple[Kind, int | None]]:
    return {(p.kind, p.seq) for p in report.problems}


def attacker(db_path: Path) -> sqlite3.Connection:
    """A raw connection with the append-only triggers dropped, as someone with the file would."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    for name in ("audit_event_no_update", "audit_event_no_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
    return conn


def outside_engine(site: Site) -> Engine:
    """An engine on the site's database file without the product's guards and row capture,
    as another program holding the file would open it: only the database's own triggers
    stand in its way."""
    return create_engine(f"sqlite:///{site.data_dir / 'hmi.db'}")
