"""Turning known failures into one clear sentence and an exit status."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


class CommandError(Exception):
    """A failure the user can act on; ``status`` 2 for bad input, 1 for a failed operation."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def data_dir(args: argparse.Namespace) -> Path:
    from hmi.config import default_data_dir

    return Path(args.data) if args.data is not None else default_data_dir()


def run_handler(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from hmi.audit.bundle import BundleError
    from hmi.audit.chain import AuditWriteError
    from hmi.audit.keys import KeyFileError
    from hmi.batch.integrity import RecordMismatch
    from hmi.config import ConfigError
    from hmi.db import DatabaseError
    from hmi.site import SiteError

    try:
        return handler(args)
    except ConfigError as exc:
        print(f"hmi: {exc}", file=sys.stderr)
        return 2
    except (SiteError, KeyFileError) as exc:
        print(f"hmi: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"hmi: {exc}", file=sys.stderr)
        return exc.status
    except (DatabaseError, AuditWriteError, BundleError, RecordMismatch) as exc:
        print(f"hmi: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # the last safety net: a sentence, never a traceback
        from hmi.db import describe_db_error

        print(f"hmi: {describe_db_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hmi: interrupted", file=sys.stderr)
        return 130
