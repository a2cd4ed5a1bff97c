"""Account administration: create, disable, unlock, reset passwords, roles, TOTP enrolment,
and the access review (21 CFR 11.100, 11.300; Annex 11 §12).

Every method acts for an authenticated administrator's session, takes a reason, checks the
permission, and writes the account change and its audit event in one transaction; refusals are
recorded too. Nobody administers their own account (roles, password reset, disable, TOTP):
another administrator does, so no single person can raise their own privileges unseen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, insert, select, update

from hmi.audit.chain import SYSTEM, Actor, AuditLog
from hmi.auth.accounts import (
    TotpState,
    UserRecord,
    UserStatus,
    UserStore,
    normalise_full_name,
    normalise_reason,
    normalise_user_id,
    parse_roles,
    roles_text,
)
from hmi.auth.alerts import AlertKind, resolve_alerts
from hmi.auth.errors import (
    AccountStateError,
    AuthError,
    InvalidUserInput,
    PasswordRejected,
    TotpError,
    UnknownUser,
    UserIdUnavailable,
)
from hmi.auth.passwords import PasswordHasher, PasswordPolicy
from hmi.auth.roles import Role, role_combination_problems, roles_require_totp
from hmi.auth.sessions import EndCause, Session, SessionService
from hmi.auth.tables import auth_totp
from hmi.auth.totp import (
    TotpCipher,
    TotpOutcome,
    check_code,
    grouped_secret,
    new_secret,
    normalise_secret,
    provisioning_uri,
    qr_lines,
)
from hmi.clock import Clock, to_utc_text
from hmi.config import PasswordSettings
from hmi.db import read_only

#: A started TOTP enrolment must be confirmed within this time.
ENROLMENT_WINDOW = timedelta(minutes=10)


@dataclass(frozen=True)
class IdentityVerification:
    """Who verified a new user's identity and how (21 CFR 11.100(b)); both are required."""

    verified_by: str
    method: str

    def normalised(self) -> IdentityVerification:
        return IdentityVerification(
            normalise_reason(self.verified_by, what="name of who verified the identity", minimum=2),
            normalise_reason(
                self.method, what="description of how the identity was verified", minimum=2
            ),
        )


@dataclass(frozen=True)
class PendingTotp:
    """A started enrolment: show :attr:`uri` as a QR code and the key as text, then confirm."""

    enrolment_id: int
    user_id: str
    secret: str = field(repr=False)
    uri: str = field(repr=False)

    @property
    def key_text(self) -> str:
        """The secret in groups of four, for typing into an authenticator by hand."""
        return grouped_secret(self.secret)

    def qr_lines(self, *, dark_background: bool = True) -> list[str]:
        return qr_lines(self.uri, dark_background=dark_background)


@dataclass(frozen=True)
class AccessReviewRow:
    """One line of the periodic access review (21 CFR 11.300(b), Annex 11 §12)."""

    user_id: str
    full_name: str
    roles: tuple[Role, ...]
    status: str
    last_login_at: datetime | None
    totp: TotpState
    totp_enrolled_at: datetime | None
    totp_last_used_at: datetime | None
    locked: bool
    password_age_days: int
    must_change_password: bool
    failed_count: int
    created_at: datetime
    created_by: str
    identity_verified_by: str
    identity_method: str
    disabled_at: datetime | None


class UserService:
    """Administration of accounts by an administrator's session."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        settings: PasswordSettings,
        sessions: SessionService,
        store: UserStore,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
        cipher: TotpCipher,
        issuer: str,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.settings = settings
        self.sessions = sessions
        self.store = store
        self.hasher = hasher
        self.policy = policy
        self.cipher = cipher
        self.issuer = issuer

    # -- reading ----------------------------------------------------------------------------

    def has_users(self) -> bool:
        return self.store.count() > 0

    def get(self, session: Session, user_id: str) -> UserRecord:
        uid = normalise_user_id(user_id)
        self.sessions.authorize(
            session, "user.review", entity=("user", self.store.audit_subject(user_id))
        )
        user = self.store.load(uid)
        if user is None:
            raise UnknownUser(f"there is no user {uid}")
        return user

    def list_users(self, session: Session) -> list[UserRecord]:
        self.sessions.authorize(session, "user.review")
        return self.store.all()

    def access_review(self, session: Session) -> list[AccessReviewRow]:
        """Every account with roles, status, last login, TOTP and password age (recorded)."""
        actor = self.sessions.authorize(session, "user.review")
        now = self.clock.now()
        users = self.store.all()
        with read_only(self.engine) as conn:
            latest = {
                str(r[0]): r
                for r in conn.execute(
                    select(auth_totp.c.user_id, auth_totp.c.confirmed_at, auth_totp.c.revoked_at)
                    .where(auth_totp.c.revoked_at.is_(None))
                    .order_by(auth_totp.c.enrolment_id)
                )
            }
        rows = []
        for user in users:
            pending = user.user_id in latest and latest[user.user_id][1] is None
            state = (
                TotpState.ACTIVE
                if user.totp_active
                else (TotpState.PENDING if pending else TotpState.NONE)
            )
            rows.append(
                AccessReviewRow(
                    user_id=user.user_id,
                    full_name=user.full_name,
                    roles=user.roles,
                    status=user.effective_status(now, self.settings.max_age_days),
                    last_login_at=user.last_login_at,
                    totp=state,
                    totp_enrolled_at=user.totp.confirmed_at if user.totp else None,
                    totp_last_used_at=user.totp.last_used_at if user.totp else None,
                    locked=user.status is UserStatus.LOCKED,
                    password_age_days=(now - user.password_changed_at).days,
                    must_change_password=user.must_change_password,
                    failed_count=user.failed_count,
                    created_at=user.created_at,
                    created_by=user.created_by,
                    identity_verified_by=user.identity_verified_by,
                    identity_method=user.identity_method,
                    disabled_at=user.disabled_at,
                )
            )
        self.audit.record_now(
            "user.access_review.generated",
            actor,
            entity=("access_review", to_utc_text(now)),
            details={
                "users": len(rows),
                "active": sum(1 for r in rows if r.status == "active"),
                "locked": sum(1 for r in rows if r.locked),
                "disabled": sum(1 for r in rows if r.status == "disabled"),
                "without_totp_where_required": sorted(
                    r.user_id
                    for r in rows
                    if r.status != "disabled"
                    and roles_require_totp(r.roles)
                    and r.totp is not TotpState.ACTIVE
                ),
            },
        )
        return rows

    # -- the first administrator ------------------------------------------------------------

    def create_first_admin(
        self,
        *,
        user_id: str,
        full_name: str,
        password: str,
        identity: IdentityVerification,
        totp_secret: str,
        totp_code: str,
        details: Mapping[str, Any] | None = None,
    ) -> UserRecord:
        """Create the site's first administrator with a confirmed authenticator, in one step.

        Only possible while the site has no account at all (``hmi init``). The TOTP secret was
        shown to the person (QR code and key) and ``totp_code`` is what their device displays.
        """
        uid = normalise_user_id(user_id)
        name = normalise_full_name(full_name)
        who = identity.normalised()
        roles = (Role.ADMIN,)
        self.policy.require(password, user_id=uid, full_name=name, with_totp=True)
        secret = normalise_secret(totp_secret)
        now = self.clock.now()
        match = check_code(secret, totp_code, at=now, last_used_step=None)
        if match.outcome is not TotpOutcome.ACCEPTED:
            self.audit.record_now(
                "user.totp.enrolment_failed",
                SYSTEM,
                entity=("user", uid),
                details={"outcome": match.outcome.value, "first_admin": True},
            )
            raise TotpError(
                "the authenticator code does not match; check the device's time and try again"
            )
        password_hash = self.hasher.hash(password)
        with self.audit.transaction() as conn:
            if self.store.count_in(conn) > 0:
                raise AccountStateError("the site already has accounts; use 'hmi users add'")
            self.store.insert_user(
                conn,
                user_id=uid,
                full_name=name,
                roles=roles,
                password_hash=password_hash,
                relies_on_totp=self.policy.relies_on_totp(password, with_totp=True),
                must_change=False,
                identity_verified_by=who.verified_by,
                identity_method=who.method,
                now=now,
                by=SYSTEM.user_id,
            )
            self.audit.record(
                conn,
                "user.created",
                SYSTEM,
                entity=("user", uid),
                details={
                    **dict(details or {}),
                    "first_admin": True,
                    "full_name": name,
                    "roles": [r.value for r in roles],
                    "identity_verified_by": who.verified_by,
                    "identity_method": who.method,
                    "temporary_password": False,
                },
            )
            enrolment_id = self._insert_enrolment(conn, uid, secret, now, SYSTEM.user_id)
            self._confirm(conn, SYSTEM, uid, enrolment_id, match.step, now, previous=None)
        return self._must_load(uid)

    # -- administration ---------------------------------------------------------------------

    def create_user(
        self,
        session: Session,
        *,
        user_id: str,
        full_name: str,
        roles: Sequence[Role | str],
        password: str,
        identity: IdentityVerification,
        reason: str,
        temporary: bool = True,
    ) -> UserRecord:
        """Create an account with a (by default temporary) password; blocking: hashes it."""
        actor = self.sessions.authorize(
            session,
            "user.manage",
            entity=("user", self.store.audit_subject(user_id)),
            details={"operation": "create"},
        )
        try:
            uid = normalise_user_id(user_id)
            name = normalise_full_name(full_name)
            chosen = parse_roles([str(r) for r in roles])
            problems = role_combination_problems(chosen)
            if problems:
                raise InvalidUserInput("; ".join(problems))
            who = identity.normalised()
            why = normalise_reason(reason)
            with read_only(self.engine) as conn:
                if self.store.exists(conn, uid):
                    raise UserIdUnavailable(
                        f"the user ID {uid} exists or existed; IDs are never reused"
                    )
            self.policy.require(
                password, user_id=uid, full_name=name, with_totp=roles_require_totp(chosen)
            )
        except (InvalidUserInput, UserIdUnavailable, PasswordRejected) as exc:
            self._refused(actor, "create", user_id, exc)
        password_hash = self.hasher.hash(password)
        now = self.clock.now()
        try:
            with self.audit.transaction() as conn:
                if self.store.exists(conn, uid):
                    raise UserIdUnavailable(
                        f"the user ID {uid} exists or existed; IDs are never reused"
                    )
                self.store.insert_user(
                    conn,
                    user_id=uid,
                    full_name=name,
                    roles=chosen,
                    password_hash=password_hash,
                    relies_on_totp=self.policy.relies_on_totp(
                        password, with_totp=roles_require_totp(chosen)
                    ),
                    must_change=temporary,
                    identity_verified_by=who.verified_by,
                    identity_method=who.method,
                    now=now,
                    by=actor.user_id,
                )
                self.audit.record(
                    conn,
                    "user.created",
                    actor,
                    entity=("user", uid),
                    new_value=roles_text(chosen),
                    reason=why,
                    details={
                        "full_name": name,
                        "roles": [r.value for r in chosen],
                        "identity_verified_by": who.verified_by,
                        "identity_method": who.method,
                        "temporary_password": temporary,
                    },
                )
        except UserIdUnavailable as exc:
            self._refused(actor, "create", uid, exc)
        return self._must_load(uid)

    def disable(self, session: Session, user_id: str, *, reason: str) -> UserRecord:
        """Disable an account for good (never deleted; its ID is never reused)."""
        uid, actor, why, user = self._prepare(session, user_id, reason, "disable")
        if uid == actor.user_id:
            self._refused(
                actor, "disable", uid, AccountStateError("you cannot disable your own account")
            )
        if user.status is UserStatus.DISABLED:
            self._refused(actor, "disable", uid, AccountStateError(f"{uid} is already disabled"))
        # The acting administrator stays active, so the site never loses its last one.
        now = self.clock.now()
        with self.audit.transaction() as conn:
            self.store.update_fields(
                conn,
                uid,
                status=UserStatus.DISABLED.value,
                disabled_at=to_utc_text(now),
                disabled_by=actor.user_id,
            )
            self.audit.record(
                conn,
                "user.disabled",
                actor,
                entity=("user", uid),
                field="status",
                old_value=user.status.value,
                new_value=UserStatus.DISABLED.value,
                reason=why,
            )
            self.sessions.end_user_sessions(conn, uid, EndCause.ACCOUNT_DISABLED, actor)
            resolve_alerts(
                conn,
                self.audit,
                now,
                actor,
                kind=AlertKind.ACCOUNT_LOCKED,
                subject_user_id=uid,
                resolution=f"account disabled: {why}",
            )
        return self._must_load(uid)

    def unlock(self, session: Session, user_id: str, *, reason: str) -> UserRecord:
        """Unlock an account locked by failed attempts (administrators only, with a reason)."""
        uid, actor, why, user = self._prepare(session, user_id, reason, "unlock")
        if user.status is not UserStatus.LOCKED:
            self._refused(
                actor,
                "unlock",
                uid,
                AccountStateError(f"{uid} is not locked ({user.status.value})"),
            )
        now = self.clock.now()
        with self.audit.transaction() as conn:
            self.store.update_fields(
                conn, uid, status=UserStatus.ACTIVE.value, locked_at=None, failed_count=0
            )
            self.audit.record(
                conn,
                "user.unlocked",
                actor,
                entity=("user", uid),
                field="status",
                old_value=UserStatus.LOCKED.value,
                new_value=UserStatus.ACTIVE.value,
                reason=why,
                details={"failed_count_before": user.failed_count},
            )
            resolve_alerts(
                conn,
                self.audit,
                now,
                actor,
                kind=AlertKind.ACCOUNT_LOCKED,
                subject_user_id=uid,
                resolution=f"unlocked: {why}",
            )
        return self._must_load(uid)

    def reset_password(
        self, session: Session, user_id: str, new_password: str, *, reason: str
    ) -> UserRecord:
        """Set a temporary password the user must change at the next login; blocking."""
        uid, actor, why, user = self._prepare(session, user_id, reason, "reset_password")
        if uid == actor.user_id:
            self._refused(
                actor,
                "reset_password",
                uid,
                AccountStateError("change your own password with your current one instead"),
            )
        if user.status is UserStatus.DISABLED:
            self._refused(actor, "reset_password", uid, AccountStateError(f"{uid} is disabled"))
        try:
            self.policy.require(
                new_password, user_id=uid, full_name=user.full_name, with_totp=user.requires_totp
            )
            with read_only(self.engine) as conn:
                history = self.store.password_history(conn, uid, self.settings.history)
            if any(self.hasher.verify(old, new_password) for old in history):
                raise PasswordRejected(
                    [f"do not reuse any of the user's last {self.settings.history} passwords"]
                )
        except PasswordRejected as exc:
            self._refused(actor, "reset_password", uid, exc)
        password_hash = self.hasher.hash(new_password)
        now = self.clock.now()
        with self.audit.transaction() as conn:
            self.store.set_password(
                conn,
                uid,
                password_hash=password_hash,
                relies_on_totp=self.policy.relies_on_totp(
                    new_password, with_totp=user.requires_totp
                ),
                must_change=True,
                now=now,
                by=actor.user_id,
            )
            self.audit.record(
                conn,
                "user.password.reset",
                actor,
                entity=("user", uid),
                reason=why,
                details={"temporary": True},
            )
        return self._must_load(uid)

    def set_roles(
        self, session: Session, user_id: str, roles: Sequence[Role | str], *, reason: str
    ) -> UserRecord:
        """Replace an account's roles (segregation of duties applies; the user's open sessions
        end so the new roles take effect at once)."""
        uid, actor, why, user = self._prepare(session, user_id, reason, "set_roles")
        try:
            chosen = parse_roles([str(r) for r in roles])
            problems = role_combination_problems(chosen)
            if problems:
                raise InvalidUserInput("; ".join(problems))
            if uid == actor.user_id:
                raise AccountStateError("you cannot change your own roles")
            if user.status is UserStatus.DISABLED:
                raise AccountStateError(f"{uid} is disabled")
        except (InvalidUserInput, AccountStateError) as exc:
            self._refused(actor, "set_roles", uid, exc)
        if chosen == user.roles:
            return user
        with self.audit.transaction() as conn:
            self.store.update_fields(conn, uid, roles=roles_text(chosen))
            self.audit.record(
                conn,
                "user.roles.changed",
                actor,
                entity=("user", uid),
                field="roles",
                old_value=roles_text(user.roles),
                new_value=roles_text(chosen),
                reason=why,
            )
            self.sessions.end_user_sessions(conn, uid, EndCause.ROLES_CHANGED, actor)
        return self._must_load(uid)

    # -- TOTP -------------------------------------------------------------------------------

    def begin_totp_enrolment(self, session: Session, user_id: str, *, reason: str) -> PendingTotp:
        """Start (re-)enrolling a user's authenticator; the user must be present to scan the QR
        code and type a code into :meth:`confirm_totp_enrolment`."""
        uid, actor, why, user = self._prepare(session, user_id, reason, "enroll_totp")
        if uid == actor.user_id:
            self._refused(
                actor,
                "enroll_totp",
                uid,
                AccountStateError("another administrator must enrol your authenticator"),
            )
        if user.status is UserStatus.DISABLED:
            self._refused(actor, "enroll_totp", uid, AccountStateError(f"{uid} is disabled"))
        secret = new_secret()
        now = self.clock.now()
        with self.audit.transaction() as conn:
            superseded = self._revoke_pending(conn, uid, now, actor)
            enrolment_id = self._insert_enrolment(conn, uid, secret, now, actor.user_id)
            self.audit.record(
                conn,
                "user.totp.enrolment_started",
                actor,
                entity=("user", uid),
                reason=why,
                details={
                    "enrolment_id": enrolment_id,
                    "re_enrolment": user.totp_active,
                    "superseded_pending": superseded,
                },
            )
        uri = provisioning_uri(secret, user_id=uid, issuer=self.issuer)
        return PendingTotp(enrolment_id, uid, secret, uri)

    def confirm_totp_enrolment(self, session: Session, enrolment_id: int, code: str) -> UserRecord:
        """Complete an enrolment with a code from the new device (token testing, 11.300(e))."""
        actor = self.sessions.authorize(
            session,
            "user.manage",
            entity=("totp_enrolment", str(enrolment_id)),
            details={"operation": "confirm_totp"},
        )
        now = self.clock.now()
        with read_only(self.engine) as conn:
            enrolment = self.store.enrolment(conn, enrolment_id)
        if enrolment is None or enrolment.state is not TotpState.PENDING:
            self._refused(
                actor,
                "confirm_totp",
                enrolment.user_id if enrolment else "?",
                TotpError("there is no pending enrolment with that number; start again"),
            )
        if now - enrolment.created_at > ENROLMENT_WINDOW:
            self._refused(
                actor,
                "confirm_totp",
                enrolment.user_id,
                TotpError("the enrolment was started too long ago; start again"),
            )
        secret = self.cipher.decrypt(
            enrolment.secret_enc, user_id=enrolment.user_id, enrolment=str(enrolment.enrolment_id)
        )
        match = check_code(secret, code, at=now, last_used_step=None)
        if match.outcome is not TotpOutcome.ACCEPTED:
            self.audit.record_now(
                "user.totp.enrolment_failed",
                actor,
                entity=("user", enrolment.user_id),
                details={"enrolment_id": enrolment_id, "outcome": match.outcome.value},
            )
            raise TotpError(
                "the code does not match; check the device's time and try the next code"
            )
        with self.audit.transaction() as conn:
            previous = self.store.active_totp(conn, enrolment.user_id)
            self._confirm(
                conn,
                actor,
                enrolment.user_id,
                enrolment_id,
                match.step,
                now,
                previous=previous.enrolment_id if previous else None,
            )
        return self._must_load(enrolment.user_id)

    def revoke_totp(self, session: Session, user_id: str, *, reason: str) -> UserRecord:
        """Revoke a user's authenticator at once (lost or compromised device, 11.300(c)).

        The user's open sessions end; a privileged user cannot log in until re-enrolled.
        """
        uid, actor, why, user = self._prepare(session, user_id, reason, "revoke_totp")
        if user.totp is None:
            self._refused(
                actor, "revoke_totp", uid, TotpError(f"{uid} has no enrolled authenticator")
            )
        now = self.clock.now()
        with self.audit.transaction() as conn:
            conn.execute(
                update(auth_totp)
                .where(auth_totp.c.user_id == uid, auth_totp.c.revoked_at.is_(None))
                .values(revoked_at=to_utc_text(now), revoked_by=actor.user_id)
            )
            self.audit.record(
                conn,
                "user.totp.revoked",
                actor,
                entity=("user", uid),
                reason=why,
                field="totp",
                old_value=TotpState.ACTIVE.value,
                new_value=TotpState.NONE.value,
                details={"enrolment_id": user.totp.enrolment_id},
            )
            self.sessions.end_user_sessions(conn, uid, EndCause.CREDENTIALS_REVOKED, actor)
        return self._must_load(uid)

    # -- helpers ----------------------------------------------------------------------------

    def _prepare(
        self, session: Session, user_id: str, reason: str, operation: str
    ) -> tuple[str, Actor, str, UserRecord]:
        actor = self.sessions.authorize(
            session,
            "user.manage",
            entity=("user", self.store.audit_subject(user_id)),
            details={"operation": operation},
        )
        try:
            uid = normalise_user_id(user_id)
            why = normalise_reason(reason)
            user = self.store.load(uid)
            if user is None:
                raise UnknownUser(f"there is no user {uid}")
        except (InvalidUserInput, UnknownUser) as exc:
            self._refused(actor, operation, user_id, exc)
        return uid, actor, why, user

    def _refused(self, actor: Actor, operation: str, typed: str, exc: AuthError) -> NoReturn:
        """Record a refused change about the user ID ``typed`` (as given: an ID that is not an
        account is recorded only as a digest, and so is the sentence that would name it)."""
        if isinstance(exc, PasswordRejected):
            problems = exc.problems
        elif isinstance(exc, UnknownUser):
            problems = ["there is no account with this user ID"]
        else:
            problems = [str(exc)]
        self.audit.record_now(
            "user.change.refused",
            actor,
            entity=("user", self.store.audit_subject(typed)),
            details={"operation": operation, "problems": problems, "error": type(exc).__name__},
        )
        raise exc

    def _must_load(self, uid: str) -> UserRecord:
        user = self.store.load(uid)
        if user is None:  # pragma: no cover - written in the same call
            raise UnknownUser(uid)
        return user

    def _insert_enrolment(
        self, conn: Connection, uid: str, secret: str, now: datetime, by: str
    ) -> int:
        result = conn.execute(
            insert(auth_totp),
            {"user_id": uid, "secret_enc": "-", "created_at": to_utc_text(now), "created_by": by},
        )
        enrolment_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        conn.execute(
            update(auth_totp)
            .where(auth_totp.c.enrolment_id == enrolment_id)
            .values(
                secret_enc=self.cipher.encrypt(secret, user_id=uid, enrolment=str(enrolment_id))
            )
        )
        return enrolment_id

    def _revoke_pending(self, conn: Connection, uid: str, now: datetime, actor: Actor) -> list[int]:
        pending = [
            int(r[0])
            for r in conn.execute(
                select(auth_totp.c.enrolment_id).where(
                    auth_totp.c.user_id == uid,
                    auth_totp.c.confirmed_at.is_(None),
                    auth_totp.c.revoked_at.is_(None),
                )
            )
        ]
        if pending:
            conn.execute(
                update(auth_totp)
                .where(auth_totp.c.enrolment_id.in_(pending))
                .values(revoked_at=to_utc_text(now), revoked_by=actor.user_id)
            )
        return pending

    def _confirm(
        self,
        conn: Connection,
        actor: Actor,
        uid: str,
        enrolment_id: int,
        step: int | None,
        now: datetime,
        *,
        previous: int | None,
    ) -> None:
        if previous is not None:
            conn.execute(
                update(auth_totp)
                .where(auth_totp.c.enrolment_id == previous)
                .values(revoked_at=to_utc_text(now), revoked_by=actor.user_id)
            )
        conn.execute(
            update(auth_totp)
            .where(auth_totp.c.enrolment_id == enrolment_id)
            .values(
                confirmed_at=to_utc_text(now), last_used_step=step, last_used_at=to_utc_text(now)
            )
        )
        self.audit.record(
            conn,
            "user.totp.enrolled",
            actor,
            entity=("user", uid),
            field="totp",
            new_value=TotpState.ACTIVE.value,
            details={
                "enrolment_id": enrolment_id,
                "re_enrolment": previous is not None,
                "previous_enrolment_id": previous,
            },
        )
