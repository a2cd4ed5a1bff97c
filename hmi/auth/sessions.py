"""The Part 11 "continuous period of controlled access" on a shared kiosk.

A session starts at login (user ID + password, and a TOTP code for privileged roles) and ends at
logout, at the absolute limit, when another user logs in at the same kiosk, or when the account
is locked or disabled. After ``[session] idle_lock_minutes`` without activity it locks; only the
same user's password unlocks it (or another user logs in, which ends it). Sessions are rows in
the database so records can name them; start, lock, unlock and end are audit events.

The service is used by the TUI (from a thread worker: login and unlock hash a password), by the
``hmi users`` command and by every other service through :meth:`SessionService.authorize`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from hmi.audit.chain import SYSTEM, Actor, AuditLog
from hmi.auth.accounts import UserRecord, UserStatus, UserStore, normalise_user_id
from hmi.auth.credentials import CredentialVerifier, Proof, Purpose
from hmi.auth.errors import (
    AuthenticationFailed,
    FailureReason,
    InvalidUserInput,
    PasswordChangeRequired,
    PasswordRejected,
    PermissionDenied,
    SessionNotActive,
)
from hmi.auth.passwords import PasswordHasher, PasswordPolicy
from hmi.auth.roles import Role, allowed, roles_for_action
from hmi.auth.tables import auth_session, auth_user
from hmi.clock import Clock, to_utc_text
from hmi.config import PasswordSettings, SessionSettings
from hmi.db import read_only

PASSWORD_CHANGE_WINDOW = timedelta(minutes=5)


class SessionState(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"
    ENDED = "ended"


class LockCause(StrEnum):
    IDLE = "idle"
    MANUAL = "manual"


class EndCause(StrEnum):
    LOGOUT = "logout"
    SWITCHED_USER = "switched_user"
    ABSOLUTE_LIMIT = "absolute_limit"
    ACCOUNT_LOCKED = "account_locked"
    ACCOUNT_DISABLED = "account_disabled"
    CREDENTIALS_REVOKED = "credentials_revoked"
    ROLES_CHANGED = "roles_changed"
    ENDED_ELSEWHERE = "ended_elsewhere"
    TERMINAL_RESTART = "terminal_restart"


@dataclass(eq=False)
class Session:
    """One continuous period of controlled access by one user at one terminal.

    Mutable on purpose: the kiosk holds one object per session and the service updates its
    state (activity, lock, end). Only :class:`SessionService` changes it.
    """

    session_id: str
    user_id: str
    full_name: str
    roles: tuple[Role, ...]
    role: Role
    terminal_id: str
    started_at: datetime
    last_activity: datetime
    login_components: tuple[str, ...]
    state: SessionState = SessionState.ACTIVE
    locked_at: datetime | None = None
    ended_at: datetime | None = None
    end_cause: EndCause | None = None
    #: The first signature of this continuous period was made with user ID + password;
    #: later ones need at least the password. Reset by a lock (21 CFR 11.200(a)(1)).
    signing_id_confirmed: bool = False

    @property
    def actor(self) -> Actor:
        """Who acts, for the audit trail."""
        return Actor(self.user_id, self.role.value, self.session_id)

    @property
    def is_active(self) -> bool:
        return self.state is SessionState.ACTIVE


@dataclass(frozen=True)
class _NewPassword:
    hash: str
    relies_on_totp: bool


@dataclass(frozen=True)
class _PendingChange:
    user_id: str
    password_hash: str
    role: Role | None
    components: tuple[str, ...]
    cause: FailureReason
    expires_at: datetime


class SessionService:
    """Login, activity, idle lock, unlock, logout, switch user, and permission checks."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        session_settings: SessionSettings,
        password_settings: PasswordSettings,
        credentials: CredentialVerifier,
        store: UserStore,
        hasher: PasswordHasher,
        policy: PasswordPolicy,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.settings = session_settings
        self.password_settings = password_settings
        self.credentials = credentials
        self.store = store
        self.hasher = hasher
        self.policy = policy
        self.current: Session | None = None
        self._pending: dict[str, _PendingChange] = {}

    # -- limits -----------------------------------------------------------------------------

    @property
    def idle_limit(self) -> timedelta:
        return timedelta(minutes=self.settings.idle_lock_minutes)

    @property
    def absolute_limit(self) -> timedelta:
        return timedelta(hours=self.settings.absolute_limit_hours)

    # -- login ------------------------------------------------------------------------------

    def totp_needed(self, user_id: str) -> bool:
        """Whether the login form must ask this user for a TOTP code (user IDs are not secret)."""
        try:
            user = self.store.load(normalise_user_id(user_id))
        except InvalidUserInput:
            return False
        return user is not None and user.requires_totp

    def login(
        self,
        user_id: str,
        password: str,
        totp: str | None = None,
        *,
        role: Role | str | None = None,
    ) -> Session:
        """Start a session (ending the kiosk's previous one); blocking: hashes the password.

        Raises :class:`AuthenticationFailed` (recorded) or, when the password is temporary or
        expired, :class:`PasswordChangeRequired` carrying a token for
        :meth:`complete_password_change`.
        """
        wanted = None if role is None else Role(role)
        proof = self.credentials.check(
            user_id=user_id, password=password, totp=totp, purpose=Purpose.LOGIN, role=wanted
        )
        user = proof.user
        cause = self._change_needed(user)
        if cause is not None:
            token = secrets.token_urlsafe(32)
            expires = proof.verified_at + PASSWORD_CHANGE_WINDOW
            with self.credentials.transaction(proof, purpose=Purpose.LOGIN, actor=SYSTEM) as conn:
                self.audit.record(
                    conn,
                    "auth.login.password_change_required",
                    SYSTEM,
                    entity=("user", user.user_id),
                    details={"cause": cause.value, "components": list(proof.components)},
                )
            self._pending = {
                k: v for k, v in self._pending.items() if v.expires_at > proof.verified_at
            }
            self._pending[token] = _PendingChange(
                user.user_id, user.password_hash, wanted, proof.components, cause, expires
            )
            raise PasswordChangeRequired(
                cause, user_id=user.user_id, token=token, expires_at=expires
            )
        return self._start(proof, wanted)

    def complete_password_change(self, token: str, new_password: str) -> Session:
        """Set the user's own new password after :class:`PasswordChangeRequired` and log in.

        The token is single use and valid for five minutes; a rejected password leaves it valid
        so the user can try another one.
        """
        now = self.clock.now()
        pending = self._pending.get(token)
        if pending is None or pending.expires_at <= now:
            self._pending.pop(token, None)
            raise SessionNotActive("ended", "password_change_expired")
        user = self.store.load(pending.user_id)
        if user is None or user.password_hash != pending.password_hash:
            self._pending.pop(token, None)
            self.credentials.fail(
                FailureReason.ACCOUNT_CHANGED,
                purpose=Purpose.PASSWORD_CHANGE,
                actor=SYSTEM,
                user=user,
                typed_id=pending.user_id,
            )
        chosen = self._new_password(user, new_password, actor=SYSTEM)
        proof = Proof(user=user, components=pending.components, verified_at=now)
        del self._pending[token]
        return self._start(proof, pending.role, new_password=chosen)

    def _change_needed(self, user: UserRecord) -> FailureReason | None:
        if user.must_change_password:
            return FailureReason.PASSWORD_CHANGE_REQUIRED
        if user.password_expired(self.clock.now(), self.password_settings.max_age_days):
            return FailureReason.PASSWORD_EXPIRED
        if user.password_set_with_totp and not user.requires_totp:
            # The password met the shorter minimum for TOTP accounts, which this no longer is.
            return FailureReason.PASSWORD_CHANGE_REQUIRED
        return None

    def _store_own_password(
        self,
        conn: Connection,
        session: Session,
        chosen: _NewPassword,
        now: datetime,
        details: Mapping[str, Any],
    ) -> None:
        """A user's own new password and its audit event, in the caller's transaction."""
        self.store.set_password(
            conn,
            session.user_id,
            password_hash=chosen.hash,
            relies_on_totp=chosen.relies_on_totp,
            must_change=False,
            now=now,
            by=session.user_id,
        )
        self.audit.record(
            conn,
            "auth.password.changed",
            session.actor,
            entity=("user", session.user_id),
            details=details,
        )

    def _new_password(self, user: UserRecord, new_password: str, *, actor: Actor) -> _NewPassword:
        """Apply the policy and history to a user's new password; record a rejection."""
        problems = self.policy.problems(
            new_password,
            user_id=user.user_id,
            full_name=user.full_name,
            with_totp=user.requires_totp,
        )
        if not problems:
            with read_only(self.engine) as conn:
                history = self.store.password_history(
                    conn, user.user_id, self.password_settings.history
                )
            if any(self.hasher.verify(old, new_password) for old in history):
                problems.append(
                    f"do not reuse any of your last {self.password_settings.history} passwords"
                )
        if problems:
            self.audit.record_now(
                "auth.password.rejected",
                actor,
                entity=("user", user.user_id),
                details={"problems": problems},
            )
            raise PasswordRejected(problems)
        relies = self.policy.relies_on_totp(new_password, with_totp=user.requires_totp)
        return _NewPassword(self.hasher.hash(new_password), relies)

    def _start(
        self, proof: Proof, role: Role | None, *, new_password: _NewPassword | None = None
    ) -> Session:
        user = proof.user
        now = self.clock.now()
        chosen = role or user.roles[0]
        session = Session(
            session_id=uuid.uuid4().hex,
            user_id=user.user_id,
            full_name=user.full_name,
            roles=user.roles,
            role=chosen,
            terminal_id=self.audit.terminal_id,
            started_at=now,
            last_activity=now,
            login_components=proof.components,
        )
        previous = self.current
        with self.credentials.transaction(proof, purpose=Purpose.LOGIN, actor=SYSTEM) as conn:
            if previous is not None and previous.state is not SessionState.ENDED:
                self._end_in(conn, previous, EndCause.SWITCHED_USER, now)
            if new_password is not None:
                self._store_own_password(
                    conn, session, new_password, now,
                    {"at_login": True, "was_temporary": user.must_change_password},
                )  # fmt: skip
            self.store.update_fields(conn, user.user_id, last_login_at=to_utc_text(now))
            conn.execute(
                insert(auth_session),
                {
                    "session_id": session.session_id,
                    "user_id": user.user_id,
                    "role": chosen.value,
                    "roles": ",".join(r.value for r in user.roles),
                    "terminal_id": session.terminal_id,
                    "started_at": to_utc_text(now),
                    "last_activity_at": to_utc_text(now),
                    "state": SessionState.ACTIVE.value,
                    "login_components": ",".join(proof.components),
                },
            )
            self.audit.record(
                conn,
                "auth.login.succeeded",
                session.actor,
                entity=("user", user.user_id),
                details={"components": list(proof.components), "session_id": session.session_id},
            )
            self.audit.record(
                conn,
                "auth.session.started",
                session.actor,
                entity=("session", session.session_id),
                details={
                    "user_id": user.user_id,
                    "role": chosen.value,
                    "roles": [r.value for r in user.roles],
                    "terminal_id": session.terminal_id,
                    "idle_lock_minutes": str(self.settings.idle_lock_minutes),
                    "absolute_limit_hours": str(self.settings.absolute_limit_hours),
                },
            )
        if previous is not None and previous.state is not SessionState.ENDED:
            self._mark_ended(previous, EndCause.SWITCHED_USER, now)
        self.current = session
        return session

    # -- activity and the idle lock ---------------------------------------------------------

    def touch(self, session: Session) -> None:
        """Note user activity (no database write); refuses a session that is no longer active."""
        if self.check_idle(session) is not SessionState.ACTIVE:
            raise SessionNotActive(session.state.value, _cause(session))
        session.last_activity = self.clock.now()

    def check_idle(self, session: Session) -> SessionState:
        """Lock after inactivity and end after the absolute limit (call it on a timer)."""
        if session.state is SessionState.ENDED:
            return session.state
        now = self.clock.now()
        if now - session.started_at >= self.absolute_limit:
            self._end(session, EndCause.ABSOLUTE_LIMIT)
        elif (
            session.state is SessionState.ACTIVE and now - session.last_activity >= self.idle_limit
        ):
            self.lock(session, LockCause.IDLE)
        return session.state

    def seconds_until_idle_lock(self, session: Session) -> float:
        """For the countdown the kiosk shows before locking."""
        if session.state is not SessionState.ACTIVE:
            return 0.0
        left = session.last_activity + self.idle_limit - self.clock.now()
        return max(0.0, left.total_seconds())

    def lock(self, session: Session, cause: LockCause = LockCause.MANUAL) -> None:
        """Lock the kiosk; the same user's password (or another login) is needed to go on."""
        if session.state is not SessionState.ACTIVE:
            return
        now = self.clock.now()
        with self.audit.transaction() as conn:
            conn.execute(
                update(auth_session)
                .where(auth_session.c.session_id == session.session_id)
                .values(
                    state=SessionState.LOCKED.value,
                    locked_at=to_utc_text(now),
                    last_activity_at=to_utc_text(session.last_activity),
                )
            )
            self.audit.record(
                conn,
                "auth.session.locked",
                session.actor,
                entity=("session", session.session_id),
                field="state",
                old_value=SessionState.ACTIVE.value,
                new_value=SessionState.LOCKED.value,
                details={"cause": cause.value, "last_activity": session.last_activity},
            )
        session.state = SessionState.LOCKED
        session.locked_at = now
        session.signing_id_confirmed = False

    def unlock(self, session: Session, password: str) -> Session:
        """Unlock with the same user's password (blocking: hashes it)."""
        if session.state is SessionState.ACTIVE:
            return session
        if session.state is SessionState.ENDED or self.check_idle(session) is SessionState.ENDED:
            raise SessionNotActive(session.state.value, _cause(session))
        try:
            proof = self.credentials.check(
                user_id=session.user_id,
                password=password,
                totp=None,
                purpose=Purpose.UNLOCK,
                actor=session.actor,
                need_totp=False,
                id_entered=False,
                details={"session_id": session.session_id},
            )
        except AuthenticationFailed as exc:
            self.end_if_account_closed(session, exc)
            raise
        now = self.clock.now()
        with self.credentials.transaction(
            proof, purpose=Purpose.UNLOCK, actor=session.actor
        ) as conn:
            conn.execute(
                update(auth_session)
                .where(auth_session.c.session_id == session.session_id)
                .values(state=SessionState.ACTIVE.value, last_activity_at=to_utc_text(now))
            )
            self.audit.record(
                conn,
                "auth.session.unlocked",
                session.actor,
                entity=("session", session.session_id),
                field="state",
                old_value=SessionState.LOCKED.value,
                new_value=SessionState.ACTIVE.value,
                details={"components": list(proof.components)},
            )
        session.state = SessionState.ACTIVE
        session.last_activity = now
        session.locked_at = None
        return session

    def end_if_account_closed(self, session: Session, exc: AuthenticationFailed) -> None:
        """End the session when a failed check locked the account or found it closed."""
        if exc.locked_now or exc.reason is FailureReason.ACCOUNT_LOCKED:
            self._end(session, EndCause.ACCOUNT_LOCKED)
        elif exc.reason is FailureReason.ACCOUNT_DISABLED:
            self._end(session, EndCause.ACCOUNT_DISABLED)

    # -- ending -----------------------------------------------------------------------------

    def logout(self, session: Session) -> None:
        self._end(session, EndCause.LOGOUT)

    def _end(self, session: Session, cause: EndCause) -> None:
        if session.state is SessionState.ENDED:
            return
        now = self.clock.now()
        with self.audit.transaction() as conn:
            self._end_in(conn, session, cause, now)
        self._mark_ended(session, cause, now)

    def _end_in(self, conn: Connection, session: Session, cause: EndCause, now: datetime) -> None:
        result = conn.execute(
            update(auth_session)
            .where(
                auth_session.c.session_id == session.session_id,
                auth_session.c.state != SessionState.ENDED.value,
            )
            .values(
                state=SessionState.ENDED.value,
                ended_at=to_utc_text(now),
                end_cause=cause.value,
                last_activity_at=to_utc_text(session.last_activity),
            )
        )
        if result.rowcount:
            self.audit.record(
                conn,
                "auth.session.ended",
                session.actor,
                entity=("session", session.session_id),
                field="state",
                old_value=session.state.value,
                new_value=SessionState.ENDED.value,
                details={
                    "cause": cause.value,
                    "duration_s": int((now - session.started_at).total_seconds()),
                },
            )

    def _mark_ended(self, session: Session, cause: EndCause, now: datetime) -> None:
        session.state = SessionState.ENDED
        session.ended_at = now
        session.end_cause = cause
        session.signing_id_confirmed = False
        if self.current is session:
            self.current = None

    def end_user_sessions(
        self, conn: Connection, user_id: str, cause: EndCause, actor: Actor
    ) -> list[str]:
        """End every open session of a user, in the caller's transaction (account disabled,
        credentials revoked). The kiosk's session objects notice at their next use."""
        now = self.clock.now()
        rows = conn.execute(
            select(auth_session.c.session_id, auth_session.c.state).where(
                auth_session.c.user_id == user_id, auth_session.c.state != SessionState.ENDED.value
            )
        ).all()
        for session_id, state in rows:
            conn.execute(
                update(auth_session)
                .where(auth_session.c.session_id == session_id)
                .values(
                    state=SessionState.ENDED.value, ended_at=to_utc_text(now), end_cause=cause.value
                )
            )
            self.audit.record(
                conn,
                "auth.session.ended",
                actor,
                entity=("session", str(session_id)),
                field="state",
                old_value=str(state),
                new_value=SessionState.ENDED.value,
                details={"cause": cause.value, "user_id": user_id},
            )
        return [str(r[0]) for r in rows]

    def end_stale_sessions(self) -> list[str]:
        """At kiosk start-up: end sessions this terminal left open (crash, power loss)."""
        with self.audit.transaction() as conn:
            rows = conn.execute(
                select(auth_session.c.session_id, auth_session.c.state).where(
                    auth_session.c.terminal_id == self.audit.terminal_id,
                    auth_session.c.state != SessionState.ENDED.value,
                )
            ).all()
            now = to_utc_text(self.clock.now())
            for session_id, state in rows:
                conn.execute(
                    update(auth_session)
                    .where(auth_session.c.session_id == session_id)
                    .values(
                        state=SessionState.ENDED.value,
                        ended_at=now,
                        end_cause=EndCause.TERMINAL_RESTART.value,
                    )
                )
                self.audit.record(
                    conn,
                    "auth.session.ended",
                    SYSTEM,
                    entity=("session", str(session_id)),
                    field="state",
                    old_value=str(state),
                    new_value=SessionState.ENDED.value,
                    details={"cause": EndCause.TERMINAL_RESTART.value},
                )
        return [str(r[0]) for r in rows]

    # -- permission checks ------------------------------------------------------------------

    def ensure_active(self, session: Session) -> None:
        """Raise :class:`SessionNotActive` unless the session is active, applying the idle
        lock, the absolute limit, and changes made elsewhere (account disabled or locked)."""
        if session.state is not SessionState.ENDED:
            self._refresh(session)
        if self.check_idle(session) is not SessionState.ACTIVE:
            raise SessionNotActive(session.state.value, _cause(session))

    def _refresh(self, session: Session) -> None:
        with read_only(self.engine) as conn:
            row = conn.execute(
                select(auth_session.c.state, auth_user.c.status)
                .select_from(
                    auth_session.join(auth_user, auth_session.c.user_id == auth_user.c.user_id)
                )
                .where(auth_session.c.session_id == session.session_id)
            ).first()
        if row is None:
            return
        if row[0] == SessionState.ENDED.value:
            self._mark_ended(session, EndCause.ENDED_ELSEWHERE, self.clock.now())
        elif row[1] == UserStatus.DISABLED.value:
            self._end(session, EndCause.ACCOUNT_DISABLED)
        elif row[1] == UserStatus.LOCKED.value:
            self._end(session, EndCause.ACCOUNT_LOCKED)

    def can(self, session: Session | None, action: str) -> bool:
        """For the UI to dim what the user may not do (no record; the service still checks)."""
        roles_for_action(action)
        return session is not None and session.is_active and allowed(session.role, action)

    def authorize(
        self,
        session: Session,
        action: str,
        *,
        entity: tuple[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Actor:
        """Check that the session may perform ``action`` now; record and raise a refusal.

        Returns the :class:`Actor` to write the action's audit event with.
        """
        roles_for_action(action)  # an unknown action is a programming error, not a refusal
        try:
            self.ensure_active(session)
        except SessionNotActive as exc:
            self._record_denial(session, action, entity, details, cause=f"session_{exc.state}")
            raise
        if not allowed(session.role, action):
            self._record_denial(session, action, entity, details, cause="role")
            raise PermissionDenied(action, session.role.value)
        session.last_activity = self.clock.now()
        return session.actor

    def _record_denial(
        self,
        session: Session,
        action: str,
        entity: tuple[str, str] | None,
        details: Mapping[str, Any] | None,
        *,
        cause: str,
    ) -> None:
        self.audit.record_now(
            "auth.permission.denied",
            session.actor,
            entity=entity or ("action", action),
            details={**dict(details or {}), "action": action, "cause": cause},
        )

    def set_role(self, session: Session, role: Role | str) -> Session:
        """Switch the active role of a multi-role account (recorded)."""
        wanted = Role(role)
        self.ensure_active(session)
        if wanted not in session.roles:
            self._record_denial(session, "session.role", ("role", wanted.value), None, cause="role")
            raise PermissionDenied(f"act as {wanted.value}", session.role.value)
        if wanted is session.role:
            return session
        with self.audit.transaction() as conn:
            conn.execute(
                update(auth_session)
                .where(auth_session.c.session_id == session.session_id)
                .values(role=wanted.value)
            )
            self.audit.record(
                conn,
                "auth.session.role_changed",
                Actor(session.user_id, wanted.value, session.session_id),
                entity=("session", session.session_id),
                field="role",
                old_value=session.role.value,
                new_value=wanted.value,
            )
        session.role = wanted
        session.last_activity = self.clock.now()
        return session

    # -- the user's own password ------------------------------------------------------------

    def change_password(self, session: Session, current_password: str, new_password: str) -> None:
        """The logged-in user changes their own password (blocking: hashes several times)."""
        self.ensure_active(session)
        proof = self.credentials.check(
            user_id=session.user_id,
            password=current_password,
            totp=None,
            purpose=Purpose.PASSWORD_CHANGE,
            actor=session.actor,
            need_totp=False,
            id_entered=False,
        )
        chosen = self._new_password(proof.user, new_password, actor=session.actor)
        now = self.clock.now()
        with self.credentials.transaction(
            proof, purpose=Purpose.PASSWORD_CHANGE, actor=session.actor
        ) as conn:
            self._store_own_password(conn, session, chosen, now, {"at_login": False})
        session.last_activity = now


def _cause(session: Session) -> str | None:
    if session.state is SessionState.LOCKED:
        return "locked"
    return session.end_cause.value if session.end_cause else None
