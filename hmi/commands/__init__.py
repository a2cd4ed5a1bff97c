"""Sub-commands of ``hmi``. Each module defines ``register(subparsers, parent)``."""

from __future__ import annotations

import importlib
from types import ModuleType

from hmi.commands.errors import CommandError

#: Modules that contribute sub-commands, in the order ``hmi --help`` lists them.
COMMAND_MODULES = ("demo", "run", "init", "users", "recipes", "batch", "ebr", "audit")


def load_command_module(name: str) -> ModuleType:
    return importlib.import_module(f"hmi.commands.{name}")


__all__ = ["COMMAND_MODULES", "CommandError", "load_command_module"]
