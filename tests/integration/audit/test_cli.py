"""The ``hmi`` command as an administrator and an inspector use it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hmi.cli import main
from hmi.clock import ManualClock
from hmi.site import Site
from tests.helpers.audit import add_events, attacker

HMI = str(Path(sys.executable).parent / "hmi")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HMI, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_init_creates_a_site_and_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "plant"
    first = run("init", "--data", str(target), "--terminal-id", "BLEND-2", "--site-name", "Plant A")
    assert first.returncode == 0, first.stderr
    assert "BLEND-2" in first.stdout
    key = target / "keys" / "terminal.ed25519"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (
        (target / "keys" / "terminal.ed25519.pub").read_text().startswith("-----BEGIN PUBLIC KEY")
    )
    assert (target / "keys" / "site.key").stat().st_mode & 0o777 == 0o600
    private_pem = key.read_text()
    assert private_pem.splitlines()[1] not in first.stdout + first.stderr  # never printed
    config = (target / "hmi.toml").read_text()
    assert 'terminal_id = "BLEND-2"' in config and "# " in config  # documented defaults
    again = run("init", "--data", str(target))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert key.read_text() == private_pem


def test_data_dir_comes_from_the_environment(tmp_path: Path) -> None:
    target = tmp_path / "from-env"
    assert run("init", env={"HMI_DATA": str(target)}).returncode == 0
    verified = run("audit", "verify", env={"HMI_DATA": str(target)})
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "INTACT" in verified.stdout


def test_invalid_terminal_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--data", str(tmp_path / "x"), "--terminal-id", "kiosk 1"]) == 2
    assert "terminal ID 'kiosk 1' is not valid" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('terminal_id = "KIOSK-01"', 'terminal_id = "kiosk one"'), "[site] terminal_id"),
        (
            ("checkpoint_every_events = 1000", "checkpoint_every_events = 0"),
            "[audit] checkpoint_every_events",
        ),
        (
            ("checkpoint_every_events = 1000", 'checkpoint_every_events = "often"'),
            "[audit] checkpoint_every_events",
        ),
        (("idle_lock_minutes = 5", "idle_lock_minutes = -1"), "[session] idle_lock_minutes"),
        (("lockout_threshold = 5", "lockout_threshold = 500"), "[password] lockout_threshold"),
        (("argon2_memory_kib = 65536", "argon2_memory_kib = 1024"), "[password] argon2_memory_kib"),
        (('url = ""', 'url = "mysql://x"'), "[database] url"),
        (("[audit]", "[audit]\nchekpoint_every = 3"), "[audit] chekpoint_every: unknown key"),
        (("[site]", "[site"), "not valid TOML"),
    ],
)
def test_bad_config_values_name_the_key_and_touch_nothing(
    site: Site, capsys: pytest.CaptureFixture[str], edit: tuple[str, str], message: str
) -> None:
    config = site.data_dir / "hmi.toml"
    text = config.read_text()
    assert edit[0] in text
    config.write_text(text.replace(edit[0], edit[1], 1))
    db = site.data_dir / "hmi.db"
    site.close()
    before = (db.stat().st_mtime_ns, db.stat().st_size)
    with sqlite3.connect(db) as conn:
        count = conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0]
    assert main(["audit", "verify", "--data", str(site.data_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert (db.stat().st_mtime_ns, db.stat().st_size) == before
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0] == count


def test_missing_site_says_how_to_create_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "show", "--data", str(tmp_path / "nothing")]) == 2
    assert "hmi init --data" in capsys.readouterr().err


def test_verify_exit_status_json_and_nothing_written(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    add_events(site, 5)
    assert main(["audit", "verify", "--data", str(site.data_dir), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == []
    attacker(site.data_dir / "hmi.db").execute("UPDATE audit_event SET reason='x' WHERE seq=4")
    assert main(["audit", "verify", "--data", str(site.data_dir), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == [
        {
            "kind": "modified",
            "terminal": "KIOSK-01",
            "seq": 4,
            "message": "content does not match its hash",
        }
    ]
    assert main(["audit", "verify", "--data", str(site.data_dir)]) == 1
    human = capsys.readouterr().out
    assert "NOT INTACT" in human and "modified" in human
    # Verify only reads: no event was appended to the database it checked (intact or not).
    with sqlite3.connect(site.data_dir / "hmi.db") as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM audit_event")]
    assert not [a for a in actions if a.startswith("audit.verify")]
    assert len(actions) == 3 + 5  # the set-up events and the five added


def test_incremental_verify_checks_only_new_rows(
    site: Site, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    clock.set(datetime.now(UTC))  # the CLI records its run with the real clock
    add_events(site, 30)
    site.audit.checkpoint("test")
    args = ["audit", "verify", "--data", str(site.data_dir), "--json"]
    assert main(args) == 0
    full = json.loads(capsys.readouterr().out)
    clock.set(datetime.now(UTC))
    add_events(site, 4)
    assert main([*args, "--incremental"]) == 0
    incremental = json.loads(capsys.readouterr().out)
    anchor = incremental["incremental_from"]["KIOSK-01"]
    assert anchor == full["chains"]["KIOSK-01"]["last_seq"]
    # the anchor row and the 4 new events (verify itself records nothing)
    assert incremental["rows_checked"] == 5
    # tampering before the anchor is still caught by the witnessed checkpoint's row
    attacker(site.data_dir / "hmi.db").execute(
        f"UPDATE audit_event SET row_hash = 'ab' WHERE seq = {anchor}"
    )
    assert main([*args, "--incremental"]) == 1
    assert "forked" in capsys.readouterr().out


def test_show_filters(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    add_events(site, 3)
    add_events(site, 2, prefix="other.thing")
    assert (
        main(["audit", "show", "--data", str(site.data_dir), "--action", "other", "--user", "op1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "2 audit event(s)" in out and "other.thing" in out and "test.event" not in out
    assert main(["audit", "show", "--data", str(site.data_dir), "--from", "yesterday"]) == 2
    assert "not a date" in capsys.readouterr().err


def test_substituted_incremental_state_means_a_full_run(
    site: Site, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    clock.set(datetime.now(UTC))
    add_events(site, 10)
    site.audit.checkpoint("test")
    args = ["audit", "verify", "--data", str(site.data_dir), "--json"]
    assert main(args) == 0
    capsys.readouterr()
    state = site.data_dir / "audit-verify-state.json"
    saved = json.loads(state.read_text())
    assert saved["signature"] and saved["anchors"]
    clock.set(datetime.now(UTC))
    add_events(site, 3)
    site.audit.checkpoint("later")
    # Put the latest (never verified) checkpoint in as the anchor: its signature is a
    # checkpoint's, not a verification's, so the state is ignored.
    latest = (site.settings.witness_path.read_text().splitlines())[-1]
    saved["anchors"]["KIOSK-01"] = json.loads(latest)
    state.write_text(json.dumps(saved))
    assert main([*args, "--incremental"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["incremental_from"] == {}
    assert report["rows_checked"] == report["chains"]["KIOSK-01"]["last_seq"]


def test_missing_database_is_a_sentence(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.close()
    for path in site.data_dir.glob("hmi.db*"):
        path.unlink()
    assert main(["audit", "verify", "--data", str(site.data_dir)]) == 2  # cannot verify
    err = capsys.readouterr().err
    assert "cannot verify" in err and "does not exist" in err and "Traceback" not in err
