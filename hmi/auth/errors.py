"""Exceptions of the auth package, each specific enough for the UI to say what happened.

:class:`AuthenticationFailed` carries a :class:`FailureReason` that a screen turns into one
sentence (``reason.message``); an unknown user ID and a wrong password deliberately share the
same sentence so the login screen does not confirm which IDs exist.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum


class AuthError(Exception):
    """Base class of everything this package refuses."""


class FailureReason(StrEnum):
    """Why credentials were not accepted (stored in the audit trail as ``details.failure``)."""

    UNKNOWN_USER = "unknown_user"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 (reason codes, not secrets)
    INVALID_INPUT = "invalid_input"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_LOCKED = "account_locked"
    PASSWORD_EXPIRED = "password_expired"  # noqa: S105
    PASSWORD_CHANGE_REQUIRED = "password_change_required"  # noqa: S105
    TOTP_REQUIRED = "totp_required"
    TOTP_NOT_ENROLLED = "totp_not_enrolled"
    WRONG_TOTP = "wrong_totp"
    TOTP_REPLAYED = "totp_replayed"
    TOTP_EXPIRED = "totp_expired"
    ROLE_NOT_ASSIGNED = "role_not_assigned"
    USER_ID_REQUIRED = "user_id_required"
    WRONG_USER = "wrong_user"
    ACCOUNT_CHANGED = "account_changed"

    @property
    def message(self) -> str:
        """A sentence an operator understands."""
        return _MESSAGES[self]

    @property
    def counts_towards_lockout(self) -> bool:
        """Whether this failure is a guessed secret (and so counts towards the lockout)."""
        return self in _COUNTED


_MESSAGES = {
    FailureReason.UNKNOWN_USER: "User ID or password is not correct.",
    FailureReason.WRONG_PASSWORD: "User ID or password is not correct.",
    FailureReason.INVALID_INPUT: "User ID or password is not correct.",
    FailureReason.ACCOUNT_DISABLED: "This account is disabled. Ask an administrator.",
    FailureReason.ACCOUNT_LOCKED: (
        "This account is locked after repeated failed attempts. Ask an administrator to unlock it."
    ),
    FailureReason.PASSWORD_EXPIRED: "Your password has expired. Choose a new one.",
    FailureReason.PASSWORD_CHANGE_REQUIRED: (
        "You are using a temporary password. Choose your own password now."
    ),
    FailureReason.TOTP_REQUIRED: "Enter the 6-digit code from your authenticator.",
    FailureReason.TOTP_NOT_ENROLLED: (
        "Your role needs an authenticator and none is enrolled. Ask an administrator."
    ),
    FailureReason.WRONG_TOTP: "The authenticator code is not correct.",
    FailureReason.TOTP_REPLAYED: (
        "That authenticator code was already used. Wait for the next code."
    ),
    FailureReason.TOTP_EXPIRED: (
        "That authenticator code has expired. Check the time on your device and use a new code."
    ),
    FailureReason.ROLE_NOT_ASSIGNED: "You do not hold that role.",
    FailureReason.USER_ID_REQUIRED: "Enter your user ID as well as your password to sign.",
    FailureReason.WRONG_USER: "Only the user who is logged in can do this.",
    FailureReason.ACCOUNT_CHANGED: "Your account was changed meanwhile. Please try again.",
}

_COUNTED = frozenset(
    {
        FailureReason.WRONG_PASSWORD,
        FailureReason.INVALID_INPUT,
        FailureReason.WRONG_TOTP,
        FailureReason.TOTP_REPLAYED,
        FailureReason.TOTP_EXPIRED,
    }
)


class AuthenticationFailed(AuthError):
    """Credentials were refused; the attempt has been recorded in the audit trail."""

    def __init__(
        self, reason: FailureReason, *, user_id: str | None = None, locked_now: bool = False
    ) -> None:
        super().__init__(reason.message)
        self.reason = reason
        self.user_id = user_id
        self.locked_now = locked_now


class PasswordChangeRequired(AuthenticationFailed):
    """The credentials were right but the password is temporary or expired.

    ``token`` completes the login with a new password through
    :meth:`hmi.auth.sessions.SessionService.complete_password_change` (single use, short-lived),
    so the user does not enter the password and authenticator code a second time.
    """

    def __init__(
        self, reason: FailureReason, *, user_id: str, token: str, expires_at: datetime
    ) -> None:
        super().__init__(reason, user_id=user_id)
        self.token = token
        self.expires_at = expires_at


class PermissionDenied(AuthError):
    """The acting role may not perform this action or sign with this meaning (recorded)."""

    def __init__(self, what: str, role: str, message: str | None = None) -> None:
        super().__init__(message or f"the role '{role}' may not do '{what}'")
        self.what = what
        self.role = role


class PasswordRejected(AuthError):
    """A new password does not meet the policy; ``problems`` lists every rule it breaks."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class InvalidUserInput(AuthError):
    """A user ID, name, role list or reason is malformed; the message says what is expected."""


class UserIdUnavailable(AuthError):
    """The user ID exists or existed: IDs are never reused, even after an account is disabled."""


class UnknownUser(AuthError):
    """No account with this user ID (administration commands, not login)."""


class AccountStateError(AuthError):
    """The account is not in a state that allows this (e.g. unlocking an account that is not
    locked, disabling the last administrator)."""


class TotpError(AuthError):
    """An authenticator operation failed (no pending enrolment, wrong confirmation code...)."""


class SiteKeyError(AuthError):
    """The site key that encrypts TOTP secrets is missing, unreadable or wrong."""


class SessionNotActive(AuthError):
    """The session is locked or has ended; ``state`` and ``cause`` say which and why."""

    def __init__(self, state: str, cause: str | None = None) -> None:
        text = (
            "the session is locked: enter your password to continue"
            if state == "locked"
            else ("the session has ended: log in again")
        )
        super().__init__(text)
        self.state = state
        self.cause = cause


class SignatureRefusal(StrEnum):
    """Why a signature or co-signature was refused (besides credentials and permissions)."""

    SAME_PERSON = "same_person"
    ROLE_NOT_PERMITTED = "role_not_permitted"
    STATEMENT_NOT_ACCEPTED = "statement_not_accepted"
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_REQUEST = "unknown_request"


_REFUSAL_MESSAGES = {
    SignatureRefusal.SAME_PERSON: "A co-signature must come from a different person.",
    SignatureRefusal.ROLE_NOT_PERMITTED: "None of this person's roles may sign with that meaning.",
    SignatureRefusal.STATEMENT_NOT_ACCEPTED: (
        "Before your first electronic signature you must accept the accountability statement."
    ),
    SignatureRefusal.INVALID_REQUEST: (
        "The request's signature does not verify; it cannot be co-signed."
    ),
    SignatureRefusal.UNKNOWN_REQUEST: "There is no such signed request.",
}


class SignatureRefused(AuthError):
    """A signature was refused for a reason other than credentials or permission (recorded)."""

    def __init__(self, reason: SignatureRefusal) -> None:
        super().__init__(_REFUSAL_MESSAGES[reason])
        self.reason = reason
