"""Terminal HMI for pharmaceutical line operators.

The package is importable without side effects: nothing opens a database, a socket or reads
configuration at import time (see ``hmi.app.make_app`` and ``hmi.cli``).
"""

__version__ = "0.1.0"
