"""Reading back what the recipe service wrote: audit events and the verified chain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hmi.audit import canonical
from hmi.audit.tables import audit_event
from hmi.recipe.tables import recipe_version
from hmi.site import Site
from tests.helpers.audit import verify


def events(site: Site, prefix: str = "recipe.") -> list[dict[str, Any]]:
    """Audit events whose action starts with ``prefix``, oldest first, details decoded."""
    with site.engine.connect() as conn:
        rows = conn.execute(
            select(audit_event)
            .where(audit_event.c.action.like(f"{prefix}%"))
            .order_by(audit_event.c.terminal_id, audit_event.c.seq)
        ).mappings()
        out = [dict(row) for row in rows]
    for row in out:
        row["details"] = canonical.loads(row["details"])
    return out


def event_count(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_event)).scalar_one())


def version_rows(site: Site) -> list[dict[str, Any]]:
    with site.engine.connect() as conn:
        rows = conn.execute(
            select(recipe_version).order_by(recipe_version.c.recipe_id, recipe_version.c.version)
        ).mappings()
        return [dict(row) for row in rows]


def assert_chain_intact(site: Site) -> None:
    report = verify(site)
    assert report.ok, [p.message for p in report.problems]
    assert report.rows_checked == event_count(site)
