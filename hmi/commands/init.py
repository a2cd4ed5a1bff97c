"""``hmi init``: create a site data directory and its first administrator.

Interactive on a terminal (name, ID, password with the policy applied, authenticator enrolment
with a QR code); scriptable with flags for automation. Without a terminal and without
``--admin-id`` only the site is created, and running ``hmi init`` again on that site creates the
administrator.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmi.commands.errors import CommandError, data_dir

if TYPE_CHECKING:
    from hmi.auth.services import AuthServices
    from hmi.site import Site

PASSWORD_ENV = "HMI_ADMIN_PASSWORD"  # noqa: S105 (the variable's name)
TOTP_CODE_ENV = "HMI_ADMIN_TOTP_CODE"
TOTP_ATTEMPTS = 5


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "init",
        parents=[parent],
        help="create a new site: config, keys, database, first audit events, first administrator",
        description=(
            "Create a site data directory and its first administrator. Refuses to touch a site"
            " that already has accounts. On a terminal it asks for the administrator's details;"
            " for automation pass --admin-id with the flags below."
        ),
    )
    parser.add_argument("--terminal-id", default="KIOSK-01", help="this terminal's ID")
    parser.add_argument("--site-name", default="Site", help="site name printed on records")
    parser.add_argument("--line-name", default="Line 1", help="line name printed on records")
    admin = parser.add_argument_group("first administrator (automation)")
    admin.add_argument(
        "--no-admin",
        action="store_true",
        help="create the site only (run 'hmi init' again later for the admin)",
    )
    admin.add_argument("--admin-id", metavar="ID", help="user ID of the first administrator")
    admin.add_argument("--admin-name", metavar="NAME", help="full printed name")
    admin.add_argument(
        "--admin-password-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the password (or set ${PASSWORD_ENV})",
    )
    admin.add_argument(
        "--admin-identity-verified-by",
        metavar="WHO",
        help="who verified the administrator's identity",
    )
    admin.add_argument(
        "--admin-identity-method", metavar="HOW", help="how the identity was verified"
    )
    admin.add_argument(
        "--admin-totp-secret-file",
        type=Path,
        metavar="FILE",
        help="base32 TOTP secret (>= 160 bits) provisioned to the admin's device",
    )
    admin.add_argument(
        "--admin-totp-code",
        metavar="CODE",
        help=f"current code from that device (or set ${TOTP_CODE_ENV})",
    )
    parser.set_defaults(handler=run)


@dataclass
class _AdminInput:
    user_id: str
    full_name: str
    password: str
    verified_by: str
    method: str
    totp_secret: str
    totp_code: str


def _scripted_input(args: argparse.Namespace) -> _AdminInput:
    """Collect and check the flags before anything is created."""
    from hmi.auth.accounts import normalise_full_name, normalise_user_id
    from hmi.auth.errors import InvalidUserInput, TotpError
    from hmi.auth.passwords import PasswordPolicy
    from hmi.auth.totp import normalise_secret
    from hmi.config import PasswordSettings

    missing = [
        flag
        for flag, value in (
            ("--admin-name", args.admin_name),
            ("--admin-totp-secret-file", args.admin_totp_secret_file),
        )
        if not value
    ]
    if missing:
        raise CommandError(f"--admin-id also needs {', '.join(missing)}", 2)
    if args.admin_password_file is not None:
        try:
            password = args.admin_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {args.admin_password_file}: {exc}", 2) from None
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    else:
        raise CommandError(f"give the password with --admin-password-file or ${PASSWORD_ENV}", 2)
    code = args.admin_totp_code or os.environ.get(TOTP_CODE_ENV)
    if not code:
        raise CommandError(
            f"give the current TOTP code with --admin-totp-code or ${TOTP_CODE_ENV}", 2
        )
    try:
        user_id = normalise_user_id(args.admin_id)
        full_name = normalise_full_name(args.admin_name)
        secret = normalise_secret(args.admin_totp_secret_file.read_text(encoding="utf-8"))
    except (InvalidUserInput, TotpError) as exc:
        raise CommandError(str(exc), 2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {args.admin_totp_secret_file}: {exc}", 2) from None
    policy = PasswordPolicy(
        PasswordSettings(), context=(args.site_name, args.line_name, args.terminal_id)
    )
    problems = policy.problems(password, user_id=user_id, full_name=full_name, with_totp=True)
    if problems:
        raise CommandError("administrator password not accepted: " + "; ".join(problems), 2)
    return _AdminInput(
        user_id=user_id,
        full_name=full_name,
        password=password,
        verified_by=args.admin_identity_verified_by or f"{getpass.getuser()} (installer)",
        method=args.admin_identity_method or "identity confirmed by the installer at site set-up",
        totp_secret=secret,
        totp_code=code,
    )


def run(args: argparse.Namespace) -> int:
    from hmi.site import SiteError, init_site, site_exists

    target = data_dir(args)
    scripted = args.admin_id is not None and not args.no_admin
    admin_input = _scripted_input(args) if scripted else None
    interactive = (
        admin_input is None and not args.no_admin and sys.stdin.isatty() and sys.stdout.isatty()
    )
    if site_exists(target):
        if admin_input is None and not interactive:
            raise SiteError(
                f"a site already exists in {target}; refusing to overwrite it (if it has no"
                " administrator yet, run 'hmi init' on it in a terminal or with --admin-id)"
            )
        site, auth = _open_existing(args)
        print(f"The site in {target} has no administrator yet; creating the first one.")
    else:
        site = init_site(
            target,
            terminal_id=args.terminal_id,
            site_name=args.site_name,
            line_name=args.line_name,
        )
        _print_site(site, target)
        auth = None
    try:
        if admin_input is None and not interactive:
            why = "--no-admin" if args.no_admin else "not a terminal and no --admin-id given"
            print(
                f"No administrator created ({why}).\n  Run 'hmi init --data {target}' again in a"
                " terminal, or with --admin-id and the other --admin-* options, to create one."
            )
            return 0
        if auth is None:
            from hmi.auth.services import build_auth_services

            auth = build_auth_services(site.settings, site.engine, site.audit, site.clock)
        if admin_input is not None:
            _create_scripted(auth, admin_input, target)
        else:
            _create_interactively(auth, site)
        return 0
    finally:
        site.close()


def _open_existing(args: argparse.Namespace) -> tuple[Site, AuthServices]:
    from hmi.commands.users import open_auth
    from hmi.site import SiteError

    site, auth = open_auth(args)
    if auth.users.has_users():
        site.close()
        raise SiteError(f"a site already exists in {site.data_dir}; refusing to overwrite it")
    return site, auth


def _print_site(site: Site, target: Path) -> None:
    from hmi.audit.anchors import fingerprint
    from hmi.db import redact_url

    settings = site.settings
    print(f"Created site '{settings.site.site_name}' / '{settings.site.line_name}' in {target}")
    print(f"  terminal:    {settings.site.terminal_id}")
    print(f"  config:      {target / 'hmi.toml'}")
    print(f"  database:    {redact_url(settings.database_url)}")
    print(f"  public key:  {settings.public_key_path} (key id {site.signer.key_id})")
    print(f"  witness:     {settings.witness_path}")
    print(f"  fingerprint: SHA-256 {fingerprint(site.signer.public)}")
    print(
        "Publish the public key and this fingerprint outside this computer (the site's"
        " validation documents, and QA's own copy of the key): every later check of this"
        " terminal's records trusts only the published key, with"
        f" 'hmi audit verify --trust-key {settings.public_key_path.name}'. The key's enrolment"
        " is recorded in the audit trail (audit.key.enrolled)."
    )


def _create_scripted(auth: AuthServices, given: _AdminInput, target: Path) -> None:
    from hmi.auth.users import IdentityVerification
    from hmi.commands.users import translate_errors

    try:
        with translate_errors():
            user = auth.users.create_first_admin(
                user_id=given.user_id,
                full_name=given.full_name,
                password=given.password,
                identity=IdentityVerification(given.verified_by, given.method),
                totp_secret=given.totp_secret,
                totp_code=given.totp_code,
                details={"os_user": getpass.getuser(), "mode": "scripted"},
            )
    except CommandError as exc:
        raise CommandError(
            f"{exc}; the site exists without an administrator:"
            f" run 'hmi init --data {target}' again to create it",
            exc.status,
        ) from None
    print(
        f"Created the first administrator {user.user_id} ({user.full_name}) with an authenticator."
    )


def _create_interactively(auth: AuthServices, site: Site) -> None:
    from hmi.auth.accounts import normalise_full_name, normalise_user_id
    from hmi.auth.errors import InvalidUserInput
    from hmi.auth.totp import grouped_secret, new_secret, print_qr, provisioning_uri
    from hmi.auth.users import IdentityVerification
    from hmi.commands.users import ask, ask_secret, translate_errors

    print(
        "\nCreate the first administrator. Administrators manage accounts and configuration;"
        "\nthey can never execute, sign or release production records."
    )
    while True:
        try:
            full_name = normalise_full_name(ask("Full name (as printed in records): "))
            user_id = normalise_user_id(ask("User ID: "))
            break
        except InvalidUserInput as exc:
            print(f"  {exc}")
    while True:
        try:
            identity = IdentityVerification(
                ask("Who verified this person's identity? "),
                ask("How was the identity verified (e.g. ID card checked against HR file)? "),
            ).normalised()
            break
        except InvalidUserInput as exc:
            print(f"  {exc}")
    while True:
        password = ask_secret("Password (8 or more characters; an authenticator is also used): ")
        problems = auth.policy.problems(
            password, user_id=user_id, full_name=full_name, with_totp=True
        )
        if problems:
            print("  not accepted: " + "; ".join(problems))
            continue
        if ask_secret("Repeat it: ") != password:
            print("  the two passwords differ; again")
            continue
        break
    secret = new_secret()
    uri = provisioning_uri(
        secret, user_id=user_id, issuer=f"Line HMI {site.settings.site.site_name}"
    )
    print("\nScan this QR code with the authenticator app, or type the key:")
    print_qr(uri, sys.stdout)
    print(f"Key: {grouped_secret(secret)}\n")
    for attempt in range(1, TOTP_ATTEMPTS + 1):
        code = ask("Code shown by the authenticator: ")
        try:
            with translate_errors():
                user = auth.users.create_first_admin(
                    user_id=user_id,
                    full_name=full_name,
                    password=password,
                    identity=identity,
                    totp_secret=secret,
                    totp_code=code,
                    details={"os_user": getpass.getuser(), "mode": "interactive"},
                )
        except CommandError as exc:
            if attempt == TOTP_ATTEMPTS:
                raise CommandError(
                    f"{exc}; the site exists without an administrator:"
                    f" run 'hmi init --data {site.data_dir}' again",
                    exc.status,
                ) from None
            print(f"  {exc}")
            continue
        print(f"Created the first administrator {user.user_id} ({user.full_name}).")
        return
