"""Upgrading an older site database: pending migrations are applied, recorded, and the records
written before the upgrade still verify."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

import hmi.migrations as migrations
from hmi.clock import ManualClock
from hmi.site import init_site, open_site
from tests.helpers.audit import add_events, verify


def test_old_database_is_upgraded_and_stays_verifiable(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    everything = migrations.available()
    assert everything[0].version == 1
    with monkeypatch.context() as patch:  # a site created by the first release
        patch.setattr(migrations, "available", lambda: everything[:1])
        old = init_site(tmp_path / "site", clock=clock)
        add_events(old, 5)
        old.close()
    clock.advance(60)
    upgraded = open_site(tmp_path / "site", clock=clock)
    with upgraded.engine.connect() as conn:
        versions = (
            conn.execute(text("SELECT version FROM schema_migration ORDER BY version"))
            .scalars()
            .all()
        )
        event = conn.execute(
            text("SELECT details FROM audit_event WHERE action = 'db.migrated'")
        ).scalar_one_or_none()
    assert versions == [m.version for m in everything]
    if len(everything) > 1:
        assert event is not None and str(everything[-1].version) in event
    report = verify(upgraded)
    assert report.ok, report.problems
    assert report.rows_checked >= 7
    upgraded.close()


def test_migration_versions_are_unique_and_ordered() -> None:
    versions = [m.version for m in migrations.available()]
    assert versions == sorted(set(versions))
    assert all(m.name for m in migrations.available())
