"""PLC connection settings (``[plc]`` in hmi.toml)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class PlcSettings(BaseModel):
    """Where the PLC is and how to reach it securely."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = "opc.tcp://127.0.0.1:4840/blender/"
