"""The batch tests' fixtures (a real site, accounts, the shipped recipe approved, a simulator
per worker behind a real gateway): batch records are made by driving the real batch engine."""

from __future__ import annotations

from tests.integration.batch.conftest import (  # noqa: F401 - fixtures
    alarms,
    auth,
    batch_simulator,
    driver,
    engine,
    gateway,
    people,
    plc_client,
    recipes,
    sim,
)
