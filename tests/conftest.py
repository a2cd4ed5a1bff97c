"""Shared fixtures: a real site (SQLite file, real keys) in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hmi.clock import ManualClock
from hmi.site import Site, init_site, open_site


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when a test says so."""
    return ManualClock(datetime(2026, 3, 2, 7, 30, 0, tzinfo=UTC))


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    return tmp_path / "site"


@pytest.fixture
def site(site_dir: Path, clock: ManualClock) -> Iterator[Site]:
    """A freshly initialised site with a real SQLite file, key pair and witness file."""
    created = init_site(site_dir, terminal_id="KIOSK-01", site_name="Test Site", clock=clock)
    created.close()
    opened = open_site(site_dir, clock=clock)
    yield opened
    opened.close()
