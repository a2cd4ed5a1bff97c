"""Fixtures: a real simulator on a free loopback port, an HMI-side PKI, connected gateways.

One in-process simulator per test session (per xdist worker) runs on its own event loop in a
background thread (asyncua server start-up is slow); each test gets it reset to power-on.
Tests that kill, freeze or restart the server use ``SimProcess``, the real ``plc-sim`` command
in a subprocess. Everything is torn down at the end, whatever happened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from hmi.plc import (
    AsyncuaGateway,
    describe_certificate,
    ensure_client_certificate,
    trust_server_certificate,
)
from plc_sim.server import SimulatorConfig, SimulatorThread
from tests.integration.plc.support import APPLICATION_URI, PASSWORD, TIME_SCALE, ClientSite


@pytest.fixture(scope="session")
def client_site(tmp_path_factory: pytest.TempPathFactory) -> ClientSite:
    site = ClientSite(tmp_path_factory.mktemp("hmi-site"))
    ensure_client_certificate(site.client_certificate, site.client_key, APPLICATION_URI)
    site.password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    return site


@pytest.fixture(scope="session")
def simulator(
    tmp_path_factory: pytest.TempPathFactory, client_site: ClientSite
) -> Iterator[SimulatorThread]:
    """The shared in-process simulator: secure endpoint plus (``--insecure``) a plain one."""
    config = SimulatorConfig(
        data_dir=tmp_path_factory.mktemp("plc-sim"),
        port=0,
        time_scale=TIME_SCALE,
        insecure=True,
        password=PASSWORD,
        trusted_clients=(client_site.client_certificate,),
    )
    thread = SimulatorThread(config).start()
    try:
        certificate = describe_certificate(thread.server.certificate_path.read_bytes())
        trust_server_certificate(certificate, client_site.trusted("inproc"))
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def sim(simulator: SimulatorThread) -> SimulatorThread:
    """The shared simulator, powered up afresh: no faults, no alarms, state Stopped."""
    simulator.call(lambda server: server.reset_simulation())
    return simulator


@pytest.fixture
async def gateway(sim: SimulatorThread, client_site: ClientSite) -> AsyncIterator[AsyncuaGateway]:
    """A gateway connected securely (Basic256Sha256 SignAndEncrypt, user hmi)."""
    gw = client_site.gateway(sim.endpoint)
    await gw.connect()
    try:
        yield gw
    finally:
        await gw.disconnect()
