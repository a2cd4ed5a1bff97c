"""Commands that produce or change records act as an authenticated user, so the record says
who did it (21 CFR 11.10(e), ALCOA+ attributable), never just "the OS account"."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hmi.audit.chain import Actor
    from hmi.auth.services import AuthServices
    from hmi.auth.sessions import Session
    from hmi.site import Site


@dataclass
class Acting:
    """An open site and the authenticated user a command acts for."""

    site: Site
    auth: AuthServices
    session: Session
    actor: Actor

    @property
    def who(self) -> str:
        """The acting user as printed on copies: full name and user ID."""
        return f"{self.session.full_name} ({self.session.user_id})"


#: Actions whose command is not a start of the terminal: making a true copy (an export of the
#: audit trail or of a batch record) is recorded (11.10(b)), but writes no start-up checkpoint.
NOT_A_START = frozenset({"audit.export"})


@contextmanager
def acting_user(args: argparse.Namespace, action: str, *, what: str) -> Iterator[Acting]:
    """Log a user in at the prompt, check they may do ``action`` (refusals are recorded),
    and log them out afterwards."""
    from hmi.commands.users import login_interactively, open_auth, translate_errors

    site, auth = open_auth(args, startup=action not in NOT_A_START)
    try:
        with translate_errors():
            session = login_interactively(auth, what=what)
        try:
            with translate_errors():
                actor = auth.sessions.authorize(session, action)
            yield Acting(site, auth, session, actor)
        finally:
            auth.sessions.logout(session)
    finally:
        site.close()


def accept_statement(auth: AuthServices, user_id: str) -> bool:
    """Before a user's first electronic signature: show the accountability statement and have
    it accepted at the prompt (11.100(c)). True when accepted now, False when accepted before;
    not accepting stops the command with nothing signed."""
    from hmi.auth.signatures import ACCOUNTABILITY_STATEMENT
    from hmi.commands.errors import CommandError
    from hmi.commands.users import ask

    if auth.signatures.statement_accepted(user_id):
        return False
    print(ACCOUNTABILITY_STATEMENT)
    answer = ask("Type 'I agree' to accept this statement: ")
    if answer.strip().lower() != "i agree":
        raise CommandError("the statement was not accepted; nothing was signed", 1)
    return True
