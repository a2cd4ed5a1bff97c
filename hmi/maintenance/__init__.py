"""Maintenance: service mode of the equipment (jog, discharge valve, load-cell calibration
check) as a service the TUI, scripts and tests call alike. No Textual here."""

from hmi.maintenance.errors import (
    MaintenanceError,
    NotInServiceMode,
    ServiceModeRefused,
)
from hmi.maintenance.service import ServiceModeService

__all__ = ["MaintenanceError", "NotInServiceMode", "ServiceModeRefused", "ServiceModeService"]
