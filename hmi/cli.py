"""The ``hmi`` command: one entry point, one sub-command per job, every one taking ``--data``.

Sub-commands live in ``hmi/commands/``; each module registers its parser and handlers. Errors
the user can fix are printed as one clear sentence (never a traceback) with exit status 2 for
bad input or configuration and 1 for a failed operation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hmi import __version__
from hmi.commands import COMMAND_MODULES, CommandError, load_command_module


def _parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="site data directory (default: $HMI_DATA, then the platform data directory)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hmi",
        description="Line HMI: operator terminal, site set-up and audit trail tools.",
    )
    parser.add_argument("--version", action="version", version=f"hmi {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parent = _parent()
    for name in COMMAND_MODULES:
        load_command_module(name).register(sub, parent)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a bad argument (argparse printed why) or --help
        return exc.code if isinstance(exc.code, int) else 2
    from hmi.commands.arguments import check_arguments
    from hmi.commands.errors import run_handler

    problem = check_arguments(args)
    if problem is not None:
        print(f"hmi: {problem}", file=sys.stderr)
        return 2

    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return run_handler(handler, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

__all__ = ["CommandError", "build_parser", "main"]
