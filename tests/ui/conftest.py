"""Fixtures for the Pilot tests: a real site with the demo cast (cheap argon2, tests only),
a fixed clock and time zone, and helpers to drive the App."""

from __future__ import annotations

import difflib
import html
import pickle
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pytest
from pytest_textual_snapshot import node_to_report_path
from sqlalchemy import select

from hmi.app import HmiApp, make_app
from hmi.audit.tables import audit_event
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.totp import code_at
from hmi.demo import DemoUser, seed_demo_site
from hmi.plc import (
    AsyncuaGateway,
    PlcSettings,
    describe_certificate,
    ensure_client_certificate,
    trust_server_certificate,
)
from hmi.screens.context import DemoAccount
from hmi.site import Site
from plc_sim.server import SimulatorConfig, SimulatorThread

#: Far below the product floor: for tests only, never in a site configuration.
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@dataclass
class Kiosk:
    """A seeded site, its services and the demo cast (user ID -> DemoUser)."""

    site: Site
    auth: AuthServices
    users: dict[str, DemoUser]

    def app(self, **kwargs: object) -> HmiApp:
        accounts = tuple(
            DemoAccount(u.user_id, u.role, u.password, u.totp_secret) for u in self.users.values()
        )
        options: dict[str, object] = {"tz": UTC, "watch_idle": False, "demo_accounts": accounts}
        options.update(kwargs)
        return make_app(self.site, auth=self.auth, **options)  # type: ignore[arg-type]

    def code(self, user_id: str) -> str:
        secret = self.users[user_id].totp_secret
        assert secret is not None
        return code_at(secret, self.site.clock.now())

    def actions(self) -> list[str]:
        with self.site.engine.connect() as conn:
            return [
                r[0] for r in conn.execute(select(audit_event.c.action).order_by(audit_event.c.id))
            ]


@pytest.fixture
def kiosk(site: Site) -> Iterator[Kiosk]:
    users = {u.user_id: u for u in seed_demo_site(site, argon2=CHEAP_ARGON2)}
    auth = build_auth_services(
        site.settings, site.engine, site.audit, site.clock, argon2=CHEAP_ARGON2
    )
    yield Kiosk(site, auth, users)


# -- a real simulator for the flows that drive equipment --------------------------------------

PLC_PASSWORD = "ui-test-plc-password"
TIME_SCALE = 300.0
"""Simulated seconds per second: the 15-minute blend takes 3 s."""


@dataclass(frozen=True)
class PlcClient:
    root: Path

    @property
    def certificate(self) -> Path:
        return self.root / "own" / "client-cert.der"

    @property
    def key(self) -> Path:
        return self.root / "own" / "client-key.pem"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    @property
    def server_certificate(self) -> Path:
        return self.root / "trusted" / "server.der"

    def gateway(self, endpoint: str) -> AsyncuaGateway:
        settings = PlcSettings.model_validate(
            {
                "endpoint": endpoint,
                "server_certificate": str(self.server_certificate),
                "password_file": str(self.password_file),
                "client_certificate": str(self.certificate),
                "client_private_key": str(self.key),
                "reconnect_initial_s": 0.2,
                "reconnect_max_s": 1.0,
                # these tests are not about link loss (tests/integration/plc is): on a busy
                # CI machine a 1 s pause of the simulator's thread is load, not a PLC fault
                "heartbeat_timeout_s": 3.0,
            }
        )
        return AsyncuaGateway(settings, base_dir=self.root)


@pytest.fixture(scope="module")
def plc_client(tmp_path_factory: pytest.TempPathFactory) -> PlcClient:
    client = PlcClient(tmp_path_factory.mktemp("ui-plc-client"))
    ensure_client_certificate(client.certificate, client.key, "urn:line-hmi:hmi")
    client.password_file.write_text(PLC_PASSWORD + "\n", encoding="utf-8")
    return client


@pytest.fixture(scope="module")
def simulator(
    tmp_path_factory: pytest.TempPathFactory, plc_client: PlcClient
) -> Iterator[SimulatorThread]:
    """One seeded simulator per test module, on a free loopback port, secure endpoint only."""
    config = SimulatorConfig(
        data_dir=tmp_path_factory.mktemp("ui-plc-sim"),
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
def sim(simulator: SimulatorThread) -> SimulatorThread:
    """The shared simulator powered up afresh (Stopped, empty, no faults)."""
    simulator.call(lambda server: server.reset_simulation())
    return simulator


_SVG_TEXT = re.compile(r'<text[^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>')


def svg_lines(svg: str) -> list[str]:
    """The characters of a Textual screenshot, row by row (colours left out)."""
    rows: dict[float, list[tuple[float, str]]] = {}
    for match in _SVG_TEXT.finditer(svg):
        x, y = float(match.group(1)), float(match.group(2))
        rows.setdefault(y, []).append((x, html.unescape(match.group(3))))
    lines = []
    for y in sorted(rows):
        line = ""
        for x, text in sorted(rows[y]):
            line = line.ljust(round(x / 12.2)) + text
        lines.append(line.replace("\xa0", " ").rstrip())
    return lines


@pytest.fixture
def snap_compare(
    snap_compare: Callable[..., bool], request: pytest.FixtureRequest
) -> Callable[..., bool]:
    """The plugin's comparison, which on a mismatch also prints what differs as text, so a
    failure in CI can be read without the HTML report (colour-only changes show no lines)."""

    def compare(*args: object, **kwargs: object) -> bool:
        result = snap_compare(*args, **kwargs)
        if not result:
            # the file the plugin itself wrote for this test a moment ago
            data = pickle.loads(node_to_report_path(request.node).read_bytes())  # noqa: S301
            expected, actual = str(data[1]), str(data[2])
            diff = difflib.unified_diff(
                svg_lines(expected), svg_lines(actual), "snapshot", "this run", lineterm=""
            )
            print("\n".join(diff) or "(the text is the same: a colour or style differs)")
        return result

    return compare
