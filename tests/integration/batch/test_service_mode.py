"""Service mode as a service against the real simulator: who may enter (maintenance with TOTP),
never during a batch, every PLC command recorded as intent and result, exit to a safe state,
and the batch engine refusing production while the PLC reads service mode."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import select

from hmi.audit.tables import audit_event
from hmi.auth.errors import PermissionDenied
from hmi.auth.sessions import SessionService
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import EquipmentInServiceMode
from hmi.maintenance import NotInServiceMode, ServiceModeRefused, ServiceModeService
from hmi.plc.errors import PlcError
from hmi.site import Site
from tests.integration.batch.support import (
    RECIPE_ID,
    RECIPE_VERSION,
    Driver,
    People,
    audit_actions,
    verify_chain,
)

BATCH = "B-2026-0700"


def maintenance(site: Site, engine: BatchEngine, gateway: Any) -> ServiceModeService:
    sessions = cast(SessionService, engine.sessions)  # the kiosk's session service
    return ServiceModeService(engine, site.audit, site.clock, sessions, gateway)


def technician(people: People) -> Any:
    """A maintenance technician (TOTP enrolled) created by the administrator."""
    admin = people.login("admin1")
    people.persons["mt1"] = people._create(
        admin, "mt1", "Max Maintenance", "maintenance", "Maint-harbour-quartz-73"
    )
    people.auth.sessions.logout(admin)
    return people.login("mt1")


async def mode(gateway: Any) -> str:
    return str((await gateway.read("mode")).value)


async def test_enter_commands_and_exit_to_a_safe_state(
    site: Site, engine: BatchEngine, people: People, gateway: Any
) -> None:
    service = maintenance(site, engine, gateway)
    session = technician(people)
    with pytest.raises(NotInServiceMode):
        await service.jog(session, 2.0)
    await service.enter(session, "load cell drift suspected", "WO-2026-0815")
    assert service.active and await mode(gateway) == "service"
    await service.calibration_check(session)
    # accepted by the PLC (a refusal raises); the empty bin's valve closes itself within
    # milliseconds at the test's time scale, so it is not read back here
    assert await service.open_valve(session) == ()
    with site.engine.connect() as conn:
        done = conn.execute(
            select(audit_event.c.details).where(audit_event.c.action == "service_mode.command.done")
        ).all()
    assert any('"discharge"' in str(d[0]) for d in done)
    await service.close_valve(session)
    await service.jog(session, 2.0)
    with pytest.raises(PlcError):
        await service.jog(session, 9.0)  # above the PLC's jog limit: refused by the equipment
    await service.exit(session)
    assert not service.active
    assert await mode(gateway) == "production"
    assert (await gateway.read("speed")).value == pytest.approx(0.0, abs=0.5)
    assert (await gateway.read("discharge_valve_open")).value is False
    actions = [a for a, _e, _r in audit_actions(site, "service_mode.")]
    assert actions[-1] == "service_mode.exited" and "service_mode.entered" in actions
    assert actions.count("service_mode.command.requested") == actions.count(
        "service_mode.command.done"
    ) + actions.count("service_mode.command.failed")
    assert actions.count("service_mode.command.failed") == 1
    assert actions.count("service_mode.refused") == 1  # the jog before entering
    report = verify_chain(site)
    assert report.ok, report.problems


async def test_only_maintenance_and_never_during_a_batch(
    site: Site, engine: BatchEngine, people: People, driver: Driver, gateway: Any
) -> None:
    service = maintenance(site, engine, gateway)
    operator = people.login("op1")
    with pytest.raises(PermissionDenied):
        await service.enter(operator, "just looking", "WO-1")
    assert "auth.permission.denied" in [a for a, _e, _r in audit_actions(site, "auth.")]
    driver.start(BATCH)
    session = technician(people)
    with pytest.raises(ServiceModeRefused, match="in progress"):
        await service.enter(session, "load cell drift suspected", "WO-2026-0815")
    assert not service.active and await mode(gateway) == "production"
    refusals = [(a, r) for a, _e, r in audit_actions(site, "service_mode.")]
    assert refusals == [("service_mode.refused", "a batch is in progress")]


async def test_the_engine_refuses_production_in_service_mode(
    site: Site, engine: BatchEngine, people: People, driver: Driver, gateway: Any
) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="line-clearance")
    await gateway.call("set_mode", "service")  # maintenance took the equipment (e.g. locally)
    operator = driver.operator()
    with pytest.raises(EquipmentInServiceMode):
        await engine.start_step(operator, BATCH, "charge-granulate")
    assert engine.current_step(BATCH).status.value == "pending"  # type: ignore[union-attr]
    with pytest.raises(EquipmentInServiceMode):
        engine.start_batch(operator, RECIPE_ID, RECIPE_VERSION, "B-2026-0701")
    await gateway.call("set_mode", "production")
    await engine.start_step(operator, BATCH, "charge-granulate")
    refused = [(a, r) for a, _e, r in audit_actions(site, "batch.") if a.endswith(".refused")]
    assert refused == [
        ("batch.step.refused", "equipment in service mode"),
        ("batch.start.refused", "equipment in service mode"),
    ]
