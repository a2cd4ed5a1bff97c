"""Business rows bound to the audit trail (docs/audit-format.md §7).

No table changes: the bindings travel in the events' details. What this step marks is the
moment rows start to be bound; a site upgraded from an earlier release has rows written before
it, and the site records one ``audit.rows.baselined`` binding for each of them right after the
upgrade (:func:`hmi.site.open_site`), so from then on any change to them is seen."""

from __future__ import annotations

from sqlalchemy import Connection

VERSION = 6
NAME = "business rows bound to the audit trail"


def upgrade(conn: Connection) -> None:
    """Nothing to change in the schema (see the module doc)."""
    del conn
