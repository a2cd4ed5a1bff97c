"""Creating and opening a site data directory: config, keys, database and the audit chain.

This is the one place that turns a data directory into live collaborators; the CLI, the TUI's
``make_app`` and the tests all go through it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sqlite3
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import SQLAlchemyError

from hmi import __version__
from hmi.audit import binding
from hmi.audit.chain import SYSTEM, AuditLog, AuditWriteError
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.keys import KeyFileError, Signer, create_key_pair, load_signer, write_secret_file
from hmi.audit.tables import audit_event
from hmi.audit.verify import KEY_ENROLLED
from hmi.clock import Clock, SystemClock, to_utc_text
from hmi.config import (
    CONFIG_FILE_NAME,
    TERMINAL_ID_PATTERN,
    Settings,
    database_password,
    load_settings,
    redact_config_text,
)
from hmi.db import (
    DatabaseError,
    check_readable,
    describe_db_error,
    make_engine,
    on_read_only_file_system,
    read_only,
    sqlite_file_of,
    with_password,
)
from hmi.migrations import migrate, pending
from hmi.migrations.m0006_row_binding import VERSION as ROW_BINDING_VERSION

log = logging.getLogger(__name__)


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
                                  # (never with a password in it: that is refused)
password_file = ""                # PostgreSQL: a file (mode 0600) holding the password on its
                                  # first line, e.g. "keys/db.password"; or set $HMI_DB_PASSWORD
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
idle_lock_minutes = 5             # inactivity lock of the kiosk (same user's password unlocks)
idle_warning_seconds = 30         # countdown shown before the lock
absolute_limit_hours = 12         # a session ends after this, whatever the activity

[password]
min_length_without_totp = 15      # NIST SP 800-63B: 15 for password-only accounts
min_length_with_totp = 8          # accounts that also use an authenticator (TOTP)
max_length = 128                  # at least 64
history = 5                       # no reuse of the last N passwords
max_age_days = 0                  # 0: passwords do not expire; e.g. 365 turns ageing on
lockout_threshold = 5             # consecutive failures before the account locks
min_guesses_log10_without_totp = 10   # zxcvbn: guesses an attacker needs, as a power of ten
min_guesses_log10_with_totp = 8   # 8 random characters; common or patterned passwords fail
argon2_time_cost = 3              # argon2id; at or above the OWASP floor (t=2, 19 MiB, p=1)
argon2_memory_kib = 65536         # ~180 ms per hash at t=3, p=1 on a 2-core kiosk
argon2_parallelism = 1

[batch]
batch_number_pattern = "^[A-Z0-9][A-Z0-9-]{{2,31}}$"   # a whole batch (lot) number must match
min_reason_length = 10            # a deviation's free-text reason, at least this long
max_reason_length = 1000
shelve_max_minutes = 480          # an alarm is never shelved for longer (ISA-18.2)
plc_command_timeout_s = 30        # how long to wait for the PLC to confirm a command
# [batch.reason_codes]            # the site's controlled list of deviation reason codes
# EQUIPMENT = "Equipment malfunction or alarm"

[plc]
# The PLC's OPC UA server. The defaults talk to the bundled simulator (plc-sim); see
# docs/plc-interface.md for the interface a real PLC must expose, or change the tag map below.
endpoint = "opc.tcp://127.0.0.1:4840/blender/"
namespace_uri = "urn:line-hmi:plc-sim:blender"   # browse paths below are in this namespace
security_mode = "SignAndEncrypt"  # or "Sign"; "None" needs allow_insecure = true
security_policy = "Basic256Sha256"
allow_insecure = false            # true only on an isolated test bench; shown on screen
username = "hmi"
password = ""                     # prefer password_file; a password here takes precedence
password_file = "plc/password"    # one line, readable by this account only
server_certificate = "plc/pki/trusted/server.der"   # the PLC certificate trusted explicitly
client_certificate = "plc/pki/own/client-cert.der"  # created on first use; the PLC must trust it
client_private_key = "plc/pki/own/client-key.pem"   # mode 0600
application_uri = "urn:line-hmi:hmi"
publishing_interval_ms = 50       # how often the PLC sends changed values
heartbeat_tag = "heartbeat"       # a counter the PLC increments; supervision watches it
heartbeat_timeout_s = 1.0         # no heartbeat change for this long: connection lost
request_timeout_s = 2.0           # a read, write or command without answer is failed
reconnect_initial_s = 0.5         # reconnect back-off starts here and doubles...
reconnect_max_s = 10.0            # ...up to this
last_result_tag = "last_command_result"   # the PLC's reason when it refuses a command

[plc.alarms]
source = "Blender"                # object whose alarm events are subscribed
event_type = "BlenderAlarmEventType"   # event type, browse path below BaseEventType
code_field = "AlarmCode"
active_field = "Active"
active_list_tag = "active_alarms" # re-read after a reconnect to resynchronise alarms

# Tag map: logical tag -> node (path = browse path from Objects, or node = "ns=..;s=.." /
# "nsu=URI;s=.."), type (float, int, bool, str, str_list), unit, valid low/high, writable.
# A value outside low/high, of another type, or with a bad status is shown as BAD.

[plc.tags.state]
path = "Blender/State"
type = "str"
choices = [
    "Clearing", "Stopped", "Starting", "Idle", "Suspended", "Execute",
    "Stopping", "Aborting", "Aborted", "Holding", "Held", "Unholding",
    "Suspending", "Unsuspending", "Resetting", "Completing", "Complete",
]

[plc.tags.state_code]
path = "Blender/StateCode"
type = "int"
low = 1
high = 17

[plc.tags.mode]
path = "Blender/Mode"
type = "str"
choices = ["production", "service"]

[plc.tags.speed_setpoint]
path = "Blender/SpeedSetpoint"
type = "float"
unit = "rpm"
low = 0
high = 30
writable = true

[plc.tags.speed]
path = "Blender/Speed"
type = "float"
unit = "rpm"
low = 0
high = 35

[plc.tags.blend_time_setpoint]
path = "Blender/BlendTimeSetpoint"
type = "float"
unit = "s"
low = 0
high = 3600
writable = true

[plc.tags.revolutions_setpoint]
path = "Blender/RevolutionsSetpoint"
type = "int"
low = 0
high = 100000
writable = true

[plc.tags.elapsed_time]
path = "Blender/ElapsedTime"
type = "float"
unit = "s"
low = 0
high = 86400

[plc.tags.revolutions]
path = "Blender/Revolutions"
type = "float"
low = 0
high = 1000000

[plc.tags.motor_current]
path = "Blender/MotorCurrent"
type = "float"
unit = "A"
low = 0
high = 20

[plc.tags.product_temperature]
path = "Blender/ProductTemperature"
type = "float"
unit = "°C"
low = -10
high = 100

[plc.tags.weight]
path = "Blender/Weight"
type = "float"
unit = "kg"
low = 0
high = 600

[plc.tags.weight_stable]
path = "Blender/WeightStable"
type = "bool"

[plc.tags.lid_closed]
path = "Blender/LidClosed"
type = "bool"

[plc.tags.discharge_valve_open]
path = "Blender/DischargeValveOpen"
type = "bool"

[plc.tags.estop]
path = "Blender/EStop"
type = "bool"

[plc.tags.heartbeat]
path = "Blender/Heartbeat"
type = "int"

[plc.tags.last_command_result]
path = "Blender/LastCommandResult"
type = "str"

[plc.tags.active_alarms]
path = "Blender/ActiveAlarms"
type = "str_list"

# Commands: logical name -> method (browse path; its parent is the object) and checked
# arguments.
[plc.methods.start]
path = "Blender/Start"

[plc.methods.hold]
path = "Blender/Hold"

[plc.methods.unhold]
path = "Blender/Unhold"

[plc.methods.stop]
path = "Blender/Stop"

[plc.methods.abort]
path = "Blender/Abort"

[plc.methods.reset]
path = "Blender/Reset"

[plc.methods.clear]
path = "Blender/Clear"

[plc.methods.charge]
path = "Blender/Charge"
[[plc.methods.charge.args]]
name = "quantity"
type = "float"
unit = "kg"
low = 0.01
high = 500

[plc.methods.discharge]
path = "Blender/Discharge"

[plc.methods.close_valve]
path = "Blender/CloseValve"

[plc.methods.open_lid]
path = "Blender/OpenLid"

[plc.methods.close_lid]
path = "Blender/CloseLid"

[plc.methods.jog]
path = "Blender/Jog"
[[plc.methods.jog.args]]
name = "speed"
type = "float"
unit = "rpm"
low = 0
high = 5

[plc.methods.calibration_check]
path = "Blender/CalibrationCheck"

[plc.methods.set_mode]
path = "Blender/SetMode"
[[plc.methods.set_mode.args]]
name = "mode"
type = "str"
choices = ["production", "service"]
"""


@dataclass
class Site:
    """An opened site: validated settings and the live collaborators built from them."""

    settings: Settings
    engine: Engine
    signer: Signer
    audit: AuditLog
    clock: Clock
    _closed: bool = field(default=False, repr=False)
    _witness_shutdown: bool = field(default=True, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def config_text(self) -> str:
        """``hmi.toml`` as it may be recorded or shown: every secret in it redacted."""
        raw = (self.data_dir / CONFIG_FILE_NAME).read_bytes().decode("utf-8")
        return redact_config_text(raw)

    def config_sha256(self) -> str:
        """The SHA-256 of :meth:`config_text` (the file's own SHA-256 when it holds no secret,
        as the product's files never do: a secret's value is never recorded, nor its hash)."""
        return hashlib.sha256(self.config_text().encode("utf-8")).hexdigest()

    def close(self) -> None:
        """Witness the chain head (shutdown checkpoint) and release the database.

        A shutdown checkpoint that cannot be taken (the database locked by another program or
        read-only) is logged, never raised: whatever the command did is already committed or
        refused, and the next start-up checkpoint witnesses the head."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._witness_shutdown:
                self.audit.checkpoint("shutdown")
        except (sqlite3.Error, SQLAlchemyError) as exc:
            log.warning("the chain head was not witnessed at shutdown: %s", describe_db_error(exc))
        finally:
            self.audit.close()
            self.engine.dispose()


def site_engine(settings: Settings, *, observe_only: bool = False) -> Engine:
    """The engine for the site's database: the configured URL (which never holds a password)
    with the password from ``[database] password_file`` or ``$HMI_DB_PASSWORD`` added here,
    in memory only. ``observe_only``: an engine that cannot write (see :func:`make_engine`)."""
    url = with_password(settings.database_url, database_password(settings))
    return make_engine(
        url, busy_timeout_ms=settings.database.busy_timeout_ms, observe_only=observe_only
    )


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


def _open_engine(settings: Settings, *, observe_only: bool) -> Engine:
    """The site database's engine; read-only and checked readable when only observing. A
    missing SQLite file is refused, never created empty."""
    db_file = sqlite_file_of(settings.database_url)
    if db_file is not None and not db_file.exists():
        raise DatabaseError(
            f"the database file {db_file} does not exist (deleted or moved?); nothing was"
            " created in its place"
        )
    if db_file is not None and not observe_only and on_read_only_file_system(db_file):
        raise DatabaseError(
            f"the site folder {db_file.parent} is on a read-only file system: this command"
            " records what it does in the audit trail, so it cannot run here and nothing was"
            " done; the reading commands (list, show, verify) work on it"
        )
    engine = site_engine(settings, observe_only=observe_only)
    if observe_only:
        try:
            check_readable(engine, settings.database.busy_timeout_ms)
        except DatabaseError:
            engine.dispose()
            raise
    return engine


@dataclass
class SiteCopy:
    """A site folder opened to be verified: its settings and its database read-only. The
    terminal's private key is not needed (an inspector verifying a copy has none); it is
    loaded only when present, to sign the incremental verification state."""

    settings: Settings
    engine: Engine
    signer: Signer | None

    def close(self) -> None:
        self.engine.dispose()


def open_for_verification(data_dir: Path) -> SiteCopy:
    settings = load_settings(data_dir)
    try:
        signer: Signer | None = load_signer(settings.signing_key_path)
    except KeyFileError:
        signer = None
    return SiteCopy(settings, _open_engine(settings, observe_only=True), signer)


def open_site(
    data_dir: Path,
    *,
    clock: Clock | None = None,
    upgrade: bool = True,
    witness: bool = True,
    startup: bool = True,
) -> Site:
    """Load and validate config, load the key, open the database (applying pending upgrades),
    and witness the chain head as it is found (start-up checkpoint).

    ``witness=False`` opens the site to observe only (listing, showing, verification): the
    database is opened read-only, nothing is upgraded, no event is recorded and no checkpoint
    is written at start-up or shutdown, so a reader changes nothing and a verifier never
    attests what it has not yet checked. A database that cannot be read (locked by another
    program past the busy timeout, a read-only folder SQLite cannot read a WAL database in)
    raises :class:`DatabaseError` here, with the reason.

    ``startup=False`` opens the site for a command that records what it does but is not a
    start of the terminal (an export: a true copy being made is recorded): no start-up
    checkpoint and no check for an edited configuration; its own events are witnessed by the
    shutdown checkpoint."""
    settings = load_settings(data_dir)  # raises ConfigError before anything is touched
    clock = clock or SystemClock()
    signer = load_signer(settings.signing_key_path)
    observe_only = not witness
    engine = _open_engine(settings, observe_only=observe_only)
    if observe_only:
        upgrade = False
    audit = build_audit(settings, engine, signer, clock)
    site = Site(settings, engine, signer, audit, clock)
    if upgrade and pending(engine):
        applied = migrate(engine, to_utc_text(clock.now()))
        if applied:
            audit.record_now(
                "db.migrated",
                SYSTEM,
                details={
                    "versions": [m.version for m in applied],
                    "names": [m.name for m in applied],
                },
            )
            if ROW_BINDING_VERSION in {m.version for m in applied}:
                baseline_rows(audit)
    if not witness:
        site._witness_shutdown = False
    elif startup:
        try:
            _record_config_change(site)
            audit.checkpoint("startup")
        except (sqlite3.Error, SQLAlchemyError, AuditWriteError) as exc:
            site.close()
            cause = exc.__cause__ if isinstance(exc, AuditWriteError) and exc.__cause__ else exc
            raise DatabaseError(
                f"the site could not be opened: {describe_db_error(cause)}; nothing was recorded"
            ) from None
    return site


def baseline_rows(audit: AuditLog) -> None:
    """Bind every row written before rows were bound (an upgrade from an earlier release), in
    one transaction: from this event on, any change to them is reported by verify."""
    with audit.transaction() as conn:
        for chunk in binding.baseline(conn):
            audit.record(
                conn,
                binding.BASELINE_ACTION,
                SYSTEM,
                reason="rows written before this release bound them, as found at the upgrade",
                details={binding.DETAILS_KEY: chunk},
            )


def _record_config_change(site: Site) -> None:
    """Configuration is controlled (11.10(k), Annex 11 §10): an edit of hmi.toml since the last
    recorded version is recorded at the next start, with the old and new hash and the new text."""
    current = site.config_sha256()
    with read_only(site.engine) as conn:
        details = conn.execute(
            select(audit_event.c.details)
            .where(
                audit_event.c.terminal_id == site.settings.site.terminal_id,
                audit_event.c.action.in_(("site.initialised", "config.changed")),
            )
            .order_by(audit_event.c.seq.desc())
            .limit(1)
        ).scalar()
    previous = None if details is None else json.loads(details).get("config_sha256")
    if previous == current:
        return
    text = site.config_text()  # no secret is ever recorded: see hmi.config.redact_config_text
    site.audit.record_now(
        "config.changed",
        SYSTEM,
        entity=("config", CONFIG_FILE_NAME),
        field="sha256",
        old_value=previous,
        new_value=current,
        reason="edited since the last recorded version (detected at start-up)",
        details={"config_sha256": current, "previous_sha256": previous, "text": text},
    )


def record_key_enrolment(audit: AuditLog, conn: Connection, settings: Settings) -> None:
    """The terminal's key enrolment, as an event of its own chain (``audit.key.enrolled``,
    docs/audit-format.md §8): the key, its fingerprint and where its public key was exported,
    written in the transaction that registers the terminal."""
    public = audit.signer.public
    audit.record(
        conn,
        KEY_ENROLLED,
        SYSTEM,
        entity=("terminal", audit.terminal_id),
        reason="the terminal's signing key, created by hmi init",
        details={
            "algorithm": "ed25519",
            "key_id": public.key_id,
            "public_key": public.raw.hex(),
            "public_key_sha256": hashlib.sha256(public.raw).hexdigest(),
            "public_key_file": str(settings.public_key_path.relative_to(settings.data_dir))
            if settings.public_key_path.is_relative_to(settings.data_dir)
            else str(settings.public_key_path),
            "terminal_id": audit.terminal_id,
        },
    )


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
    engine = site_engine(settings)
    applied = migrate(engine, to_utc_text(clock.now()))
    if settings.database_url.startswith("sqlite:///"):
        os.chmod(settings.data_dir / "hmi.db", 0o600)
    audit = build_audit(settings, engine, signer, clock)
    site = Site(settings, engine, signer, audit, clock)
    with audit.transaction() as conn:
        audit.register_terminal(conn)
        record_key_enrolment(audit, conn, settings)
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
    WitnessFile(settings.witness_path).create()
    audit.checkpoint("init")
    return site
