"""Typed site configuration (``hmi.toml``), loaded once and validated.

Any bad value is reported with its key and what was expected; nothing else in the product
reads the file. Paths in the file are relative to the site data directory.

No secret belongs in the file: a database URL with a password is refused (the password lives
in the 0600 file named by ``[database] password_file`` or in ``$HMI_DB_PASSWORD``, see
:func:`database_password`), and whatever is recorded or shown from the file goes through
:func:`redact_config_text` (and URLs through :func:`hmi.db.redact_url`).
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hmi.db import redact_url, url_password_keys
from hmi.plc.settings import PlcSettings
from hmi.textcheck import text_problem
from hmi.tomlsafe import TomlLimitError, loads_limited

CONFIG_FILE_NAME = "hmi.toml"
DATA_DIR_ENV = "HMI_DATA"
DB_PASSWORD_ENV = "HMI_DB_PASSWORD"  # noqa: S105 (the name of a variable, not a password)
TERMINAL_ID_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{1,31}$"


class ConfigError(Exception):
    """The site configuration is missing or invalid; the message names the key and the problem."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        joined = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {path}:\n{joined}")


#: ``hmi.toml`` is a few kilobytes; larger or deeper files are refused before parsing.
MAX_CONFIG_BYTES = 256 * 1024
MAX_CONFIG_DEPTH = 16

#: The keys ``[site]`` must give: they name every record, so none is ever a silent default.
REQUIRED_SITE_KEYS = ("terminal_id", "site_name", "line_name")


class _Section(BaseModel):
    # Strict: a number is a number (``true`` is not 1), text is text; no inf or nan.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _plain_text(value: str) -> str:
    """Names printed on every record and copy: no control or bidirectional-override
    characters (they would change what a reader sees), not blank."""
    problem = text_problem(value, multiline=False)
    if problem is not None:
        raise ValueError(problem)
    if not value.strip():
        raise ValueError("must not be blank")
    return value


class SiteSettings(_Section):
    """Who and where this terminal is; printed on every record and copy."""

    terminal_id: Annotated[str, Field(pattern=TERMINAL_ID_PATTERN)] = "KIOSK-01"
    site_name: Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_plain_text)] = (
        "Site"
    )
    line_name: Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_plain_text)] = (
        "Line 1"
    )


class DatabaseSettings(_Section):
    """Where records live: an SQLite file by default, PostgreSQL for a multi-kiosk site."""

    url: str = ""
    password_file: str = ""
    busy_timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 5000

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if value and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError("expected an sqlite:// or postgresql:// URL, or empty for the default")
        found = url_password_keys(value) if value else []
        if found:
            raise ValueError(
                f"the URL contains a password ({', '.join(dict.fromkeys(found))}); a password"
                f" never goes in {CONFIG_FILE_NAME}: remove it from the URL and put it in the file"
                " named by [database] password_file (mode 0600) or in the environment variable"
                f" {DB_PASSWORD_ENV}"
            )
        return value

    @field_validator("password_file")
    @classmethod
    def _only_for_a_server(cls, value: str, info: ValidationInfo) -> str:
        if value and not str(info.data.get("url", "")).startswith("postgresql"):
            raise ValueError("a password file is only for a postgresql:// url (SQLite has none)")
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


class EquipmentSettings(_Section):
    """What the equipment can hold: recipes are checked against it when they are validated
    for this site (``hmi recipes validate --data``, ``import``, ``list --check``).

    ``max_charge_kg`` is the bin's rated load: no charge, and not all of a recipe's charges
    together (at the top of their tolerances), may exceed it. The PLC tag map's ranges
    (``[plc.tags.*] low/high``) and the Charge method's ``quantity`` range bind as well.
    """

    max_charge_kg: Annotated[float, Field(gt=0, le=100_000)] = 500.0


class BatchSettings(BaseModel):
    """How batches are numbered and how deviations are explained at this site."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

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
    equipment: EquipmentSettings = EquipmentSettings()
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
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if kind in ("float_type", "int_type") and isinstance(given, bool):
        message = "expected a number, not true or false"
    if isinstance(given, dict) or (sections and is_secret_key(sections[-1])):
        return f"{key}: {message}"  # a secret is never echoed
    if isinstance(given, str) and "://" in given:
        given = redact_url(given)
    shown = ("true" if given else "false") if isinstance(given, bool) else repr(given)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{key}: {message} (got {shown})"


# -- secrets: the database password, and what may be recorded or shown of the file -------------

_SECRET_KEY = re.compile(r"pass(word|wd|phrase)?$|pwd|secret|token|credential", re.IGNORECASE)
_PATH_KEY = re.compile(r"_(file|path|dir)$", re.IGNORECASE)
_ASSIGNED = re.compile(
    r"""(?P<head>(?<![\w-])(?P<q>["']?)(?P<key>[A-Za-z0-9_-]+)(?P=q)[ \t]*=[ \t]*)"""
    r"""(?P<value>"{3}[\s\S]*?"{3}|'{3}[\s\S]*?'{3}|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
)
_URL = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>]+""")
REDACTED_VALUE = "<redacted>"
_MIN_REPLACED = 4
"""Shorter secrets are redacted where they are assigned, not wherever their text occurs."""


def is_secret_key(name: str) -> bool:
    """A key whose value is a secret (``password``, ``db_password``, ``api_token``...), as
    opposed to the path of a file that holds one (``password_file``)."""
    return bool(_SECRET_KEY.search(name)) and not _PATH_KEY.search(name)


def _secret_values(node: Any, key: str = "") -> Iterator[str]:
    if isinstance(node, Mapping):
        for name, value in node.items():
            yield from _secret_values(value, str(name))
    elif isinstance(node, list):
        for item in node:
            yield from _secret_values(item, key)
    elif isinstance(node, str) and node and is_secret_key(key):
        yield node


def redact_config_text(text: str) -> str:
    """The configuration text as it may be recorded or shown: the value of every key that
    holds a secret replaced by ``"<redacted>"``, and any password in a URL by ``***``.

    Secrets are found where they are assigned (``password = "..."`` in any table, inline table
    or dotted key) and, from the parsed file, wherever else their text occurs; any URL with a
    password is redacted wherever it is (a comment too). Text without secrets is unchanged.
    """

    def assigned(match: re.Match[str]) -> str:
        value = match.group("value")
        if not is_secret_key(match.group("key")) or value in {'""', "''"}:
            return match.group(0)
        return f'{match.group("head")}"{REDACTED_VALUE}"'

    def url(match: re.Match[str]) -> str:
        found = match.group(0)
        return redact_url(found) if url_password_keys(found) else found

    try:
        parsed: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        parsed = {}
    redacted = _URL.sub(url, _ASSIGNED.sub(assigned, text))
    for secret in sorted(set(_secret_values(parsed)), key=len, reverse=True):
        if len(secret) >= _MIN_REPLACED:
            redacted = redacted.replace(secret, REDACTED_VALUE)
    return redacted


def database_password(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """The database password, for the site to add to the URL it builds the engine with.

    From the file named by ``[database] password_file`` (relative to the data directory, its
    first line, mode 0600) or from ``$HMI_DB_PASSWORD``; None when neither is set or the
    database is an SQLite file. Raises :class:`ConfigError` naming the key when the file is
    missing, empty or readable by anyone but its owner, or when both are set.
    """
    source = settings.data_dir / CONFIG_FILE_NAME
    env = os.environ if environ is None else environ
    if not settings.database.url.startswith("postgresql"):
        return None
    from_env = env.get(DB_PASSWORD_ENV) or None
    if not settings.database.password_file:
        return from_env
    key = "[database] password_file"
    if from_env is not None:
        raise ConfigError(
            source, [f"{key}: set, and so is {DB_PASSWORD_ENV}; keep one of them, not both"]
        )
    path = settings.path(settings.database.password_file)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(source, [f"{key}: {path} is not a file"])
        mode = info.st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(
                source,
                [
                    f"{key}: {path} can be read by others (mode {mode:o}); it must be readable"
                    f" by this account only: chmod 600 {path}"
                ],
            )
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(
            source, [f"{key}: {path} does not exist; write the password there (mode 0600)"]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"{key}: cannot read {path}: {exc}"]) from None
    password = lines[0].strip() if lines else ""
    if not password:
        raise ConfigError(source, [f"{key}: {path} is empty; its first line is the password"])
    return password


def parse_settings(raw: dict[str, Any], data_dir: Path, source: Path) -> Settings:
    """Validate a parsed TOML document; raise :class:`ConfigError` naming every bad key.

    ``[site]`` must be there with its three keys (an empty or truncated file never runs on
    defaults), and ``data_dir`` is not a key of the file: the data directory is where the file
    is (``--data`` or ``$HMI_DATA``)."""
    problems: list[str] = []
    site = raw.get("site")
    if site is None:
        problems.append(
            "[site]: missing; the file must name this terminal: terminal_id, site_name and"
            " line_name (hmi init writes them)"
        )
    elif isinstance(site, dict):
        missing = [key for key in REQUIRED_SITE_KEYS if key not in site]
        if missing:
            problems.append(f"[site] {', '.join(missing)}: missing; every record names them")
    if "data_dir" in raw:
        problems.append(
            "data_dir: unknown key; the data directory is the folder this file is in"
            " (choose it with --data or $HMI_DATA)"
        )
    try:
        settings = Settings.model_validate(
            {**{k: v for k, v in raw.items() if k != "data_dir"}, "data_dir": data_dir}
        )
    except ValidationError as exc:
        problems += [_describe(dict(err)) for err in exc.errors()]
        raise ConfigError(source, problems) from None
    if problems:
        raise ConfigError(source, problems)
    return settings


def load_settings(data_dir: Path) -> Settings:
    """Load ``hmi.toml`` from a site data directory (created by ``hmi init``)."""
    path = data_dir / CONFIG_FILE_NAME
    if not path.is_file():
        raise ConfigError(
            path, [f"no {CONFIG_FILE_NAME} here; create a site with: hmi init --data {data_dir}"]
        )
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            problem = f"not read: {size} bytes; at most {MAX_CONFIG_BYTES} are read"
            raise ConfigError(path, [problem])
        raw = loads_limited(
            path.read_text(encoding="utf-8"),
            max_bytes=MAX_CONFIG_BYTES,
            max_depth=MAX_CONFIG_DEPTH,
        )
    except TomlLimitError as exc:
        raise ConfigError(path, [f"not read: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot be read: {exc.strerror or exc}"]) from None
    return parse_settings(raw, data_dir.resolve(), path)
