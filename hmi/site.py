"""Creating and opening a site data directory: config, keys, database and the audit chain.

This is the one place that turns a data directory into live collaborators; the CLI, the TUI's
``make_app`` and the tests all go through it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from hmi import __version__
from hmi.audit.chain import SYSTEM, AuditLog
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.keys import Signer, create_key_pair, load_signer, write_secret_file
from hmi.clock import Clock, SystemClock, to_utc_text
from hmi.config import CONFIG_FILE_NAME, TERMINAL_ID_PATTERN, Settings, load_settings
from hmi.db import make_engine
from hmi.migrations import migrate, pending


class SiteError(Exception):
    """The site cannot be created or opened; the message says what to do."""


CONFIG_TEMPLATE = """\
# Site configuration for the line HMI.
# Paths are relative to this data directory. Every key is validated at start-up:
# a bad value stops the program with a message naming the key.

mode = "{mode}"                   # "production", or "demo" for training sites

[site]
terminal_id = "{terminal_id}"     # A-Z, 0-9, '-' and '_', 2-32 characters; names every record
site_name = "{site_name}"
line_name = "{line_name}"

[database]
url = ""                          # empty: SQLite file hmi.db here; or postgresql://... for a site
busy_timeout_ms = 5000            # how long a write waits for another writer before refusing

[keys]
signing_key = "keys/terminal.ed25519"        # this terminal's private key (mode 0600)
public_key = "keys/terminal.ed25519.pub"     # exported for verifiers
site_key = "keys/site.key"                   # encrypts TOTP secrets at rest (mode 0600)

[audit]
witness_path = "witness/checkpoints.jsonl"   # put this on separate storage in production
checkpoint_every_events = 1000
checkpoint_every_minutes = 15

[session]
idle_lock_minutes = 5             # inactivity lock of the kiosk
idle_warning_seconds = 30         # countdown shown before the lock
absolute_limit_hours = 12         # a session ends after this, whatever the activity

[password]
min_length_without_totp = 15
min_length_with_totp = 8
max_length = 128
history = 5                       # no reuse of the last N passwords
max_age_days = 0                  # 0: passwords do not expire
lockout_threshold = 5             # consecutive failures before the account locks
argon2_time_cost = 3              # argon2id; at or above the OWASP floor (t=2, 19 MiB, p=1)
argon2_memory_kib = 65536
argon2_parallelism = 1

[plc]
endpoint = "opc.tcp://127.0.0.1:4840/blender/"
"""


@dataclass
class Site:
    """An opened site: validated settings and the live collaborators built from them."""

    settings: Settings
    engine: Engine
    signer: Signer
    audit: AuditLog
    clock: Clock

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def config_sha256(self) -> str:
        return hashlib.sha256((self.data_dir / CONFIG_FILE_NAME).read_bytes()).hexdigest()

    def close(self) -> None:
        self.engine.dispose()


def build_audit(settings: Settings, engine: Engine, signer: Signer, clock: Clock) -> AuditLog:
    return AuditLog(
        engine,
        terminal_id=settings.site.terminal_id,
        signer=signer,
        clock=clock,
        witness=WitnessFile(settings.witness_path),
        checkpoint_every_events=settings.audit.checkpoint_every_events,
        checkpoint_every=timedelta(minutes=settings.audit.checkpoint_every_minutes),
    )


def open_site(data_dir: Path, *, clock: Clock | None = None, upgrade: bool = True) -> Site:
    """Load and validate config, load the key, open the database (applying pending upgrades)."""
    settings = load_settings(data_dir)  # raises ConfigError before anything is touched
    clock = clock or SystemClock()
    signer = load_signer(settings.signing_key_path)
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    audit = build_audit(settings, engine, signer, clock)
    site = Site(settings, engine, signer, audit, clock)
    if upgrade and pending(engine):
        applied = migrate(engine, to_utc_text(clock.now()))
        if applied:
            audit.record_now(
                "db.migrated",
                SYSTEM,
                details={"versions": [m.version for m in applied], "names": [m.name for m in applied]},
            )
    return site


def site_exists(data_dir: Path) -> bool:
    return (data_dir / CONFIG_FILE_NAME).exists() or (data_dir / "hmi.db").exists()


def init_site(
    data_dir: Path,
    *,
    terminal_id: str = "KIOSK-01",
    site_name: str = "Site",
    line_name: str = "Line 1",
    mode: str = "production",
    clock: Clock | None = None,
) -> Site:
    """Create a new site: config with documented defaults, keys, schema and the first events."""
    import re

    if site_exists(data_dir):
        raise SiteError(f"a site already exists in {data_dir}; refusing to overwrite it")
    if not re.match(TERMINAL_ID_PATTERN, terminal_id):
        raise SiteError(
            f"terminal ID {terminal_id!r} is not valid: use 2-32 characters A-Z, 0-9, '-' or '_'"
        )
    for label, value in (("site name", site_name), ("line name", line_name)):
        if not value.strip() or '"' in value or "\\" in value or "\n" in value or len(value) > 80:
            raise SiteError(f"the {label} must be 1-80 characters without quotes or backslashes")
    data_dir.mkdir(parents=True, exist_ok=True)
    config_path = data_dir / CONFIG_FILE_NAME
    config_path.write_text(
        CONFIG_TEMPLATE.format(
            terminal_id=terminal_id, site_name=site_name, line_name=line_name, mode=mode
        ),
        encoding="utf-8",
    )
    settings = load_settings(data_dir)
    clock = clock or SystemClock()
    signer = create_key_pair(settings.signing_key_path, settings.public_key_path)
    write_secret_file(settings.site_key_path, secrets.token_bytes(32))
    engine = make_engine(settings.database_url, busy_timeout_ms=settings.database.busy_timeout_ms)
    applied = migrate(engine, to_utc_text(clock.now()))
    if settings.database_url.startswith("sqlite:///"):
        os.chmod(settings.data_dir / "hmi.db", 0o600)
    audit = build_audit(settings, engine, signer, clock)
    site = Site(settings, engine, signer, audit, clock)
    with audit.transaction() as conn:
        audit.register_terminal(conn)
        audit.record(
            conn,
            "site.initialised",
            SYSTEM,
            entity=("site", settings.site.site_name),
            details={
                "config_sha256": site.config_sha256(),
                "line_name": settings.site.line_name,
                "schema_versions": [m.version for m in applied],
                "software_version": __version__,
                "terminal_id": terminal_id,
                "mode": mode,
            },
        )
    audit.checkpoint("init")
    return site
