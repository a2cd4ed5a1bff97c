"""Helpers for the PLC integration tests: the HMI-side PKI, waiting on event streams, and the
real ``plc-sim`` command in a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmi.plc import (
    ArgSpec,
    AsyncuaGateway,
    MethodSpec,
    PlcEvent,
    PlcEventStream,
    PlcSettings,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "integration-test-password"
APPLICATION_URI = "urn:line-hmi:hmi"
TIME_SCALE = 50.0
"""Simulated seconds per second: a 1-minute blend takes 1.2 s, a trip delay 20 ms."""

TRAINER_METHODS = {
    "inject_fault": MethodSpec(
        path="Simulation/InjectFault",
        args=(ArgSpec(name="fault", type="str"), ArgSpec(name="value", type="float", low=0)),
    ),
    "clear_fault": MethodSpec(
        path="Simulation/ClearFault", args=(ArgSpec(name="fault", type="str"),)
    ),
}
"""The simulator's fault injection, reached through the tag map like any other command."""


@dataclass(frozen=True)
class ClientSite:
    """The HMI side of the PKI: client key pair, PLC password file, trusted PLC certificates."""

    root: Path

    @property
    def client_certificate(self) -> Path:
        return self.root / "plc" / "pki" / "own" / "client-cert.der"

    @property
    def client_key(self) -> Path:
        return self.root / "plc" / "pki" / "own" / "client-key.pem"

    @property
    def password_file(self) -> Path:
        return self.root / "plc" / "password"

    def trusted(self, name: str) -> Path:
        return self.root / "plc" / "pki" / "trusted" / f"{name}.der"

    def settings(
        self, endpoint: str, *, server: str = "inproc", trainer: bool = True, **changes: Any
    ) -> PlcSettings:
        methods = dict(PlcSettings().methods)
        if trainer:
            methods.update(TRAINER_METHODS)
        values: dict[str, Any] = {
            "endpoint": endpoint,
            "server_certificate": str(self.trusted(server)),
            "methods": methods,
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
        }
        values.update(changes)
        return PlcSettings.model_validate(values)

    def gateway(self, endpoint: str, **changes: Any) -> AsyncuaGateway:
        return AsyncuaGateway(self.settings(endpoint, **changes), base_dir=self.root)


async def next_event(
    stream: PlcEventStream, match: Callable[[PlcEvent], bool], timeout: float = 5.0
) -> PlcEvent:
    """The next event on the stream that ``match`` accepts; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seen: list[str] = []
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no matching event within {timeout} s; last seen: {seen[-5:]}")
        try:
            async with asyncio.timeout(remaining):
                event = await stream.get()
        except TimeoutError:
            continue
        if match(event):
            return event
        seen.append(type(event).__name__)


async def wait_for_tag(
    gateway: AsyncuaGateway, tag: str, match: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    """Wait until the latest good value of ``tag`` (as subscribed) satisfies ``match``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        update = gateway.snapshot()[tag]
        if update.good and match(update.value):
            return update.value
        if loop.time() > deadline:
            raise AssertionError(f"{tag} is {update.value!r} ({update.reason or 'good'})")
        await asyncio.sleep(0.01)


class SimProcess:
    """The real ``plc-sim`` command in a subprocess, for kill / freeze / restart scenarios."""

    def __init__(self, data_dir: Path, site: ClientSite, *extra: str) -> None:
        self.data_dir = data_dir
        self.site = site
        self.extra = extra
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.ready_line = ""
        self.startup_s = 0.0

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/blender/"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> SimProcess:
        command = [
            sys.executable,
            "-m",
            "plc_sim",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--password-file",
            str(self.site.password_file),
            "--trust-client",
            str(self.site.client_certificate),
            "--time-scale",
            str(TIME_SCALE),
            *self.extra,
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        started = time.monotonic()
        self.proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.ready_line = self._read_ready(timeout)
        self.startup_s = time.monotonic() - started
        fields = self.fields()
        self.port = int(re.search(r":(\d+)/", fields["endpoint"]).group(1))  # type: ignore[union-attr]
        return self

    def _read_ready(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("plc-sim ready"):
                    return line.strip()
                if not line and self.proc.poll() is not None:
                    break
        self.kill()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        raise AssertionError(f"plc-sim did not become ready: {stderr[-2000:]}")

    def fields(self) -> dict[str, str]:
        tokens = shlex.split(self.ready_line.removeprefix("plc-sim ready"))
        return dict(token.split("=", 1) for token in tokens)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGCONT)
        self.proc.terminate()
        return self.proc.wait(timeout)

    def close(self) -> None:
        self.kill()
        if self.proc is not None:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


async def wait_state(gateway: AsyncuaGateway, state: str, timeout: float = 5.0) -> None:
    """Poll the PackML state until it is ``state`` (acting states end by themselves)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (current := (await gateway.read("state")).value) != state:
        if loop.time() > deadline:
            raise AssertionError(f"state is still {current}, expected {state}")
        await asyncio.sleep(0.02)
