"""Exceptions of service mode: each one a sentence a technician understands.

Every refusal is recorded in the audit trail before it is raised (``service_mode.refused`` or
``auth.permission.denied``), so a blocked attempt is itself part of the record.
"""

from __future__ import annotations


class MaintenanceError(Exception):
    """Base class: a service-mode operation was refused or failed; the message says why."""


class ServiceModeRefused(MaintenanceError):
    """Service mode cannot be entered now (batch in progress, login without TOTP, bad input)."""


class NotInServiceMode(MaintenanceError):
    """Jog, valve and calibration commands need service mode to be entered first."""
