"""The services of one terminal, wired once: the App, the command line, the tests and the
benchmarks all build them here, with different arguments (a PLC gateway or none, a fake one,
a test clock, cheap password hashing), never with their own wiring.

A rule that depends on how a service is built (the site's equipment limits for recipes, its
batch settings, the PLC command journal) therefore holds wherever the service is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from hmi.alarms.service import AlarmService
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import AuthServices, build_auth_services
from hmi.batch.engine import BatchEngine
from hmi.batch.journal import JOURNAL_FILE
from hmi.batch.settings import BatchSettings
from hmi.clock import Clock
from hmi.maintenance.service import ServiceModeService
from hmi.plc.gateway import PlcGateway
from hmi.recipe.limits import limits_from_settings
from hmi.recipe.service import RecipeService

if TYPE_CHECKING:
    from hmi.site import Site


@dataclass(frozen=True)
class Services:
    """Everything a terminal's users reach: accounts and signatures, recipes, alarms, batches
    and service mode, over one site database, audit trail and clock."""

    site: Site
    clock: Clock
    auth: AuthServices
    recipes: RecipeService
    alarms: AlarmService
    batches: BatchEngine
    maintenance: ServiceModeService
    gateway: PlcGateway | None


def build_services(
    site: Site,
    gateway: PlcGateway | None = None,
    *,
    clock: Clock | None = None,
    auth: AuthServices | None = None,
    argon2: Argon2Parameters | None = None,
    batch_settings: BatchSettings | None = None,
) -> Services:
    """The services of ``site`` talking to ``gateway`` (None: no PLC, for reading records).

    ``clock`` replaces the site's clock (a demo's or a test's manual clock), ``auth`` services
    already built for it may be passed in, ``argon2`` makes password hashing cheap (tests and
    demos only), ``batch_settings`` replaces the site's ``[batch]`` settings.

    A gateway made later (the App creates it after its first paint) is given to the batch
    engine and to service mode by setting their ``plc``; the PLC command journal is the
    site's either way."""
    clock = clock or site.clock
    auth = auth or build_auth_services(site.settings, site.engine, site.audit, clock, argon2=argon2)
    recipes = RecipeService(
        engine=site.engine,
        audit=site.audit,
        clock=clock,
        sessions=auth.sessions,
        signatures=auth.signatures,
        limits=limits_from_settings(site.settings),
    )
    settings = batch_settings or site.settings.batch
    alarms = AlarmService(
        engine=site.engine,
        audit=site.audit,
        clock=clock,
        sessions=auth.sessions,
        shelve_max=timedelta(minutes=settings.shelve_max_minutes),
    )
    batches = BatchEngine(
        engine=site.engine,
        audit=site.audit,
        clock=clock,
        sessions=auth.sessions,
        signatures=auth.signatures,
        plc=gateway,
        recipes=recipes,
        settings=settings,
        alarms=alarms,
        journal=site.settings.data_dir / JOURNAL_FILE,
    )
    maintenance = ServiceModeService(batches, site.audit, clock, auth.sessions, gateway)
    return Services(
        site=site,
        clock=clock,
        auth=auth,
        recipes=recipes,
        alarms=alarms,
        batches=batches,
        maintenance=maintenance,
        gateway=gateway,
    )
