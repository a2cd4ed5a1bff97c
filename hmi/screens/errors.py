"""Turning any failure of a service call into one sentence an operator understands."""

from __future__ import annotations

import logging

from hmi.alarms.service import AlarmError
from hmi.audit.chain import AuditWriteError
from hmi.auth.errors import (
    AuthenticationFailed,
    AuthError,
    PasswordRejected,
    PermissionDenied,
    SessionNotActive,
)
from hmi.batch.errors import BatchError
from hmi.db import DatabaseError
from hmi.ebr.assemble import EbrError
from hmi.plc.errors import PlcError
from hmi.recipe.errors import RecipeError

log = logging.getLogger(__name__)


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def describe_error(exc: BaseException) -> str:
    """One sentence for the screen; never a traceback (which goes to the log)."""
    if isinstance(exc, AuthenticationFailed):
        return exc.reason.message
    if isinstance(exc, PasswordRejected):
        return _sentence("The new password is not accepted: " + "; ".join(exc.problems))
    if isinstance(exc, PermissionDenied):
        return _sentence(f"Not allowed: {exc}. The attempt was recorded")
    if isinstance(exc, SessionNotActive):
        return _sentence(str(exc))
    if isinstance(exc, AuditWriteError):
        return _sentence(
            f"The action was refused because the audit trail could not be written ({exc})"
        )
    if isinstance(exc, DatabaseError):
        return _sentence(f"The database is not available ({exc}); nothing was changed")
    if isinstance(exc, EbrError):
        # Batch record copies and audit trail reviews: their refusals (a range that ends in
        # the future or is already reviewed, a copy that would overwrite a file) are written
        # for the reviewer, and say what to do instead.
        return _sentence(str(exc))
    if isinstance(exc, AuthError | BatchError | AlarmError | RecipeError | PlcError | ValueError):
        return _sentence(str(exc))
    log.error("unexpected error in a service call", exc_info=exc)
    name = type(exc).__name__
    return f"The action could not be completed ({name}: {exc}). Nothing was changed."
