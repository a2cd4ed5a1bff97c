"""``hmi users``: account administration by an authenticated administrator.

Credentials are always prompted (from the terminal, or one per line on standard input for
automation), never taken as arguments. Every change takes a reason and is recorded with the
acting administrator; ``hmi users review`` prints the access review for 21 CFR 11.300(b).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hmi.commands.arguments import version
from hmi.commands.errors import CommandError, data_dir

if TYPE_CHECKING:
    from hmi.auth.services import AuthServices
    from hmi.auth.sessions import Session
    from hmi.auth.users import PendingTotp
    from hmi.site import Site

TOTP_ATTEMPTS = 3


# -- prompts (module functions so tests and automation can drive them) -----------------------


def _read_line(prompt: str) -> str:
    print(prompt, end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line:
        raise CommandError(f"no input for '{prompt.strip()}' (standard input ended)", 2)
    return line.rstrip("\r\n")


def ask(prompt: str) -> str:
    """A visible answer: from the terminal, or the next line of standard input."""
    return input(prompt) if sys.stdin.isatty() else _read_line(prompt)


def ask_secret(prompt: str) -> str:
    """A hidden answer (password): never echoed on a terminal, never an argument."""
    return getpass.getpass(prompt) if sys.stdin.isatty() else _read_line(prompt)


def ask_new_password(describe: str) -> str:
    first = ask_secret(f"{describe}: ")
    second = ask_secret("Repeat it: ")
    if first != second:
        raise CommandError("the two passwords differ; nothing was changed", 2)
    return first


# -- parser ---------------------------------------------------------------------------------


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    users = sub.add_parser(
        "users",
        help="manage accounts (as an administrator) and print the access review",
        description=(
            "Account administration. You are asked for an administrator's user ID, password and"
            " authenticator code; every change is recorded with your ID and the reason."
        ),
    )
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        parser = users_sub.add_parser(name, parents=[parent], help=help_text, description=help_text)
        parser.set_defaults(handler=handler)
        return parser

    def reason(parser: Any) -> None:
        parser.add_argument("--reason", help="why (recorded; asked for when missing)")

    add = action("add", "create an account with a temporary password", run_add)
    add.add_argument("user_id", metavar="USER_ID")
    add.add_argument("--name", required=True, help="full printed name (shown in signatures)")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        dest="roles",
        metavar="ROLE",
        help="operator, supervisor, maintenance, qa, admin or viewer (repeatable)",
    )
    add.add_argument(
        "--identity-verified-by",
        required=True,
        metavar="WHO",
        help="who verified the person's identity (21 CFR 11.100(b))",
    )
    add.add_argument(
        "--identity-method",
        required=True,
        metavar="HOW",
        help="how the identity was verified (e.g. 'ID card checked against HR file')",
    )
    add.add_argument(
        "--generate-password",
        action="store_true",
        help="generate the temporary password and print it once",
    )
    add.add_argument(
        "--enroll-totp",
        action="store_true",
        help="enrol the user's authenticator now (the user must be present)",
    )
    reason(add)

    action(
        "list",
        "list every account (disabled ones too); reads only, as the other listing commands do:"
        " no login, nothing recorded",
        run_list,
    )

    show = action("show", "show one account", run_show)
    show.add_argument("user_id", metavar="USER_ID")

    disable = action("disable", "disable an account for good (IDs are never reused)", run_disable)
    disable.add_argument("user_id", metavar="USER_ID")
    reason(disable)

    unlock = action("unlock", "unlock an account locked by failed attempts", run_unlock)
    unlock.add_argument("user_id", metavar="USER_ID")
    reason(unlock)

    reset = action(
        "reset-password", "set a temporary password (changed at next login)", run_reset_password
    )
    reset.add_argument("user_id", metavar="USER_ID")
    reset.add_argument(
        "--generate-password",
        action="store_true",
        help="generate the temporary password and print it once",
    )
    reason(reset)

    enrol = action("enroll-totp", "enrol (or re-enrol) a user's authenticator", run_enroll_totp)
    enrol.add_argument("user_id", metavar="USER_ID")
    reason(enrol)

    revoke = action(
        "revoke-totp", "revoke a user's authenticator at once (lost device)", run_revoke_totp
    )
    revoke.add_argument("user_id", metavar="USER_ID")
    reason(revoke)

    roles = action("set-roles", "replace an account's roles", run_set_roles)
    roles.add_argument("user_id", metavar="USER_ID")
    roles.add_argument("--role", action="append", required=True, dest="roles", metavar="ROLE")
    reason(roles)

    train = action(
        "train",
        "record that a person is trained on a recipe (as a supervisor or QA; 21 CFR 11.10(i))",
        run_train,
    )
    train.add_argument("user_id", metavar="USER_ID")
    train.add_argument("recipe_id", metavar="RECIPE")
    train.add_argument(
        "--version", type=version, default=None, help="one version only (default: all)"
    )
    train.add_argument(
        "--evidence", help="the training: course, document, date (asked when missing)"
    )
    train.add_argument("--withdraw", action="store_true", help="withdraw the training instead")

    review = action("review", "print the access review (21 CFR 11.300(b))", run_review)
    review.add_argument("--json", action="store_true", help="machine-readable output")


# -- shared plumbing ------------------------------------------------------------------------


@dataclass
class _Context:
    site: Site
    auth: AuthServices
    session: Session


def open_auth(args: argparse.Namespace, *, startup: bool = True) -> tuple[Site, AuthServices]:
    """The site and its auth services for a command that records what it does; ``startup``
    False for one that is not a start of the terminal (see :func:`hmi.site.open_site`)."""
    from hmi.auth.services import build_auth_services
    from hmi.site import open_site

    site = open_site(data_dir(args), startup=startup)
    try:
        return site, build_auth_services(site.settings, site.engine, site.audit, site.clock)
    except Exception:
        site.close()
        raise


def login_interactively(auth: AuthServices, *, what: str) -> Session:
    """Ask for an ID, password and (when needed) TOTP code; complete a required password change."""
    from hmi.auth.errors import PasswordChangeRequired

    user_id = ask(f"{what} user ID: ")
    password = ask_secret("Password: ")
    code = ask("Authenticator code: ") if auth.sessions.totp_needed(user_id) else None
    try:
        return auth.sessions.login(user_id, password, code)
    except PasswordChangeRequired as change:
        print(change.reason.message, file=sys.stderr)
        new = ask_new_password("New password")
        return auth.sessions.complete_password_change(change.token, new)


@contextmanager
def admin_context(args: argparse.Namespace) -> Iterator[_Context]:
    """An open site and an administrator's session, logged out and closed afterwards."""
    site, auth = open_auth(args)
    try:
        with translate_errors():
            session = login_interactively(auth, what="Administrator")
        try:
            with translate_errors():
                yield _Context(site, auth, session)
        finally:
            auth.sessions.logout(session)
    finally:
        site.close()


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn the auth package's refusals into one clear sentence and an exit status."""
    from hmi.auth.errors import (
        AuthenticationFailed,
        AuthError,
        InvalidUserInput,
        PasswordRejected,
        SiteKeyError,
    )

    try:
        yield
    except PasswordRejected as exc:
        raise CommandError("password not accepted: " + "; ".join(exc.problems), 2) from None
    except AuthenticationFailed as exc:
        raise CommandError(f"{exc.reason.message} ({exc.reason.value})", 1) from None
    except (InvalidUserInput, SiteKeyError) as exc:
        raise CommandError(str(exc), 2) from None
    except AuthError as exc:
        raise CommandError(str(exc), 1) from None


def _reason(args: argparse.Namespace) -> str:
    if args.reason:
        return str(args.reason)
    return ask("Reason (recorded in the audit trail): ")


def _temporary_password(args: argparse.Namespace) -> str:
    if args.generate_password:
        from hmi.auth.passwords import generate_temporary_password

        password = generate_temporary_password()
        print(f"Temporary password (shown once; the user must change it at login): {password}")
        return password
    return ask_new_password("Temporary password")


def _when(moment: datetime | None) -> str:
    from hmi.clock import to_local_text

    return "-" if moment is None else to_local_text(moment)


def show_enrolment(pending: PendingTotp) -> None:
    """Show the QR code and the key to the person enrolling their authenticator."""
    from hmi.auth.totp import print_qr

    print("Scan this QR code with the authenticator app (or type the key below):")
    if sys.stdout.isatty():
        print_qr(pending.uri, sys.stdout)
    else:
        print("\n".join(pending.qr_lines(dark_background=True)))
    print(f"Key: {pending.key_text}")
    print(f"Account: {pending.user_id}")


def enrol_totp(ctx: _Context, user_id: str, reason: str) -> None:
    from hmi.auth.errors import TotpError

    pending = ctx.auth.users.begin_totp_enrolment(ctx.session, user_id, reason=reason)
    show_enrolment(pending)
    for attempt in range(1, TOTP_ATTEMPTS + 1):
        code = ask("Code shown by the authenticator: ")
        try:
            ctx.auth.users.confirm_totp_enrolment(ctx.session, pending.enrolment_id, code)
        except TotpError as exc:
            if attempt == TOTP_ATTEMPTS:
                raise
            print(f"{exc}", file=sys.stderr)
            continue
        print(f"Authenticator enrolled for {pending.user_id}.")
        return


# -- handlers -------------------------------------------------------------------------------


def run_add(args: argparse.Namespace) -> int:
    from hmi.auth.users import IdentityVerification

    with admin_context(args) as ctx:
        reason = _reason(args)
        password = _temporary_password(args)
        user = ctx.auth.users.create_user(
            ctx.session,
            user_id=args.user_id,
            full_name=args.name,
            roles=args.roles,
            password=password,
            identity=IdentityVerification(args.identity_verified_by, args.identity_method),
            reason=reason,
        )
        roles = ", ".join(r.value for r in user.roles)
        print(f"Created {user.user_id} ({user.full_name}), roles: {roles}")
        if args.enroll_totp:
            enrol_totp(ctx, user.user_id, reason)
        elif user.requires_totp:
            print(
                f"note: {user.user_id} needs an authenticator before the first login:"
                f" hmi users enroll-totp {user.user_id}"
            )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from hmi.auth.accounts import UserStore, typed_id_key
    from hmi.auth.totp import load_site_key
    from hmi.commands.reading import reading_site

    with reading_site(args) as site, translate_errors():
        # Only reads: no administrator login (a login is recorded), as for every listing;
        # access to the list is access to the site's data directory.
        key = typed_id_key(load_site_key(site.settings.site_key_path))
        users = UserStore(site.engine, typed_id_key=key).all()
        now = site.clock.now()
        table = Table(title=f"{len(users)} account(s)", title_justify="left")
        for column in ("user ID", "name", "roles", "status", "TOTP", "last login"):
            table.add_column(column)
        for user in users:
            table.add_row(
                user.user_id,
                escape(user.full_name),
                ", ".join(r.value for r in user.roles),
                user.effective_status(now, site.settings.password.max_age_days),
                "active" if user.totp_active else "-",
                _when(user.last_login_at),
            )
        Console(highlight=False).print(table)
    return 0


def run_show(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        user = ctx.auth.users.get(ctx.session, args.user_id)
        now = ctx.site.clock.now()
        lines = [
            ("user ID", user.user_id),
            ("full name", user.full_name),
            ("roles", ", ".join(r.value for r in user.roles)),
            ("status", user.effective_status(now, ctx.site.settings.password.max_age_days)),
            ("temporary password", "yes" if user.must_change_password else "no"),
            ("password changed", _when(user.password_changed_at)),
            ("failed attempts", str(user.failed_count)),
            ("authenticator", "active" if user.totp_active else "none"),
            ("authenticator last used", _when(user.totp.last_used_at if user.totp else None)),
            ("last login", _when(user.last_login_at)),
            ("created", f"{_when(user.created_at)} by {user.created_by}"),
            ("identity verified by", user.identity_verified_by),
            ("identity verified how", user.identity_method),
            (
                "disabled",
                f"{_when(user.disabled_at)} by {user.disabled_by}" if user.disabled_at else "-",
            ),
        ]
        for label, value in lines:
            print(f"{label + ':':26}{value}")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        user = ctx.auth.users.disable(ctx.session, args.user_id, reason=_reason(args))
        print(f"Disabled {user.user_id}; the ID can never be used again.")
    return 0


def run_unlock(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        user = ctx.auth.users.unlock(ctx.session, args.user_id, reason=_reason(args))
        print(f"Unlocked {user.user_id}.")
    return 0


def run_reset_password(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        reason = _reason(args)
        password = _temporary_password(args)
        user = ctx.auth.users.reset_password(ctx.session, args.user_id, password, reason=reason)
        print(f"Temporary password set for {user.user_id}; it must be changed at the next login.")
    return 0


def run_enroll_totp(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        enrol_totp(ctx, args.user_id, _reason(args))
    return 0


def run_revoke_totp(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        user = ctx.auth.users.revoke_totp(ctx.session, args.user_id, reason=_reason(args))
        print(f"Authenticator of {user.user_id} revoked; their open sessions were ended.")
    return 0


def run_set_roles(args: argparse.Namespace) -> int:
    with admin_context(args) as ctx:
        user = ctx.auth.users.set_roles(ctx.session, args.user_id, args.roles, reason=_reason(args))
        print(f"Roles of {user.user_id}: {', '.join(r.value for r in user.roles)}")
    return 0


def run_review(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hmi.clock import to_utc_text

    with admin_context(args) as ctx:
        rows = ctx.auth.users.access_review(ctx.session)
        settings = ctx.site.settings
        if args.json:
            print(
                json.dumps(
                    {
                        "generated_at": to_utc_text(ctx.site.clock.now()),
                        "generated_by": ctx.session.user_id,
                        "site": settings.site.site_name,
                        "terminal": settings.site.terminal_id,
                        "password_max_age_days": settings.password.max_age_days,
                        "users": [
                            {
                                "user_id": r.user_id,
                                "full_name": r.full_name,
                                "roles": [role.value for role in r.roles],
                                "status": r.status,
                                "locked": r.locked,
                                "last_login_at": to_utc_text(r.last_login_at)
                                if r.last_login_at
                                else None,
                                "totp": r.totp.value,
                                "totp_last_used_at": to_utc_text(r.totp_last_used_at)
                                if r.totp_last_used_at
                                else None,
                                "password_age_days": r.password_age_days,
                                "must_change_password": r.must_change_password,
                                "failed_count": r.failed_count,
                                "created_at": to_utc_text(r.created_at),
                                "created_by": r.created_by,
                                "identity_verified_by": r.identity_verified_by,
                                "identity_method": r.identity_method,
                            }
                            for r in rows
                        ],
                    },
                    indent=2,
                    ensure_ascii=False,
                )
            )
            return 0
        title = (
            f"Access review: {settings.site.site_name}, generated"
            f" {_when(ctx.site.clock.now())} by {ctx.session.user_id}"
        )
        table = Table(title=title, title_justify="left")
        for column in (
            "user ID",
            "name",
            "roles",
            "status",
            "last login",
            "TOTP",
            "TOTP last used",
            "password age (days)",
            "failed",
        ):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r.user_id,
                r.full_name,
                ", ".join(role.value for role in r.roles),
                r.status,
                _when(r.last_login_at),
                r.totp.value,
                _when(r.totp_last_used_at),
                str(r.password_age_days),
                str(r.failed_count),
            )
        Console(highlight=False, width=160).print(table)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from hmi.commands.acting import acting_user

    with acting_user(args, "training.record", what="Supervisor or QA") as acting:
        evidence = args.evidence or ask("Training evidence (course, document, date): ")
        with translate_errors():
            record = acting.auth.training.record(
                acting.session, args.user_id, args.recipe_id, evidence=evidence,
                version=args.version, withdraw=args.withdraw,
            )  # fmt: skip
    scope = "all versions" if record.recipe_version is None else f"version {record.recipe_version}"
    print(
        f"{record.user_id}: {record.status} on {record.recipe_id} ({scope}),"
        f" recorded by {record.trained_by}"
    )
    return 0
