"""Account records and their storage: what a user is, and the rules for IDs, names and reasons.

A user ID is unique forever: IDs are compared case-insensitively (stored in lower case), an
account is disabled and never deleted (the database refuses DELETE), and a disabled ID can
never be created again.

What someone typed as a user ID is stored (in the audit trail or any other row) only when it is
an account's ID; anything else may be a password typed into the wrong field, so it is stored as
a keyed digest and its length (:meth:`UserStore.audit_subject`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, Engine, func, insert, select, update

from hmi.auth.errors import InvalidUserInput
from hmi.auth.roles import Role, parse_role, roles_require_totp, sorted_roles
from hmi.auth.tables import auth_password_history, auth_totp, auth_user
from hmi.clock import from_utc_text, to_utc_text
from hmi.db import read_only

USER_ID_PATTERN = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
RESERVED_USER_IDS = frozenset({"system", "root", "unknown", "nobody", "anonymous"})
MAX_TYPED_ID = 64
TYPED_ID_DIGEST_PREFIX = "uid-hmac:"
_TYPED_ID_INFO = b"hmi/typed-user-id/v1"
_TYPED_ID_HEX = 16


class UserStatus(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    DISABLED = "disabled"


class TotpState(StrEnum):
    NONE = "none"
    PENDING = "pending"
    ACTIVE = "active"


def normalise_user_id(text: str) -> str:
    """The stored form of a user ID (NFKC, trimmed, lower case), or :class:`InvalidUserInput`."""
    candidate = unicodedata.normalize("NFKC", text).strip().lower()
    if not USER_ID_PATTERN.match(candidate):
        raise InvalidUserInput(
            "a user ID is 2-32 characters: a letter first, then a-z, digits, '.', '_' or '-'"
        )
    return candidate


def typed_id_key(site_key: bytes) -> bytes:
    """The key of typed-ID digests, derived (HKDF-SHA256) from the site key (``keys/site.key``)
    and used for nothing else."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_TYPED_ID_INFO).derive(
        site_key
    )


def typed_id_digest(key: bytes, text: str) -> str:
    """``uid-hmac:<16 hex>:len<N>``: HMAC-SHA256 of the typed text (NFKC, trimmed, lower case,
    as user IDs are compared) under :func:`typed_id_key`, truncated, and the text's length.

    The same text typed twice gives the same digest, so repeated attempts can be correlated;
    without the site key nothing about the text can be learnt from it but its length.
    """
    folded = unicodedata.normalize("NFKC", text).strip().lower()
    mac = hmac.new(key, folded.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"{TYPED_ID_DIGEST_PREFIX}{mac[:_TYPED_ID_HEX]}:len{len(folded)}"


def normalise_full_name(text: str) -> str:
    """A printed name as shown in every signature: NFKC, single spaces, 2-80 characters."""
    name = " ".join(unicodedata.normalize("NFKC", text).split())
    if not 2 <= len(name) <= 80:
        raise InvalidUserInput("the full name must be 2-80 characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise InvalidUserInput("the full name must not contain control characters")
    if not any(ch.isalpha() for ch in name):
        raise InvalidUserInput("the full name must contain letters")
    return name


def normalise_reason(text: str | None, *, what: str = "reason", minimum: int = 3) -> str:
    """A reason or free-text justification for the audit trail: printable, 3-500 characters."""
    value = " ".join(unicodedata.normalize("NFKC", text or "").split())
    if len(value) < minimum:
        raise InvalidUserInput(f"a {what} is required (at least {minimum} characters)")
    if len(value) > 500:
        raise InvalidUserInput(f"the {what} is too long (at most 500 characters)")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidUserInput(f"the {what} must not contain control characters")
    return value


def parse_roles(values: list[str] | tuple[str, ...] | list[Role]) -> tuple[Role, ...]:
    try:
        roles = sorted_roles(parse_role(str(v)) for v in values)
    except ValueError as exc:
        raise InvalidUserInput(str(exc)) from None
    return roles


def roles_text(roles: tuple[Role, ...]) -> str:
    return ",".join(r.value for r in sorted_roles(roles))


def roles_from_text(text: str) -> tuple[Role, ...]:
    return sorted_roles(Role(part) for part in text.split(",") if part)


def _dt(value: object) -> datetime | None:
    return None if value is None else from_utc_text(str(value))


@dataclass(frozen=True)
class TotpEnrolment:
    """One enrolled (or pending) authenticator of a user."""

    enrolment_id: int
    user_id: str
    secret_enc: str = field(repr=False)
    created_at: datetime
    created_by: str
    confirmed_at: datetime | None
    revoked_at: datetime | None
    last_used_step: int | None
    last_used_at: datetime | None

    @property
    def state(self) -> TotpState:
        if self.revoked_at is not None:
            return TotpState.NONE
        return TotpState.ACTIVE if self.confirmed_at is not None else TotpState.PENDING


@dataclass(frozen=True)
class UserRecord:
    """An account as stored (the password hash is never shown in a repr)."""

    user_id: str
    full_name: str
    roles: tuple[Role, ...]
    status: UserStatus
    password_hash: str = field(repr=False)
    password_changed_at: datetime
    password_set_with_totp: bool
    must_change_password: bool
    failed_count: int
    locked_at: datetime | None
    identity_verified_by: str
    identity_method: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None
    disabled_by: str | None
    last_login_at: datetime | None
    totp: TotpEnrolment | None

    @property
    def totp_active(self) -> bool:
        return self.totp is not None and self.totp.state is TotpState.ACTIVE

    @property
    def requires_totp(self) -> bool:
        """Login needs a TOTP code: a privileged role, or an authenticator the user enrolled."""
        return roles_require_totp(self.roles) or self.totp_active

    def password_expired(self, now: datetime, max_age_days: int) -> bool:
        return max_age_days > 0 and now - self.password_changed_at > timedelta(days=max_age_days)

    def effective_status(self, now: datetime, max_age_days: int) -> str:
        """active, locked, disabled or password_expired, as the access review shows it."""
        if self.status is not UserStatus.ACTIVE:
            return self.status.value
        if self.password_expired(now, max_age_days):
            return "password_expired"
        return "active"


def _enrolment(row: dict[str, object]) -> TotpEnrolment:
    return TotpEnrolment(
        enrolment_id=int(str(row["enrolment_id"])),
        user_id=str(row["user_id"]),
        secret_enc=str(row["secret_enc"]),
        created_at=from_utc_text(str(row["created_at"])),
        created_by=str(row["created_by"]),
        confirmed_at=_dt(row["confirmed_at"]),
        revoked_at=_dt(row["revoked_at"]),
        last_used_step=None if row["last_used_step"] is None else int(str(row["last_used_step"])),
        last_used_at=_dt(row["last_used_at"]),
    )


class UserStore:
    """Reads and low-level writes of account rows; callers own the transaction and the audit.

    ``typed_id_key`` (from :func:`typed_id_key`) keys the digests of typed IDs that are not
    accounts (:meth:`audit_subject`).
    """

    def __init__(self, engine: Engine, *, typed_id_key: bytes) -> None:
        self.engine = engine
        self._typed_id_key = typed_id_key

    # -- what a typed user ID becomes in a record ------------------------------------------

    def audit_subject(self, typed: str, conn: Connection | None = None) -> str:
        """How a typed user ID is stored in the audit trail and in any other row.

        The ID of an account that exists (or existed: IDs are never reused) is stored as it
        is. Anything else (an unknown or mistyped ID, a password typed into the ID field) is
        never stored as text, only as :func:`typed_id_digest`. Every place that records what
        someone typed as a user ID goes through here. ``conn`` reads inside the caller's
        transaction.
        """
        uid: str | None = None
        if len(typed) <= MAX_TYPED_ID:
            try:
                uid = normalise_user_id(typed)
            except InvalidUserInput:
                uid = None
        if uid is not None:
            if conn is not None:
                found = self.exists(conn, uid)
            else:
                with read_only(self.engine) as reading:
                    found = self.exists(reading, uid)
            if found:
                return uid
        return typed_id_digest(self._typed_id_key, typed)

    # -- reads ------------------------------------------------------------------------------

    def get(self, conn: Connection, user_id: str) -> UserRecord | None:
        row = (
            conn.execute(select(auth_user).where(auth_user.c.user_id == user_id)).mappings().first()
        )
        if row is None:
            return None
        return self._record(dict(row), self.active_totp(conn, user_id))

    def load(self, user_id: str) -> UserRecord | None:
        with read_only(self.engine) as conn:
            return self.get(conn, user_id)

    def all(self) -> list[UserRecord]:
        with read_only(self.engine) as conn:
            rows = conn.execute(select(auth_user).order_by(auth_user.c.user_id)).mappings().all()
            return [self._record(dict(r), self.active_totp(conn, str(r["user_id"]))) for r in rows]

    def count(self) -> int:
        with read_only(self.engine) as conn:
            return self.count_in(conn)

    def count_in(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(auth_user)).scalar() or 0)

    def exists(self, conn: Connection, user_id: str) -> bool:
        found = conn.execute(select(auth_user.c.user_id).where(auth_user.c.user_id == user_id))
        return found.first() is not None

    def active_totp(self, conn: Connection, user_id: str) -> TotpEnrolment | None:
        row = (
            conn.execute(
                select(auth_totp)
                .where(
                    auth_totp.c.user_id == user_id,
                    auth_totp.c.confirmed_at.is_not(None),
                    auth_totp.c.revoked_at.is_(None),
                )
                .order_by(auth_totp.c.enrolment_id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return None if row is None else _enrolment(dict(row))

    def enrolment(self, conn: Connection, enrolment_id: int) -> TotpEnrolment | None:
        row = (
            conn.execute(select(auth_totp).where(auth_totp.c.enrolment_id == enrolment_id))
            .mappings()
            .first()
        )
        return None if row is None else _enrolment(dict(row))

    def password_history(self, conn: Connection, user_id: str, depth: int) -> list[str]:
        if depth <= 0:
            return []
        rows = conn.execute(
            select(auth_password_history.c.password_hash)
            .where(auth_password_history.c.user_id == user_id)
            .order_by(auth_password_history.c.id.desc())
            .limit(depth)
        )
        return [str(r[0]) for r in rows]

    # -- writes -----------------------------------------------------------------------------

    def insert_user(
        self,
        conn: Connection,
        *,
        user_id: str,
        full_name: str,
        roles: tuple[Role, ...],
        password_hash: str,
        relies_on_totp: bool,
        must_change: bool,
        identity_verified_by: str,
        identity_method: str,
        now: datetime,
        by: str,
    ) -> None:
        stamp = to_utc_text(now)
        conn.execute(
            insert(auth_user),
            {
                "user_id": user_id,
                "full_name": full_name,
                "roles": roles_text(roles),
                "status": UserStatus.ACTIVE.value,
                "password_hash": password_hash,
                "password_changed_at": stamp,
                "password_set_with_totp": int(relies_on_totp),
                "must_change_password": int(must_change),
                "failed_count": 0,
                "identity_verified_by": identity_verified_by,
                "identity_method": identity_method,
                "created_at": stamp,
                "created_by": by,
            },
        )
        self._history(conn, user_id, password_hash, stamp, by)

    def set_password(
        self,
        conn: Connection,
        user_id: str,
        *,
        password_hash: str,
        relies_on_totp: bool,
        must_change: bool,
        now: datetime,
        by: str,
    ) -> None:
        stamp = to_utc_text(now)
        conn.execute(
            update(auth_user)
            .where(auth_user.c.user_id == user_id)
            .values(
                password_hash=password_hash,
                password_changed_at=stamp,
                password_set_with_totp=int(relies_on_totp),
                must_change_password=int(must_change),
            )
        )
        self._history(conn, user_id, password_hash, stamp, by)

    def replace_hash(self, conn: Connection, user_id: str, password_hash: str) -> None:
        """Store a re-hash of the same password with the site's current parameters."""
        conn.execute(
            update(auth_user)
            .where(auth_user.c.user_id == user_id)
            .values(password_hash=password_hash)
        )

    def _history(
        self, conn: Connection, user_id: str, password_hash: str, stamp: str, by: str
    ) -> None:
        conn.execute(
            insert(auth_password_history),
            {"user_id": user_id, "password_hash": password_hash, "set_at": stamp, "set_by": by},
        )

    def update_fields(self, conn: Connection, user_id: str, **values: object) -> None:
        conn.execute(update(auth_user).where(auth_user.c.user_id == user_id).values(**values))

    @staticmethod
    def _record(row: dict[str, object], totp: TotpEnrolment | None) -> UserRecord:
        return UserRecord(
            user_id=str(row["user_id"]),
            full_name=str(row["full_name"]),
            roles=roles_from_text(str(row["roles"])),
            status=UserStatus(str(row["status"])),
            password_hash=str(row["password_hash"]),
            password_changed_at=from_utc_text(str(row["password_changed_at"])),
            password_set_with_totp=bool(row["password_set_with_totp"]),
            must_change_password=bool(row["must_change_password"]),
            failed_count=int(str(row["failed_count"])),
            locked_at=_dt(row["locked_at"]),
            identity_verified_by=str(row["identity_verified_by"]),
            identity_method=str(row["identity_method"]),
            created_at=from_utc_text(str(row["created_at"])),
            created_by=str(row["created_by"]),
            disabled_at=_dt(row["disabled_at"]),
            disabled_by=None if row["disabled_by"] is None else str(row["disabled_by"]),
            last_login_at=_dt(row["last_login_at"]),
            totp=totp,
        )
