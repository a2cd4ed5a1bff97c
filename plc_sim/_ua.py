"""asyncua, seen by the type checker as untyped.

asyncua ships inline annotations built on ``NewType`` wrappers (``Int32``, ``Int16``,
``String``...) that make ordinary ints and strs fail ``mypy --strict`` at every call, and several
of its names are not explicitly re-exported. The simulator therefore reaches asyncua only
through these ``Any`` aliases; the simulator's own code stays fully typed.
"""

from __future__ import annotations

from typing import Any

import asyncua.common.utils as _utils
import asyncua.server.server as _server
from asyncua import ua as _ua

ua: Any = _ua
Server: Any = _server.Server
ServiceError: Any = _utils.ServiceError
