"""The real ``hmi demo`` in a real terminal (tmux): start, log in by keystrokes, read the screen,
open the recipes, quit; the simulator stops and the shutdown is in the audit trail."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


class Terminal:
    """A tmux session on its own server socket, driven by keys and read as plain text."""

    def __init__(self, command: list[str], *, width: int = 100, height: int = 30) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("this test needs tmux: install it with 'apt-get install -y tmux'")
        self.tmux = tmux
        self.socket = f"hmi-e2e-{uuid.uuid4().hex[:8]}"
        self.started = time.monotonic()
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "e2e",
            "-x",
            str(width),
            "-y",
            str(height),
            " ".join(command),
        )

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            [self.tmux, "-L", self.socket, *args], capture_output=True, text=True, check=False
        )
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "e2e")

    def alive(self) -> bool:
        return "e2e" in self._tmux("list-sessions", "-F", "#{session_name}")

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "e2e", "-l", text)
        time.sleep(0.2)

    def key(self, name: str) -> None:
        self._tmux("send-keys", "-t", "e2e", name)
        time.sleep(0.3)

    def wait_for(self, text: str, timeout: float = 20.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.screen():
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise AssertionError(
            f"{text!r} did not appear within {timeout} s; screen:\n{self.screen()}"
        )

    def wait_closed(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return
            time.sleep(0.1)
        raise AssertionError(f"the terminal did not close; screen:\n{self.screen()}")

    def close(self) -> None:
        self._tmux("kill-server")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Terminal, Path]]:
    data = tmp_path / "demo"
    terminal = Terminal([sys.executable, "-m", "hmi", "demo", "--data", str(data)])
    try:
        yield terminal, data
    finally:
        terminal.close()


def audit_actions(data: Path) -> list[str]:
    with sqlite3.connect(data / "hmi.db") as conn:
        return [r[0] for r in conn.execute("SELECT action FROM audit_event ORDER BY id")]


def simulator_running(data: Path) -> bool:
    found = subprocess.run(
        ["pgrep", "-f", f"plc_sim.*{data}"], capture_output=True, text=True, check=False
    )
    return bool(found.stdout.strip())


def test_demo_login_start_batch_and_quit(demo: tuple[Terminal, Path]) -> None:
    terminal, data = demo
    seconds = terminal.wait_for("copper-lantern-meadow-42")
    assert seconds < 10, f"login screen took {seconds:.1f} s"
    terminal.wait_for("Log in (F2)")
    assert "DEMO SITE" in terminal.screen()
    terminal.type("operator")
    terminal.key("Enter")
    terminal.type("copper-lantern-meadow-42")
    terminal.key("Enter")
    terminal.wait_for("User: operator (operator)")
    terminal.wait_for("PLC: connected")
    terminal.wait_for("State: Stopped")
    assert "Speed" in terminal.screen() and "rpm" in terminal.screen()
    terminal.key("F1")
    terminal.wait_for("Go to")
    terminal.key("2")
    terminal.wait_for("PARA500-FB")
    assert "effective" in terminal.screen()
    terminal.key("Down")
    terminal.key("Down")
    terminal.wait_for("PARA500-FB v4 - Paracetamol")
    terminal.key("F2")
    terminal.wait_for("Start a batch of PARA500-FB v4")
    terminal.type("B-E2E-0001")
    terminal.key("F2")
    terminal.wait_for("Batch B-E2E-0001 - Paracetamol 500 mg final")
    assert "RUNNING" in terminal.screen()
    terminal.wait_for("Step 1: Line clearance")
    terminal.key("C-o")  # the demo codes over the batch screen, for a co-signature
    terminal.wait_for("Demo accounts and authenticator codes")
    assert "supervisor" in terminal.screen()
    terminal.key("Escape")
    deadline = time.monotonic() + 10
    while "authenticator codes" in terminal.screen() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "authenticator codes" not in terminal.screen(), "Esc closes the demo codes"
    terminal.key("C-q")
    terminal.wait_for("Close the HMI?")
    terminal.key("F2")
    terminal.wait_closed()
    actions = audit_actions(data)
    assert actions[-3:] == ["auth.session.ended", "terminal.ui.stopped", "demo.simulator.stopped"]
    assert "auth.login.succeeded" in actions and "batch.started" in actions
    assert not simulator_running(data)
