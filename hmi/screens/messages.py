"""Messages screens post up to the App (facts in past tense, intents end in Requested)."""

from __future__ import annotations

from textual.message import Message

from hmi.auth.sessions import Session


class LoggedIn(Message):
    """A user logged in at this kiosk."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session


class Unlocked(Message):
    """The locked session's user unlocked it."""


class SwitchUserRequested(Message):
    """Someone at the locked kiosk wants to log in as another user."""


class SessionEnded(Message):
    """The session ended (absolute limit, account locked or disabled): back to login."""


class NavigateRequested(Message):
    """Open one of the main screens by its key (``overview``, ``audit``...)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target


class DeviationsRequested(Message):
    """Handle the open deviations of the active batch (reason, co-signature)."""


class AlarmsTouched(Message):
    """Someone acknowledged or shelved an alarm: recount for the header."""
