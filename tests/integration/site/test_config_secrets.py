"""No database password lives in ``hmi.toml``, and nothing recorded or printed from the
configuration carries a secret: a URL with a password is refused naming the key (without
repeating the password), the password comes from a 0600 file or ``$HMI_DB_PASSWORD``, every URL
shown goes through one redaction, and ``config.changed`` records the text with its secrets
redacted. Real site folders, real SQLite files, the real ``hmi`` entry point."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from hmi.cli import main
from hmi.clock import ManualClock
from hmi.config import (
    DB_PASSWORD_ENV,
    ConfigError,
    database_password,
    load_settings,
    redact_config_text,
)
from hmi.db import redact_url, url_password_keys, with_password
from hmi.site import CONFIG_TEMPLATE, Site, open_site

SECRET = "s3cret-Db-pw-2026"
SERVER = "postgresql+psycopg://hmi@db.plant-a.example:5432/hmi"


def _set_database(site_dir: Path, *lines: str) -> None:
    """Replace the documented ``url`` and ``password_file`` lines of ``[database]``."""
    config = site_dir / "hmi.toml"
    text = config.read_text(encoding="utf-8")
    head, rest = text.split("[database]\n", 1)
    section, tail = rest.split("\n[", 1)
    kept = [
        line
        for line in section.splitlines()
        if not line.startswith(("url =", "password_file =", " "))
    ]
    assert len(kept) == 1 and kept[0].startswith("busy_timeout_ms"), kept
    body = "\n".join([*lines, *kept])
    config.write_text(f"{head}[database]\n{body}\n\n[{tail}", encoding="utf-8")


def _db_state(site_dir: Path) -> tuple[int, int, int]:
    db = site_dir / "hmi.db"
    with sqlite3.connect(db) as conn:
        count = int(conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0])
    return db.stat().st_mtime_ns, db.stat().st_size, count


@pytest.mark.parametrize(
    ("url", "where"),
    [
        (f"postgresql://hmi:{SECRET}@db/hmi", "password"),
        (f"postgresql+psycopg://hmi:{SECRET}@db.plant-a.example:5432/hmi", "password"),
        (f"postgresql://hmi@db/hmi?sslmode=require&password={SECRET}", "password"),
        (f"postgresql://hmi@db/hmi?sslpassword={SECRET}", "sslpassword"),
        (f"sqlite:////srv/hmi/hmi.db?password={SECRET}", "password"),
    ],
)
def test_a_url_with_a_password_is_refused_naming_the_key_not_the_password(
    site: Site, capsys: pytest.CaptureFixture[str], url: str, where: str
) -> None:
    site.close()
    _set_database(site.data_dir, f'url = "{url}"')
    before = _db_state(site.data_dir)
    with pytest.raises(ConfigError) as caught:
        load_settings(site.data_dir)
    [problem] = caught.value.problems
    assert problem.startswith("[database] url:") and f"({where})" in problem
    assert "[database] password_file" in problem and DB_PASSWORD_ENV in problem
    assert SECRET not in str(caught.value)
    # the real command: stopped before anything is touched, the password never printed
    assert main(["audit", "verify", "--data", str(site.data_dir)]) == 2
    out, err = capsys.readouterr()
    assert "[database] url" in err and "password_file" in err
    assert SECRET not in out + err and "Traceback" not in err
    assert _db_state(site.data_dir) == before


def _server_site(site: Site, *extra: str) -> Path:
    site.close()
    _set_database(site.data_dir, f'url = "{SERVER}"', *extra)
    return site.data_dir


def test_the_password_comes_from_a_0600_file_named_by_password_file(site: Site) -> None:
    data = _server_site(site, 'password_file = "keys/db.password"')
    secret_file = data / "keys" / "db.password"
    secret_file.write_text(f"  {SECRET}  \nsecond line ignored\n", encoding="utf-8")
    secret_file.chmod(0o600)
    settings = load_settings(data)
    assert settings.database.password_file == "keys/db.password"
    assert settings.database_url == SERVER  # what is shown: never a password
    assert database_password(settings, environ={}) == SECRET
    url = with_password(settings.database_url, database_password(settings, environ={}))
    assert make_url(url).password == SECRET  # what the engine is built with, in memory only
    assert SECRET not in redact_url(url) and "hmi:***@db.plant-a.example" in redact_url(url)


@pytest.mark.parametrize(
    ("mode", "content", "env", "expected"),
    [
        (0o640, SECRET, {}, "can be read by others (mode 640)"),
        (0o604, SECRET, {}, "can be read by others (mode 604)"),
        (0o600, "\n", {}, "is empty"),
        (None, "", {}, "does not exist"),
        (0o600, SECRET, {DB_PASSWORD_ENV: "from-the-environment"}, "keep one of them"),
    ],
)
def test_a_bad_password_file_is_refused_naming_the_key(
    site: Site,
    mode: int | None,
    content: str,
    env: dict[str, str],
    expected: str,
) -> None:
    data = _server_site(site, 'password_file = "keys/db.password"')
    secret_file = data / "keys" / "db.password"
    if mode is not None:
        secret_file.write_text(content, encoding="utf-8")
        secret_file.chmod(mode)
    settings = load_settings(data)
    with pytest.raises(ConfigError) as caught:
        database_password(settings, environ=env)
    [problem] = caught.value.problems
    assert problem.startswith("[database] password_file:") and expected in problem, problem
    assert SECRET not in str(caught.value)


def test_a_group_readable_password_file_stops_the_site_before_it_opens(
    site: Site, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _server_site(site, 'password_file = "keys/db.password"')
    secret_file = data / "keys" / "db.password"
    secret_file.write_text(SECRET + "\n", encoding="utf-8")
    secret_file.chmod(0o644)
    monkeypatch.delenv(DB_PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"\[database\] password_file: .*\(mode 644\)"):
        open_site(data)
    assert main(["audit", "verify", "--data", str(data)]) == 2
    out, err = capsys.readouterr()
    assert "[database] password_file" in err and "chmod 600" in err
    assert SECRET not in out + err and "Traceback" not in err


def test_the_environment_variable_is_the_other_way(site: Site) -> None:
    data = _server_site(site)
    settings = load_settings(data)
    assert database_password(settings, environ={DB_PASSWORD_ENV: SECRET}) == SECRET
    assert database_password(settings, environ={DB_PASSWORD_ENV: ""}) is None
    assert database_password(settings, environ={}) is None  # e.g. peer or certificate auth


def test_sqlite_has_no_password(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DB_PASSWORD_ENV, SECRET)
    assert database_password(site.settings) is None
    site.close()
    _set_database(site.data_dir, 'url = ""', 'password_file = "keys/db.password"')
    with pytest.raises(ConfigError) as caught:
        load_settings(site.data_dir)
    assert caught.value.problems[0].startswith("[database] password_file:")
    assert "only for a postgresql:// url" in caught.value.problems[0]


def test_a_secret_of_the_wrong_type_is_not_echoed(site: Site) -> None:
    site.close()
    config = site.data_dir / "hmi.toml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace('password = ""', "password = 98765432123", 1))
    with pytest.raises(ConfigError) as caught:
        load_settings(site.data_dir)
    [problem] = caught.value.problems
    assert problem.startswith("[plc] password:") and "98765432123" not in problem


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://hmi:{SECRET}@db/hmi", "postgresql://hmi:***@db/hmi"),
        (f"postgresql://hmi@db/hmi?password={SECRET}", "postgresql://hmi@db/hmi?password=***"),
        (
            f"postgresql://hmi:{SECRET}@db/hmi?sslmode=require&sslpassword={SECRET}",
            "postgresql://hmi:***@db/hmi?sslmode=require&sslpassword=***",
        ),
        (f"opc.tcp://plc:{SECRET}@10.0.0.7:4840/blender/", "opc.tcp://plc:***@10.0.0.7:4840/"),
        ("sqlite:////srv/hmi/hmi.db", "sqlite:////srv/hmi/hmi.db"),
        ("postgresql://hmi@db/hmi", "postgresql://hmi@db/hmi"),
    ],
)
def test_one_redaction_for_every_url_shown(url: str, shown: str) -> None:
    redacted = redact_url(url)
    assert SECRET not in redacted
    assert redacted.startswith(shown), redacted
    assert bool(url_password_keys(url)) == (redacted != url)


def test_the_recorded_configuration_text_has_no_secret(
    site: Site, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    plc_secret = "plc-Secret-4711"
    site.close()
    config = site.data_dir / "hmi.toml"
    text = config.read_text(encoding="utf-8")
    edited = text.replace('password = ""', f'password = "{plc_secret}"', 1).replace(
        "[plc]\n",
        f"[plc]\n# the old server was postgresql://hmi:{SECRET}@old-db/hmi\n",
        1,
    )
    assert edited != text
    config.write_text(edited, encoding="utf-8")
    clock.advance(60)
    reopened = open_site(site.data_dir, clock=clock)
    try:
        with reopened.engine.connect() as conn:
            details = conn.exec_driver_sql(
                "SELECT details FROM audit_event WHERE action = 'config.changed'"
            ).scalar_one()
        recorded = json.loads(details)
        assert f'password = "{"<redacted>"}"' in recorded["text"]
        assert "postgresql://hmi:***@old-db/hmi" in recorded["text"]
        assert plc_secret not in details and SECRET not in details
        assert recorded["config_sha256"] == hashlib.sha256(recorded["text"].encode()).hexdigest()
        # the rest of the file is recorded as it is
        assert recorded["text"] == redact_config_text(edited)
        assert (
            recorded["text"]
            .replace('"<redacted>"', f'"{plc_secret}"')
            .replace("hmi:***@", f"hmi:{SECRET}@")
            == edited
        )
    finally:
        reopened.close()
    # the next start sees no change: the recorded hash is the hash of the recorded text
    again = open_site(site.data_dir, clock=clock)
    again.close()
    assert main(["audit", "show", "--data", str(site.data_dir), "--action", "config."]) == 0
    shown = capsys.readouterr().out
    assert shown.count("config.changed") == 1 and plc_secret not in shown
    raw = b"".join(p.read_bytes() for p in site.data_dir.glob("hmi.db*"))
    assert plc_secret.encode() not in raw and SECRET.encode() not in raw


def test_the_shipped_template_needs_no_redaction_and_documents_password_file() -> None:
    text = CONFIG_TEMPLATE.format(
        mode="production", terminal_id="KIOSK-01", site_name="Plant A", line_name="Line 1"
    )
    assert redact_config_text(text) == text
    assert 'password_file = ""' in text.split("[keys]")[0]
    assert DB_PASSWORD_ENV in text


def test_a_verify_report_prints_the_url_through_the_redaction(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    data = site.data_dir
    site.close()
    assert main(["audit", "verify", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    unwrapped = out.replace("\n", "")
    assert redact_url(f"sqlite:///{data.resolve() / 'hmi.db'}") in unwrapped
    assert os.fspath(data.resolve() / "hmi.db") in unwrapped
