"""The real ``plc-sim`` command: ready line, clean shutdown, and a gateway that survives the
server being killed, frozen or started late."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from hmi.plc import (
    COMM_LOSS_ALARM,
    AsyncuaGateway,
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    PlcEvent,
    PlcNotConnected,
    PlcSecurityError,
    describe_certificate,
    trust_server_certificate,
)
from plc_sim.__main__ import main
from tests.integration.plc.support import ClientSite, SimProcess, next_event

DETECTION_LIMIT_S = 2.0


def connection(state: ConnectionState) -> object:
    return lambda e: isinstance(e, ConnectionStateChanged) and e.state is state


def comm_alarm(active: bool) -> object:
    def match(event: PlcEvent) -> bool:
        return (
            isinstance(event, PlcAlarmEvent)
            and event.code == COMM_LOSS_ALARM
            and (event.active is active)
        )

    return match


@pytest.fixture(scope="module")
def sim_process(
    tmp_path_factory: pytest.TempPathFactory, client_site: ClientSite
) -> Iterator[SimProcess]:
    exported = client_site.root / "exported" / "server.der"
    process = SimProcess(
        tmp_path_factory.mktemp("plc-sim-process"),
        client_site,
        "--export-certificate",
        str(exported),
    )
    try:
        process.start()
        fields = process.fields()
        certificate = describe_certificate(Path(fields["certificate"]).read_bytes())
        trust_server_certificate(certificate, client_site.trusted("process"))
        yield process
    finally:
        process.close()


@pytest.fixture
def proc(sim_process: SimProcess) -> SimProcess:
    """The subprocess simulator, running (restarted on the same port if a test stopped it)."""
    if not sim_process.running:
        sim_process.start()
    return sim_process


@pytest.fixture
async def gateway(proc: SimProcess, client_site: ClientSite) -> AsyncIterator[AsyncuaGateway]:
    gw = client_site.gateway(proc.endpoint, server="process", trainer=False)
    await gw.connect()
    try:
        yield gw
    finally:
        await gw.disconnect()


async def test_the_command_says_where_it_listens_and_is_secure_only(
    proc: SimProcess, client_site: ClientSite
) -> None:
    fields = proc.fields()
    assert fields["endpoint"] == proc.endpoint
    assert fields["security"] == "Basic256Sha256/SignAndEncrypt"
    assert fields["user"] == "hmi"
    assert fields["password_file"] == str(client_site.password_file)
    certificate = describe_certificate(Path(fields["certificate"]).read_bytes())
    assert certificate.sha256 == fields["sha256"]
    exported = client_site.root / "exported" / "server.der"  # --export-certificate
    assert describe_certificate(exported.read_bytes()).sha256 == fields["sha256"]
    insecure = client_site.gateway(
        proc.endpoint, server="process", security_mode="None", allow_insecure=True
    )
    with pytest.raises(PlcSecurityError, match="offers no endpoint with no security"):
        await insecure.connect()


async def test_a_killed_server_is_noticed_within_two_seconds_and_its_restart_recovers(
    proc: SimProcess, gateway: AsyncuaGateway
) -> None:
    stream = gateway.events()
    killed_at = time.monotonic()
    proc.kill()
    await next_event(stream, connection(ConnectionState.LOST), timeout=DETECTION_LIMIT_S + 1)
    assert time.monotonic() - killed_at <= DETECTION_LIMIT_S
    await next_event(stream, comm_alarm(True))
    assert not any(update.good for update in gateway.snapshot().values())
    with pytest.raises(PlcNotConnected):
        await gateway.write("speed_setpoint", 15.0)
    proc.start()  # same port, same certificate
    restored = await next_event(stream, connection(ConnectionState.CONNECTED), timeout=15)
    assert isinstance(restored, ConnectionStateChanged)
    assert restored.reason.startswith("connection restored after")
    await next_event(stream, comm_alarm(False))
    assert all(update.good for update in gateway.snapshot().values())
    assert (await gateway.write("speed_setpoint", 15.0)).value == 15.0


async def test_a_frozen_server_process_is_noticed_and_recovers_when_it_resumes(
    proc: SimProcess, gateway: AsyncuaGateway
) -> None:
    stream = gateway.events()
    frozen_at = time.monotonic()
    proc.signal(signal.SIGSTOP)
    try:
        lost = await next_event(
            stream, connection(ConnectionState.LOST), timeout=DETECTION_LIMIT_S + 1
        )
        assert time.monotonic() - frozen_at <= DETECTION_LIMIT_S
        assert isinstance(lost, ConnectionStateChanged) and "heartbeat" in lost.reason
    finally:
        proc.signal(signal.SIGCONT)
    await next_event(stream, connection(ConnectionState.CONNECTED), timeout=15)
    assert (await gateway.read("heartbeat")).good


async def test_sigterm_stops_cleanly_and_a_waiting_gateway_connects_when_it_is_back(
    proc: SimProcess, client_site: ClientSite
) -> None:
    assert proc.terminate() == 0
    assert proc.proc is not None and proc.proc.stderr is not None
    assert "plc-sim stopped" in proc.proc.stderr.read()
    gateway = client_site.gateway(proc.endpoint, server="process", trainer=False)
    stream = gateway.events()
    await gateway.connect(retry=True)  # the HMI starts before its PLC
    try:
        assert gateway.state is ConnectionState.LOST
        proc.start()
        await next_event(stream, connection(ConnectionState.CONNECTED), timeout=15)
        assert (await gateway.read("state")).value == "Stopped"
    finally:
        await gateway.disconnect()


def test_a_port_in_use_is_a_clear_error_not_a_traceback(
    sim_process: SimProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not sim_process.running:
        sim_process.start()
    assert main(["--port", str(sim_process.port), "--data-dir", str(tmp_path)]) == 1
    assert f"cannot listen on 127.0.0.1:{sim_process.port}" in capsys.readouterr().err
