"""Fixtures for batch tests: a real site, real accounts, the shipped recipe approved, and one
time-accelerated simulator per xdist worker (reset for every test) reached over a secure,
authenticated OPC UA session by a real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hmi.alarms.service import AlarmService
from hmi.auth.services import AuthServices
from hmi.batch.engine import BatchEngine
from hmi.clock import ManualClock
from hmi.plc import describe_certificate, ensure_client_certificate, trust_server_certificate
from hmi.recipe.service import RecipeService
from hmi.site import Site
from plc_sim.server import SimulatorConfig, SimulatorThread
from tests.integration.batch.support import (
    RECIPE_ID,
    TIME_SCALE,
    Driver,
    People,
    auth_services,
    build_alarms,
    build_engine,
    gateway_for,
    import_and_approve,
    record_training,
)

PLC_PASSWORD = "batch-test-plc-password"
APPLICATION_URI = "urn:line-hmi:hmi"


@dataclass(frozen=True)
class PlcClient:
    root: Path

    @property
    def certificate(self) -> Path:
        return self.root / "plc" / "pki" / "own" / "client-cert.der"

    @property
    def key(self) -> Path:
        return self.root / "plc" / "pki" / "own" / "client-key.pem"

    @property
    def password_file(self) -> Path:
        return self.root / "plc" / "password"

    @property
    def server_certificate(self) -> Path:
        return self.root / "plc" / "pki" / "trusted" / "server.der"


@pytest.fixture(scope="session")
def plc_client(tmp_path_factory: pytest.TempPathFactory) -> PlcClient:
    client = PlcClient(tmp_path_factory.mktemp("batch-plc-client"))
    ensure_client_certificate(client.certificate, client.key, APPLICATION_URI)
    client.password_file.write_text(PLC_PASSWORD + "\n", encoding="utf-8")
    return client


@pytest.fixture(scope="session")
def batch_simulator(
    tmp_path_factory: pytest.TempPathFactory, plc_client: PlcClient
) -> Iterator[SimulatorThread]:
    config = SimulatorConfig(
        data_dir=tmp_path_factory.mktemp("batch-plc-sim"),
        port=0,
        seed=7,
        time_scale=TIME_SCALE,
        password=PLC_PASSWORD,
        trusted_clients=(plc_client.certificate,),
    )
    thread = SimulatorThread(config).start()
    try:
        certificate = describe_certificate(thread.server.certificate_path.read_bytes())
        trust_server_certificate(certificate, plc_client.server_certificate)
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def sim(batch_simulator: SimulatorThread) -> SimulatorThread:
    """The shared simulator powered up afresh (Stopped, empty, no faults)."""
    batch_simulator.call(lambda server: server.reset_simulation())
    return batch_simulator


@pytest.fixture
async def gateway(sim: SimulatorThread, plc_client: PlcClient) -> AsyncIterator[Any]:
    gw = gateway_for(
        plc_client.root, sim.endpoint, plc_client.server_certificate, plc_client.password_file
    )
    await gw.connect()
    try:
        yield gw
    finally:
        await gw.disconnect()


@pytest.fixture
def auth(site: Site) -> AuthServices:
    return auth_services(site)


@pytest.fixture
def people(auth: AuthServices, clock: ManualClock) -> People:
    return People.create(auth, clock)


@pytest.fixture
def recipes(site: Site, auth: AuthServices, people: People) -> RecipeService:
    recipes = import_and_approve(site, auth, people)
    trainer = people.login("qa1")
    for user_id in ("op1", "sup1", "sup2"):
        record_training(auth, trainer, user_id, RECIPE_ID)
    auth.sessions.logout(trainer)
    return recipes


@pytest.fixture
def alarms(site: Site, auth: AuthServices) -> AlarmService:
    return build_alarms(site, auth)


@pytest.fixture
def engine(
    site: Site, auth: AuthServices, recipes: RecipeService, gateway: Any, alarms: AlarmService
) -> BatchEngine:
    return build_engine(site, auth, gateway)


@pytest.fixture
def driver(engine: BatchEngine, people: People, gateway: Any) -> Driver:
    return Driver(engine, people, gateway)
