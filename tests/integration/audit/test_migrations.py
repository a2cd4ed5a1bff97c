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


def test_config_edits_are_recorded_at_the_next_start(tmp_path: Path, clock: ManualClock) -> None:
    import json

    site = init_site(tmp_path / "site", clock=clock)
    site.close()
    unchanged = open_site(tmp_path / "site", clock=clock)
    unchanged.close()
    config = tmp_path / "site" / "hmi.toml"
    config.write_text(config.read_text().replace("history = 5", "history = 8"))
    edited = open_site(tmp_path / "site", clock=clock)
    with edited.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT old_value, new_value, details FROM audit_event"
                " WHERE action = 'config.changed'"
            )
        ).all()
    assert len(rows) == 1
    old, new, details = rows[0]
    assert old != new and "history = 8" in json.loads(details)["text"]
    edited.close()
    again = open_site(tmp_path / "site", clock=clock)  # recorded once, not at every start
    with again.engine.connect() as conn:
        count = conn.execute(
            text("SELECT COUNT(*) FROM audit_event WHERE action = 'config.changed'")
        ).scalar()
    assert count == 1
    assert verify(again).ok
    again.close()
