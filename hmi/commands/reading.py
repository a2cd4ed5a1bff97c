"""The site as the reading commands open it: to observe only, never to write.

``hmi batch list|show``, ``hmi audit show``, ``hmi recipes list|show|diff``, ``hmi users list``
and ``hmi ebr unreviewed`` open the database read-only: no upgrade, no start-up or shutdown
checkpoint, no event; neither the database file nor its WAL is written. When the database
cannot be read (another program holds an exclusive lock past the busy timeout, or SQLite cannot
read a WAL database in a read-only folder), the command says so in one sentence and exits with
status 2.
"""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hmi.commands.errors import CommandError, data_dir

if TYPE_CHECKING:
    from hmi.site import Site


@contextmanager
def reading_site(args: argparse.Namespace) -> Iterator[Site]:
    """The site of ``--data``, opened to observe only; closed afterwards."""
    from sqlalchemy.exc import SQLAlchemyError

    from hmi.db import DatabaseError, describe_read_error
    from hmi.site import open_site

    try:
        site = open_site(data_dir(args), upgrade=False, witness=False)
    except DatabaseError as exc:
        raise CommandError(f"cannot read the site's records: {exc}", 2) from None
    timeout = site.settings.database.busy_timeout_ms
    try:
        yield site
    except (SQLAlchemyError, sqlite3.Error) as exc:
        raise CommandError(
            f"cannot read the site's records: {describe_read_error(exc, busy_timeout_ms=timeout)}",
            2,
        ) from None
    except DatabaseError as exc:
        raise CommandError(f"cannot read the site's records: {exc}", 2) from None
    finally:
        site.close()
