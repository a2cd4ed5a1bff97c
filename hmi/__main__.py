"""Allow ``python -m hmi``."""

from hmi.cli import main

raise SystemExit(main())
