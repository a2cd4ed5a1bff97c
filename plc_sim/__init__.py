"""The bundled PLC simulator: a powder blender behind an OPC UA server (never imports ``hmi``).

Start it with the ``plc-sim`` command, ``python -m plc_sim``, ``async with
SimulatorServer(SimulatorConfig(...))`` or :class:`SimulatorThread` from synchronous code.
The interface it exposes is documented in ``docs/plc-interface.md``.
"""

from plc_sim.interface import NAMESPACE_URI
from plc_sim.model import BlenderModel, CommandRejected, Fault, Mode, PackMLState
from plc_sim.server import (
    SimulatorConfig,
    SimulatorError,
    SimulatorServer,
    SimulatorThread,
    find_free_port,
)

__all__ = [
    "NAMESPACE_URI",
    "BlenderModel",
    "CommandRejected",
    "Fault",
    "Mode",
    "PackMLState",
    "SimulatorConfig",
    "SimulatorError",
    "SimulatorServer",
    "SimulatorThread",
    "find_free_port",
]
