"""Security of the PLC link: SignAndEncrypt by default, explicit trust both ways, visible
insecurity, refused credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from hmi.plc import (
    COMM_LOSS_ALARM,
    ConnectionState,
    ConnectionStateChanged,
    PlcAuthenticationFailed,
    PlcCertificateUntrusted,
    PlcClientCertificateRejected,
    PlcConnectionFailed,
    describe_certificate,
    ensure_client_certificate,
    trust_server_certificate,
)
from plc_sim.server import SimulatorThread, find_free_port
from tests.integration.plc.support import APPLICATION_URI, ClientSite, wait_for_tag


async def test_insecure_needs_the_flag_and_says_so_everywhere(
    sim: SimulatorThread, client_site: ClientSite
) -> None:
    gateway = client_site.gateway(sim.endpoint, security_mode="None", allow_insecure=True)
    stream = gateway.events()
    await gateway.connect()
    try:
        assert gateway.state is ConnectionState.CONNECTED and not gateway.secure
        assert gateway.security_description.startswith("INSECURE")
        assert "INSECURE" in gateway.state_reason
        changes = []
        while (event := stream.get_nowait()) is not None:
            if isinstance(event, ConnectionStateChanged):
                changes.append(event)
        assert changes[-1].state is ConnectionState.CONNECTED and changes[-1].secure is False
        assert (await gateway.read("state")).value == "Stopped"
        assert (await gateway.write("speed_setpoint", 16.0)).value == 16.0
        await gateway.call("reset")
        beat = gateway.snapshot()["heartbeat"].value
        await wait_for_tag(gateway, "heartbeat", lambda v: v != beat)  # live updates flow
        await wait_for_tag(gateway, "state", lambda v: v == "Idle")
    finally:
        await gateway.disconnect()


async def test_a_wrong_password_is_refused_and_retrying_does_not_hide_it(
    sim: SimulatorThread, client_site: ClientSite
) -> None:
    gateway = client_site.gateway(sim.endpoint, password="not-the-password")
    with pytest.raises(PlcAuthenticationFailed, match="refused user 'hmi'"):
        await gateway.connect()
    with pytest.raises(PlcAuthenticationFailed):
        await gateway.connect(retry=True)
    assert gateway.state is ConnectionState.DISCONNECTED


async def test_an_untrusted_server_certificate_is_refused_until_trusted(
    sim: SimulatorThread, client_site: ClientSite, tmp_path: Path
) -> None:
    trusted = tmp_path / "trusted" / "server.der"
    gateway = client_site.gateway(sim.endpoint, server_certificate=str(trusted))
    with pytest.raises(PlcCertificateUntrusted, match="not trusted yet") as info:
        await gateway.connect()
    presented = info.value.certificate
    assert presented is not None
    assert presented.sha256 == sim.server.certificate_fingerprint
    assert presented.application_uri == "urn:line-hmi:plc-sim"
    assert (await gateway.fetch_server_certificate()).sha256 == presented.sha256
    # an administrator compared the fingerprint and trusted it (the service audits this)
    trust_server_certificate(presented, trusted)
    await gateway.connect()
    try:
        assert gateway.state is ConnectionState.CONNECTED
    finally:
        await gateway.disconnect()


async def test_another_certificate_is_refused_even_from_the_right_address(
    sim: SimulatorThread, client_site: ClientSite, tmp_path: Path
) -> None:
    impostor_cert, impostor_key = tmp_path / "impostor.der", tmp_path / "impostor.pem"
    ensure_client_certificate(impostor_cert, impostor_key, "urn:line-hmi:plc-sim")
    trusted = tmp_path / "server.der"
    trust_server_certificate(describe_certificate(impostor_cert.read_bytes()), trusted)
    gateway = client_site.gateway(sim.endpoint, server_certificate=str(trusted))
    with pytest.raises(PlcCertificateUntrusted, match="not the trusted one"):
        await gateway.connect()
    assert gateway.state is ConnectionState.DISCONNECTED


async def test_the_plc_refuses_a_client_certificate_it_does_not_trust(
    sim: SimulatorThread, client_site: ClientSite, tmp_path: Path
) -> None:
    stranger_cert, stranger_key = tmp_path / "own" / "cert.der", tmp_path / "own" / "key.pem"
    ensure_client_certificate(stranger_cert, stranger_key, APPLICATION_URI)
    gateway = client_site.gateway(
        sim.endpoint,
        client_certificate=str(stranger_cert),
        client_private_key=str(stranger_key),
    )
    with pytest.raises(PlcClientCertificateRejected, match="does not trust this terminal"):
        await gateway.connect()
    rejected = sim.config.pki.rejected
    fingerprint = describe_certificate(stranger_cert.read_bytes()).sha256
    assert (rejected / f"{fingerprint[:16]}.der").is_file()  # kept for an administrator


async def test_an_unreachable_plc_fails_fast_or_is_retried_in_the_background(
    client_site: ClientSite,
) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{find_free_port()}/blender/"
    gateway = client_site.gateway(endpoint)
    with pytest.raises(PlcConnectionFailed, match="cannot reach the PLC"):
        await gateway.connect()
    assert gateway.state is ConnectionState.DISCONNECTED
    stream = gateway.events()
    await gateway.connect(retry=True)
    try:
        assert gateway.state is ConnectionState.LOST
        alarms = []
        while (event := stream.get_nowait()) is not None:
            if not isinstance(event, ConnectionStateChanged) and hasattr(event, "code"):
                alarms.append(event)
        assert [(a.code, a.active) for a in alarms] == [(COMM_LOSS_ALARM, True)]
    finally:
        await gateway.disconnect()
    assert gateway.state is ConnectionState.DISCONNECTED
