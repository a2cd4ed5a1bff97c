"""``hmi recipes``: validate, import, approve, retire, list, show and compare master recipes.

Changing commands (import, approve, retire) ask for the acting user's credentials the way
``hmi users`` does: prompted on a terminal, or one per line on standard input for automation,
never as arguments. A file is validated before anyone is asked to log in; an invalid file is
reported with every problem (exit status 2) and never reaches the database.

Reading commands (list, show, diff, validate) need access to the site data directory only, as
``hmi audit show`` does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hmi.commands.arguments import version
from hmi.commands.errors import CommandError, data_dir
from hmi.commands.reading import reading_site

if TYPE_CHECKING:
    from hmi.auth.services import AuthServices
    from hmi.recipe.errors import RecipeInvalid
    from hmi.recipe.limits import EquipmentLimits
    from hmi.recipe.loader import LoadedRecipe
    from hmi.recipe.service import RecipeService, RecipeVersionInfo, StoredRecipe
    from hmi.site import Site

DEFAULT_RECIPE_DIR = Path("recipes")


def register(sub: Any, parent: argparse.ArgumentParser) -> None:
    recipes = sub.add_parser(
        "recipes",
        help="import, approve, retire, list, show and compare master recipes",
        description=(
            "Master recipe lifecycle. A file is imported as a draft; QA approves it with an"
            " e-signature and it becomes effective (the previous effective version is"
            " superseded). Only the effective version can run. Format: docs/recipe-format.md."
        ),
    )
    recipes_sub = recipes.add_subparsers(dest="recipes_command", metavar="ACTION", required=True)

    def action(name: str, help_text: str, handler: Any) -> Any:
        parser = recipes_sub.add_parser(
            name, parents=[parent], help=help_text, description=help_text
        )
        parser.set_defaults(handler=handler)
        return parser

    validate = action(
        "validate",
        "check recipe files without touching the database (against the equipment of the site"
        " in --data when there is one, else the product defaults)",
        run_validate,
    )
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")

    imp = action(
        "import",
        "store recipe files as draft versions (as a supervisor or QA; asks for credentials)",
        run_import,
    )
    imp.add_argument("files", nargs="+", type=Path, metavar="FILE")

    approve = action(
        "approve",
        "approve a draft with a QA e-signature; it becomes the effective version",
        run_approve,
    )
    approve.add_argument("recipe_id", metavar="ID")
    approve.add_argument("version", type=version, metavar="VERSION")

    retire = action("retire", "retire a draft or effective version (as QA)", run_retire)
    retire.add_argument("recipe_id", metavar="ID")
    retire.add_argument("version", type=version, metavar="VERSION")
    retire.add_argument("--reason", help="why (recorded; asked for when missing)")

    listing = action("list", "list stored versions; --check compares files with them", run_list)
    listing.add_argument("recipe_id", nargs="?", metavar="ID", help="only this recipe")
    listing.add_argument(
        "--check",
        nargs="*",
        type=Path,
        metavar="PATH",
        default=None,
        help="recipe files or directories to compare with the stored versions"
        " (default: ./recipes); exit status 1 if one is changed or invalid",
    )

    show = action("show", "show a stored version (default: the effective one)", run_show)
    show.add_argument("recipe_id", metavar="ID")
    show.add_argument("version", nargs="?", type=version, metavar="VERSION")
    show.add_argument("--text", action="store_true", help="print the exact stored file text")

    diff = action("diff", "compare two stored versions of a recipe", run_diff)
    diff.add_argument("recipe_id", metavar="ID")
    diff.add_argument("v1", type=version, metavar="V1")
    diff.add_argument("v2", type=version, metavar="V2")
    diff.add_argument(
        "--semantic",
        action="store_true",
        help="compare the canonical content (ignores comments and layout)",
    )


# -- plumbing -------------------------------------------------------------------------------


def print_invalid(exc: RecipeInvalid) -> None:
    print(
        f"hmi: {exc.source} is not a valid recipe ({len(exc.problems)} problem(s)):",
        file=sys.stderr,
    )
    for problem in exc.problems:
        print(f"  - {problem}", file=sys.stderr)


@contextmanager
def translate_errors() -> Iterator[None]:
    """Recipe and auth refusals as one clear sentence and an exit status."""
    from hmi.commands.users import translate_errors as translate_auth_errors
    from hmi.recipe.errors import RecipeError, RecipeInvalid

    try:
        with translate_auth_errors():
            yield
    except RecipeInvalid as exc:
        print_invalid(exc)
        raise CommandError("nothing was stored", 2) from None
    except RecipeError as exc:
        raise CommandError(str(exc), 1) from None


def build_service(site: Site, auth: AuthServices) -> RecipeService:
    from hmi.services import build_services

    return build_services(site, auth=auth).recipes


def site_limits(args: argparse.Namespace) -> EquipmentLimits | None:
    """The equipment of the site in ``--data`` (or ``$HMI_DATA``) when there is one; None
    (the product defaults) when there is no site there. A site whose configuration is
    invalid stops the command (ConfigError)."""
    from hmi.config import CONFIG_FILE_NAME, load_settings
    from hmi.recipe.limits import limits_from_settings

    folder = data_dir(args)
    if not (folder / CONFIG_FILE_NAME).is_file():
        return None
    return limits_from_settings(load_settings(folder))


@contextmanager
def open_service(args: argparse.Namespace) -> Iterator[tuple[Site, AuthServices, RecipeService]]:
    from hmi.commands.users import open_auth

    site, auth = open_auth(args)
    try:
        yield site, auth, build_service(site, auth)
    finally:
        site.close()


@contextmanager
def user_session(auth: AuthServices, what: str) -> Iterator[Any]:
    """Log a user in for one command and out again afterwards."""
    from hmi.commands.users import login_interactively
    from hmi.commands.users import translate_errors as translate_auth_errors

    with translate_auth_errors():
        session = login_interactively(auth, what=what)
    try:
        yield session
    finally:
        auth.sessions.logout(session)


def _load_all(
    files: Sequence[Path], limits: EquipmentLimits | None, *, verbose: bool = False
) -> list[LoadedRecipe]:
    """Validate every file (reporting every problem of every file) before anything else."""
    from hmi.recipe.errors import RecipeInvalid
    from hmi.recipe.loader import load_recipe_file

    loaded, failed = [], 0
    for path in files:
        try:
            item = load_recipe_file(path, limits)
        except RecipeInvalid as exc:
            print_invalid(exc)
            failed += 1
            continue
        loaded.append(item)
        if verbose:
            recipe = item.recipe
            print(
                f"{item.source}: valid: {recipe.id} v{recipe.version} ({recipe.name}),"
                f" {len(recipe.parameters)} parameter(s), {len(recipe.steps)} step(s),"
                f" sha256 {item.sha256}"
            )
    if failed:
        consequence = "" if verbose else "; nothing was stored"
        raise CommandError(f"{failed} of {len(files)} file(s) are not valid{consequence}", 2)
    return loaded


def _when(text: str | None) -> str:
    from hmi.clock import from_utc_text, to_local_text

    return "-" if text is None else to_local_text(from_utc_text(text))


def _status_table(versions: Sequence[RecipeVersionInfo]) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(versions)} stored recipe version(s)", title_justify="left")
    for column in ("recipe", "version", "name", "status", "sha256", "imported", "approved"):
        table.add_column(column, overflow="fold")
    for info in versions:
        approved = f"{info.approved_by} {_when(info.approved_at)}" if info.approved_by else "-"
        table.add_row(
            info.recipe_id,
            str(info.version),
            info.name,
            info.status.value,
            info.sha256[:16],
            f"{info.imported_by} {_when(info.imported_at)}",
            approved,
        )
    return table


# -- handlers -------------------------------------------------------------------------------


def run_validate(args: argparse.Namespace) -> int:
    limits = site_limits(args)
    where = (
        f"the equipment of the site in {data_dir(args)}"
        if limits is not None
        else "the product's default equipment limits (no site in --data)"
    )
    print(f"checked against {where}")
    _load_all(args.files, limits, verbose=True)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from hmi.recipe.errors import RecipeImportRefused

    loaded = _load_all(args.files, site_limits(args))  # every file valid before anyone logs in
    refused = 0
    with (
        open_service(args) as (_site, auth, service),
        translate_errors(),
        user_session(auth, "Supervisor or QA") as session,
    ):
        for item in loaded:
            try:
                result = service.import_loaded(session, item, source_path=item.source)
            except RecipeImportRefused as exc:
                print(f"hmi: {item.source}: refused: {exc}", file=sys.stderr)
                refused += 1
                continue
            print(f"{item.source}: {result.message}")
    if refused:
        raise CommandError(f"{refused} of {len(loaded)} file(s) were refused (recorded)", 1)
    return 0


def run_approve(args: argparse.Namespace) -> int:
    from hmi.auth.roles import Meaning
    from hmi.auth.signatures import manifestation
    from hmi.commands.acting import accept_statement
    from hmi.commands.users import ask, ask_secret

    with open_service(args) as (_site, auth, service), translate_errors():
        stored = service.get(args.recipe_id, args.version)
        info = stored.info
        print(f"Approving {info.recipe_id} v{info.version}: {info.name} ({info.product})")
        print(f"  status now: {info.status.value}; content SHA-256: {info.sha256}")
        print(
            f"  imported by {info.imported_by} at {_when(info.imported_at)} from {info.source_path}"
        )
        with user_session(auth, "QA") as session:
            needed = auth.signatures.components_needed(session, Meaning.APPROVED)
            accept = accept_statement(auth, session.user_id)
            print(
                f"Electronic signature, meaning 'approved', over {info.recipe_id} v{info.version}"
                f" (SHA-256 {info.sha256})."
            )
            user_id = ask("Signature - user ID: ") if "user_id" in needed else None
            password = ask_secret("Signature - password: ")
            totp = (
                ask("Signature - a new authenticator code (not the one used to log in): ")
                if "totp" in needed
                else None
            )
            result = service.approve(
                session,
                info.recipe_id,
                info.version,
                password=password,
                user_id=user_id,
                totp=totp,
                accept_statement=accept,
            )
        print(f"{info.recipe_id} v{info.version} is now effective.")
        print(f"  signed: {manifestation(result.signature)}")
        if result.superseded is not None:
            print(f"  v{result.superseded.version} is superseded.")
    return 0


def run_retire(args: argparse.Namespace) -> int:
    from hmi.commands.users import ask

    with open_service(args) as (_site, auth, service), translate_errors():
        stored = service.get(args.recipe_id, args.version)
        print(
            f"Retiring {stored.info.recipe_id} v{stored.info.version} ({stored.info.status.value})"
        )
        reason = args.reason or ask("Reason (recorded in the audit trail): ")
        with user_session(auth, "QA") as session:
            info = service.retire(session, args.recipe_id, args.version, reason)
        print(f"{info.recipe_id} v{info.version} is retired.")
    return 0


def _recipe_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.glob("*.toml")))
        elif path.exists():
            files.append(path)
        else:
            raise CommandError(f"{path} does not exist", 2)
    return files


def run_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from hmi.recipe.service import FileState

    console = Console(highlight=False)
    with reading_site(args) as site:
        service = _reader(site)
        with translate_errors():
            console.print(_status_table(service.list_versions(args.recipe_id)))
            if args.check is None:
                return 0
            files = _recipe_files(args.check or [DEFAULT_RECIPE_DIR])
            table = Table(title=f"{len(files)} recipe file(s) checked", title_justify="left")
            for column in ("file", "recipe", "version", "state"):
                table.add_column(column, overflow="fold")
            attention = 0
            problems: list[str] = []
            for path in files:
                status = service.file_status(path)
                if status.state in (FileState.CHANGED, FileState.INVALID):
                    attention += 1
                problems.extend(status.problems)
                label = status.label
                if status.state is FileState.NOT_IMPORTED and status.effective_version:
                    label += f" (v{status.effective_version} is effective)"
                if status.state is FileState.CHANGED and status.stored_status is not None:
                    label += f" (stored v{status.version} is {status.stored_status.value})"
                table.add_row(
                    str(path),
                    status.recipe_id or "-",
                    "-" if status.version is None else str(status.version),
                    label,
                )
            console.print(table)
            for line in problems:
                print(f"  - {line}")
    return 1 if attention else 0


def run_show(args: argparse.Namespace) -> int:
    with reading_site(args) as site:
        service = _reader(site)
        with translate_errors():
            stored = service.get(args.recipe_id, args.version)
        if args.text:
            sys.stdout.write(stored.content)
            if not stored.content.endswith("\n"):
                print()
            return 0
        _print_summary(stored)
    return 0


def run_diff(args: argparse.Namespace) -> int:
    with reading_site(args) as site, translate_errors():
        lines = _reader(site).diff(args.recipe_id, args.v1, args.v2, semantic=args.semantic)
    if not lines:
        what = "canonical content" if args.semantic else "texts"
        print(f"{args.recipe_id} v{args.v1} and v{args.v2} have identical {what}")
    for line in lines:
        print(line)
    return 0


class _NoWrites:
    """Stands in for the auth services where a command only reads."""

    def authorize(self, *_args: Any, **_kwargs: Any) -> Any:
        raise CommandError("this command only reads", 2)

    def sign(self, *_args: Any, **_kwargs: Any) -> Any:
        raise CommandError("this command only reads", 2)

    def verify(self, *_args: Any, **_kwargs: Any) -> Any:
        raise CommandError("this command does not verify signatures", 2)


def _reader(site: Site) -> RecipeService:
    from hmi.recipe.limits import limits_from_settings
    from hmi.recipe.service import RecipeService

    return RecipeService(
        engine=site.engine,
        audit=site.audit,
        clock=site.clock,
        sessions=_NoWrites(),
        signatures=_NoWrites(),
        limits=limits_from_settings(site.settings),
    )


def _print_summary(stored: StoredRecipe) -> None:
    info, recipe = stored.info, stored.recipe
    rows = [
        ("recipe", f"{info.recipe_id} v{info.version}"),
        ("name", info.name),
        ("product", info.product),
        ("status", info.status.value),
        ("sha256 (content)", info.sha256),
        ("sha256 (file text)", info.content_sha256),
        ("imported", f"{info.imported_by}, {_when(info.imported_at)}, from {info.source_path}"),
    ]
    if info.approved_by:
        rows.append(
            (
                "approved",
                f"{info.approved_by}, {_when(info.approved_at)}, signature {info.approval_ref}",
            )
        )
    if info.superseded_at:
        rows.append(("superseded", f"{_when(info.superseded_at)} by v{info.superseded_by_version}"))
    if info.retired_by:
        rows.append(
            ("retired", f"{info.retired_by}, {_when(info.retired_at)}: {info.retire_reason}")
        )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if recipe.description.strip():
        print()
        print(recipe.description.strip())
    print()
    print("Parameters:")
    for name, param in recipe.parameters.items():
        tags = ", ".join(
            f"{kind} {tag}"
            for kind, tag in (("writes", param.write_tag), ("monitors", param.monitor_tag))
            if tag
        )
        critical = " CRITICAL" if param.critical else ""
        print(
            f"  {name}: {param.setpoint} {param.unit} ({param.low}..{param.high}){critical}; {tags}"
        )
    print()
    print("Procedure:")
    for number, step in enumerate(recipe.steps, start=1):
        print(f"  {number:>2}. [{step.kind}] {step.id}: {step.title}")
