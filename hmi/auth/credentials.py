"""Checking who someone is: user ID, password and TOTP, with every failure recorded.

One verifier serves login, kiosk unlock, e-signatures and co-signatures, so they share the same
rules: unknown IDs cost the same time as known ones, the typed secret is never recorded (nor a
typed ID that is not an account: see :meth:`UserStore.audit_subject`), every failure is an
audit event, consecutive guessed secrets lock the account (threshold from
``[password] lockout_threshold``) and raise a security alert.

The argon2 work happens outside any database transaction (:meth:`CredentialVerifier.check`);
what a success changes (failure counter reset, TOTP step used, re-hash) is written in the
caller's transaction by :meth:`CredentialVerifier.transaction`, together with the caller's
own rows and audit event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, select, update

from hmi.audit.chain import SYSTEM, Actor, AuditLog
from hmi.auth.accounts import (
    MAX_TYPED_ID,
    UserRecord,
    UserStatus,
    UserStore,
    normalise_user_id,
)
from hmi.auth.alerts import AlertKind, raise_alert
from hmi.auth.errors import AuthenticationFailed, FailureReason, InvalidUserInput
from hmi.auth.passwords import PasswordHasher, normalise_password
from hmi.auth.roles import Role
from hmi.auth.tables import auth_totp, auth_user
from hmi.auth.totp import TotpCipher, TotpOutcome, check_code
from hmi.clock import Clock, to_utc_text
from hmi.config import PasswordSettings


class Purpose(StrEnum):
    """What credentials are being checked for (decides the audit action of a failure)."""

    LOGIN = "login"
    UNLOCK = "unlock"
    SIGN = "sign"
    COSIGN = "cosign"
    PASSWORD_CHANGE = "password_change"  # noqa: S105 (a purpose, not a secret)
    STATEMENT = "statement"


FAILURE_ACTIONS: Mapping[Purpose, str] = {
    Purpose.LOGIN: "auth.login.failed",
    Purpose.UNLOCK: "auth.session.unlock_failed",
    Purpose.SIGN: "esignature.refused",
    Purpose.COSIGN: "esignature.cosign.refused",
    Purpose.PASSWORD_CHANGE: "auth.password.change_failed",
    Purpose.STATEMENT: "esignature.statement.refused",
}

COMPONENT_USER_ID = "user_id"
COMPONENT_PASSWORD = "password"  # noqa: S105 (a component name)
COMPONENT_TOTP = "totp"


@dataclass(frozen=True)
class Proof:
    """Credentials that verified, not yet committed (see :meth:`CredentialVerifier.transaction`)."""

    user: UserRecord
    components: tuple[str, ...]
    verified_at: datetime
    totp_enrolment_id: int | None = None
    totp_step: int | None = None
    rehash: str | None = None


class _CommitRefused(Exception):
    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class CredentialVerifier:
    """The single place where passwords and TOTP codes are checked."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        settings: PasswordSettings,
        hasher: PasswordHasher,
        cipher: TotpCipher,
        store: UserStore,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.settings = settings
        self.hasher = hasher
        self.cipher = cipher
        self.store = store

    def check(
        self,
        *,
        user_id: str,
        password: str,
        totp: str | None,
        purpose: Purpose,
        actor: Actor = SYSTEM,
        need_totp: bool | None = None,
        expect_user: str | None = None,
        role: Role | None = None,
        id_entered: bool = True,
        refuse_password_change: bool = False,
        details: Mapping[str, Any] | None = None,
    ) -> Proof:
        """Verify the credentials or record the failure and raise :class:`AuthenticationFailed`.

        ``need_totp`` None means "as the account requires" (login); ``expect_user`` refuses any
        other person (signing in someone else's session); ``refuse_password_change`` refuses an
        account whose password is temporary or expired (signatures by such an account).
        """
        extra = dict(details or {})

        def fail(reason: FailureReason, user: UserRecord | None = None) -> NoReturn:
            self.fail(
                reason, purpose=purpose, actor=actor, user=user, typed_id=user_id, details=extra
            )

        if len(user_id) > MAX_TYPED_ID:
            self.hasher.burn("")
            fail(FailureReason.INVALID_INPUT)
        try:
            uid = normalise_user_id(user_id)
        except InvalidUserInput:
            self.hasher.burn("")
            fail(FailureReason.INVALID_INPUT)
        if expect_user is not None and uid != expect_user:
            fail(FailureReason.WRONG_USER)
        user = self.store.load(uid)
        too_long = len(normalise_password(password)) > self.settings.max_length
        if user is None:
            self.hasher.burn("" if too_long else password)
            fail(FailureReason.UNKNOWN_USER)
        if user.status is UserStatus.DISABLED:
            fail(FailureReason.ACCOUNT_DISABLED, user)
        if user.status is UserStatus.LOCKED:
            fail(FailureReason.ACCOUNT_LOCKED, user)
        if role is not None and role not in user.roles:
            fail(FailureReason.ROLE_NOT_ASSIGNED, user)
        require_totp = user.requires_totp if need_totp is None else need_totp
        if require_totp and not (totp or "").strip():
            fail(FailureReason.TOTP_REQUIRED, user)
        if too_long:
            fail(FailureReason.INVALID_INPUT, user)
        if not self.hasher.verify(user.password_hash, password):
            fail(FailureReason.WRONG_PASSWORD, user)
        components = ((COMPONENT_USER_ID,) if id_entered else ()) + (COMPONENT_PASSWORD,)
        now = self.clock.now()
        enrolment_id: int | None = None
        step: int | None = None
        if require_totp:
            enrolment = user.totp
            if enrolment is None or not user.totp_active:
                fail(FailureReason.TOTP_NOT_ENROLLED, user)
            secret = self.cipher.decrypt(
                enrolment.secret_enc, user_id=uid, enrolment=str(enrolment.enrolment_id)
            )
            match = check_code(secret, totp or "", at=now, last_used_step=enrolment.last_used_step)
            if match.outcome is TotpOutcome.REPLAYED:
                fail(FailureReason.TOTP_REPLAYED, user)
            if match.outcome is TotpOutcome.EXPIRED:
                fail(FailureReason.TOTP_EXPIRED, user)
            if match.outcome is not TotpOutcome.ACCEPTED:
                fail(FailureReason.WRONG_TOTP, user)
            enrolment_id, step = enrolment.enrolment_id, match.step
            components += (COMPONENT_TOTP,)
        if refuse_password_change:
            if user.must_change_password:
                fail(FailureReason.PASSWORD_CHANGE_REQUIRED, user)
            if user.password_expired(now, self.settings.max_age_days):
                fail(FailureReason.PASSWORD_EXPIRED, user)
        rehash = (
            self.hasher.hash(password) if self.hasher.needs_rehash(user.password_hash) else None
        )
        return Proof(
            user=user,
            components=components,
            verified_at=now,
            totp_enrolment_id=enrolment_id,
            totp_step=step,
            rehash=rehash,
        )

    # -- success ---------------------------------------------------------------------------

    @contextmanager
    def transaction(
        self,
        proof: Proof,
        *,
        purpose: Purpose,
        actor: Actor,
        details: Mapping[str, Any] | None = None,
    ) -> Iterator[Connection]:
        """The caller's transaction, opened with the success of ``proof`` already written.

        If the account changed since the check, or the TOTP code was used meanwhile by a
        concurrent attempt, nothing is committed and the failure is recorded and raised.
        """
        try:
            with self.audit.transaction() as conn:
                self._commit(conn, proof, actor)
                yield conn
        except _CommitRefused as refused:
            self.fail(
                refused.reason,
                purpose=purpose,
                actor=actor,
                user=proof.user,
                typed_id=proof.user.user_id,
                details=dict(details or {}),
            )

    def _commit(self, conn: Connection, proof: Proof, actor: Actor) -> None:
        user = proof.user
        current = conn.execute(
            select(auth_user.c.status, auth_user.c.password_hash).where(
                auth_user.c.user_id == user.user_id
            )
        ).first()
        if (
            current is None
            or current[0] != UserStatus.ACTIVE.value
            or current[1] != user.password_hash
        ):
            raise _CommitRefused(FailureReason.ACCOUNT_CHANGED)
        if proof.totp_step is not None:
            used = conn.execute(
                update(auth_totp)
                .where(
                    auth_totp.c.enrolment_id == proof.totp_enrolment_id,
                    auth_totp.c.revoked_at.is_(None),
                    (auth_totp.c.last_used_step.is_(None))
                    | (auth_totp.c.last_used_step < proof.totp_step),
                )
                .values(last_used_step=proof.totp_step, last_used_at=to_utc_text(proof.verified_at))
            )
            if used.rowcount != 1:
                raise _CommitRefused(FailureReason.TOTP_REPLAYED)
        if user.failed_count:
            self.store.update_fields(conn, user.user_id, failed_count=0)
        if proof.rehash is not None:
            self.store.replace_hash(conn, user.user_id, proof.rehash)
            self.audit.record(
                conn,
                "auth.password.rehashed",
                actor,
                entity=("user", user.user_id),
                details={"parameters": self.hasher.params.describe()},
            )

    # -- failure ---------------------------------------------------------------------------

    def fail(
        self,
        reason: FailureReason,
        *,
        purpose: Purpose,
        actor: Actor,
        user: UserRecord | None,
        typed_id: str,
        details: Mapping[str, Any] | None = None,
    ) -> NoReturn:
        """Record a refused attempt (and a lockout it causes), then raise it.

        ``typed_id`` is what was typed as the user ID: recorded as the account's ID when
        ``user`` is known or it names an account, else only as a keyed digest.
        """
        now = self.clock.now()
        locked_now = False
        with self.audit.transaction() as conn:
            subject = user.user_id if user else self.store.audit_subject(typed_id, conn)
            failures: int | None = None
            if user is not None and reason.counts_towards_lockout:
                conn.execute(
                    update(auth_user)
                    .where(auth_user.c.user_id == user.user_id)
                    .values(failed_count=auth_user.c.failed_count + 1)
                )
                row = conn.execute(
                    select(auth_user.c.failed_count, auth_user.c.status).where(
                        auth_user.c.user_id == user.user_id
                    )
                ).one()
                failures = int(row[0])
                locked_now = (
                    failures >= self.settings.lockout_threshold
                    and row[1] == UserStatus.ACTIVE.value
                )
            self.audit.record(
                conn,
                FAILURE_ACTIONS[purpose],
                actor,
                entity=("user", subject),
                details={
                    **dict(details or {}),
                    "failure": reason.value,
                    "purpose": purpose.value,
                    "known_user": user is not None,
                    "consecutive_failures": failures,
                },
            )
            if locked_now and user is not None:
                self._lock(conn, user.user_id, failures or 0, now)
        raise AuthenticationFailed(
            reason, user_id=user.user_id if user else None, locked_now=locked_now
        )

    def _lock(self, conn: Connection, user_id: str, failures: int, now: datetime) -> None:
        self.store.update_fields(
            conn, user_id, status=UserStatus.LOCKED.value, locked_at=to_utc_text(now)
        )
        self.audit.record(
            conn,
            "auth.account.locked",
            SYSTEM,
            entity=("user", user_id),
            field="status",
            old_value=UserStatus.ACTIVE.value,
            new_value=UserStatus.LOCKED.value,
            details={
                "consecutive_failures": failures,
                "threshold": self.settings.lockout_threshold,
            },
        )
        raise_alert(
            conn,
            self.audit,
            now,
            kind=AlertKind.ACCOUNT_LOCKED,
            subject_user_id=user_id,
            message=(
                f"Account {user_id} locked after {failures} consecutive failed attempts"
                f" on terminal {self.audit.terminal_id}"
            ),
            details={"consecutive_failures": failures},
        )
