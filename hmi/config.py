"""Typed site configuration (``hmi.toml``), loaded once and validated.

Any bad value is reported with its key and what was expected; nothing else in the product
reads the file. Paths in the file are relative to the site data directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hmi.plc.settings import PlcSettings

CONFIG_FILE_NAME = "hmi.toml"
DATA_DIR_ENV = "HMI_DATA"
TERMINAL_ID_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{1,31}$"


class ConfigError(Exception):
    """The site configuration is missing or invalid; the message names the key and the problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        joined = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {path}:\n{joined}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSettings(_Section):
    """Who and where this terminal is; printed on every record and copy."""

    terminal_id: Annotated[str, Field(pattern=TERMINAL_ID_PATTERN)] = "KIOSK-01"
    site_name: Annotated[str, Field(min_length=1, max_length=80)] = "Site"
    line_name: Annotated[str, Field(min_length=1, max_length=80)] = "Line 1"


class DatabaseSettings(_Section):
    """Where records live: an SQLite file by default, PostgreSQL for a multi-kiosk site."""

    url: str = ""
    busy_timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 5000

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("expected an sqlite:// or postgresql:// URL, or empty for the default")
        return value


class KeySettings(_Section):
    """Key files; the private ones are created with mode 0600 and never printed."""

    signing_key: str = "keys/terminal.ed25519"
    public_key: str = "keys/terminal.ed25519.pub"
    site_key: str = "keys/site.key"


class AuditSettings(_Section):
    """Checkpoint cadence and the witness file kept outside the database."""

    witness_path: str = "witness/checkpoints.jsonl"
    checkpoint_every_events: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    checkpoint_every_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 15.0


class SessionSettings(_Section):
    """The Part 11 'continuous period of controlled access' on a shared kiosk.

    A session starts at login and ends at logout, after ``absolute_limit_hours`` whatever the
    activity, or when another user logs in; after ``idle_lock_minutes`` without activity the
    kiosk locks and only the same user's password (or another user's login) continues.
    """

    idle_lock_minutes: Annotated[float, Field(gt=0, le=60)] = 5.0
    idle_warning_seconds: Annotated[int, Field(ge=0, le=600)] = 30
    absolute_limit_hours: Annotated[float, Field(gt=0, le=24)] = 12.0


class PasswordSettings(_Section):
    """Password policy (NIST SP 800-63B rev 4 numbers by default) and argon2id cost.

    Lengths count Unicode characters after NFKC normalisation. ``max_age_days = 0`` turns
    password ageing off (NIST's default); a site may turn it on. The ``min_guesses_log10_*``
    values are zxcvbn's estimate of the guesses an attacker needs, as a power of ten (8 accepts
    eight random characters and rejects common or patterned passwords). The argon2id floor is
    OWASP's (t=2, 19 MiB, p=1).
    """

    min_length_without_totp: Annotated[int, Field(ge=15, le=64)] = 15
    min_length_with_totp: Annotated[int, Field(ge=8, le=64)] = 8
    max_length: Annotated[int, Field(ge=64, le=1024)] = 128
    history: Annotated[int, Field(ge=0, le=24)] = 5
    max_age_days: Annotated[int, Field(ge=0, le=3650)] = 0
    lockout_threshold: Annotated[int, Field(ge=1, le=100)] = 5
    min_guesses_log10_without_totp: Annotated[float, Field(ge=8, le=30)] = 10.0
    min_guesses_log10_with_totp: Annotated[float, Field(ge=8, le=30)] = 8.0
    argon2_time_cost: Annotated[int, Field(ge=2, le=20)] = 3
    argon2_memory_kib: Annotated[int, Field(ge=19_456, le=4_194_304)] = 65_536
    argon2_parallelism: Annotated[int, Field(ge=1, le=16)] = 1


DEFAULT_REASON_CODES: dict[str, str] = {
    "EQUIPMENT": "Equipment malfunction or alarm",
    "MATERIAL": "Material out of specification or short",
    "OPERATOR": "Operator error",
    "PROCESS": "Process variation within validated knowledge",
    "UTILITIES": "Utilities or communication failure",
    "PLANNED": "Planned change (approved beforehand)",
    "OTHER": "Other (explain in the text)",
}

DEFAULT_BATCH_NUMBER_PATTERN = r"^[A-Z0-9][A-Z0-9-]{2,31}$"


class BatchSettings(BaseModel):
    """How batches are numbered and how deviations are explained at this site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_number_pattern: str = DEFAULT_BATCH_NUMBER_PATTERN
    reason_codes: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_REASON_CODES))
    min_reason_length: Annotated[int, Field(ge=3, le=200)] = 10
    max_reason_length: Annotated[int, Field(ge=50, le=4000)] = 1000
    shelve_max_minutes: Annotated[float, Field(gt=0, le=24 * 60)] = 480.0
    """Longest time an alarm may be shelved (ISA-18.2: shelving is always bounded)."""
    plc_command_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    """How long the engine waits for the PLC to reach the state a command asks for."""

    @field_validator("batch_number_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("reason_codes")
    @classmethod
    def _codes(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("at least one reason code is needed")
        bad = [code for code in value if not re.match(r"^[A-Z][A-Z0-9_]{1,31}$", code)]
        if bad:
            raise ValueError(f"reason codes are 2-32 upper-case letters, digits or '_': {bad}")
        empty = [code for code, label in value.items() if not label.strip()]
        if empty:
            raise ValueError(f"reason codes need a label: {empty}")
        return value

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        if self.min_reason_length > self.max_reason_length:
            raise ValueError("min_reason_length must not exceed max_reason_length")
        return self

    def batch_number_ok(self, number: str) -> bool:
        return re.fullmatch(self.batch_number_pattern, number) is not None


class Settings(_Section):
    """The whole validated site configuration plus where it was loaded from."""

    site: SiteSettings = SiteSettings()
    database: DatabaseSettings = DatabaseSettings()
    keys: KeySettings = KeySettings()
    audit: AuditSettings = AuditSettings()
    session: SessionSettings = SessionSettings()
    password: PasswordSettings = PasswordSettings()
    plc: PlcSettings = PlcSettings()
    batch: BatchSettings = BatchSettings()
    mode: Literal["production", "demo"] = "production"
    data_dir: Path = Path(".")

    def path(self, relative: str) -> Path:
        """Resolve a configured path against the data directory."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.data_dir / candidate

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_dir / 'hmi.db'}"

    @property
    def signing_key_path(self) -> Path:
        return self.path(self.keys.signing_key)

    @property
    def public_key_path(self) -> Path:
        return self.path(self.keys.public_key)

    @property
    def site_key_path(self) -> Path:
        return self.path(self.keys.site_key)

    @property
    def witness_path(self) -> Path:
        return self.path(self.audit.witness_path)


def default_data_dir() -> Path:
    """``$HMI_DATA`` if set, else the platform's per-user data directory."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("hmi", appauthor=False))


def _describe(error: dict[str, Any]) -> str:
    loc = error.get("loc", ())
    sections = [str(part) for part in loc]
    if len(sections) >= 2:
        key = f"[{'.'.join(sections[:-1])}] {sections[-1]}"
    else:
        key = sections[0] if sections else "(top level)"
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{key}: unknown key (check the spelling; see the documented defaults)"
    given = error.get("input")
    shown = repr(given)
    if isinstance(given, dict):
        return f"{key}: {error.get('msg', 'invalid value')}"
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{key}: {error.get('msg', 'invalid value')} (got {shown})"


def parse_settings(raw: dict[str, Any], data_dir: Path, source: Path) -> Settings:
    """Validate a parsed TOML document; raise :class:`ConfigError` naming every bad key."""
    try:
        return Settings.model_validate({**raw, "data_dir": data_dir})
    except ValidationError as exc:
        problems = [_describe(dict(err)) for err in exc.errors()]
        raise ConfigError(source, problems) from None


def load_settings(data_dir: Path) -> Settings:
    """Load ``hmi.toml`` from a site data directory (created by ``hmi init``)."""
    path = data_dir / CONFIG_FILE_NAME
    if not path.is_file():
        raise ConfigError(
            path, [f"no {CONFIG_FILE_NAME} here; create a site with: hmi init --data {data_dir}"]
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    return parse_settings(raw, data_dir.resolve(), path)
