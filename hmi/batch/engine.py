"""The batch engine: executes an effective master recipe as a batch, strictly step by step.

All batch state lives in the database and every change is written together with its audit
event in one transaction (``AuditLog.transaction``); PLC commands follow the rule of the house:
the intent is committed first (a ``plc_command`` row and ``batch.plc.command.intent``), then
the gateway is called, then the result is committed (``batch.plc.command.result``) together
with whatever the success changes. A process killed at any point therefore leaves either the
state before or the state after each unit of work, plus at most one command whose outcome is
unknown; :meth:`BatchEngine.recover` reconciles those with the PLC's actual state at start-up.

Refusals (out of order, untrained, held, permission) are recorded before they are raised.
Deviations are opened automatically (values out of tolerance, excursions of monitored
parameters, alarms during a step, overrides, skips, holds, aborts, loss of the PLC) and block
the batch until they have a reason and, where required, a supervisor's co-signature.

The engine is pure service code: the TUI calls it from workers, tests call it directly. Its
parts live in one module each (:mod:`~hmi.batch.steps`, :mod:`~hmi.batch.deviations`,
:mod:`~hmi.batch.control`, :mod:`~hmi.batch.review`, :mod:`~hmi.batch.supervision`) on a
shared :mod:`~hmi.batch.core`.
"""

from __future__ import annotations

from hmi.batch.control import BatchControl
from hmi.batch.core import (
    BATCH_RECORD,
    HOLDABLE_STATES,
    RUNNING_STATES,
    STEP_RECORD,
    Authorizer,
)
from hmi.batch.deviations import DeviationHandling
from hmi.batch.review import QaReview
from hmi.batch.rows import DEVIATION_RECORD
from hmi.batch.supervision import RunSupervision

__all__ = [
    "BATCH_RECORD",
    "DEVIATION_RECORD",
    "HOLDABLE_STATES",
    "RUNNING_STATES",
    "STEP_RECORD",
    "Authorizer",
    "BatchEngine",
]


class BatchEngine(RunSupervision, DeviationHandling, BatchControl, QaReview):
    """Start, execute, hold, resume, abort, review and release batches; recover after a crash.

    Build it with the site's collaborators::

        BatchEngine(engine=..., audit=..., clock=..., sessions=auth.sessions,
                    signatures=auth.signatures, plc=gateway, recipes=recipes,
                    settings=settings.batch, alarms=alarm_service)

    ``plc`` may be ``None`` for read-only use (``hmi batch show``).
    """
