"""asyncua, seen by the type checker as untyped.

asyncua ships inline annotations built on ``NewType`` wrappers (``Int32``, ``Int16``,
``String``...) that make ordinary ints and strs fail ``mypy --strict`` at every call, and several
of its names are not explicitly re-exported. The gateway therefore reaches asyncua only through
these ``Any`` aliases, in one module; everything it hands to the rest of the HMI is typed.
"""

from __future__ import annotations

from typing import Any

import asyncua.client.client as _client
import asyncua.client.ua_client as _ua_client
import asyncua.common.subscription as _subscription
import asyncua.crypto.security_policies as _policies
import asyncua.ua.uaerrors as _uaerrors
from asyncua import ua as _ua

ua: Any = _ua
Client: Any = _client.Client
SecurityPolicyBasic256Sha256: Any = _policies.SecurityPolicyBasic256Sha256
SecurityPolicyNone: Any = _policies.SecurityPolicyNone
DataChangeEvent: Any = _subscription.DataChangeEvent
OpcEvent: Any = _subscription.OpcEvent
StatusChangeEvent: Any = _subscription.StatusChangeEvent
UaStatusCodeError: type[Exception] = _uaerrors.UaStatusCodeError
UaError: type[Exception] = _uaerrors.UaError

UaClientState: Any = _ua_client.UaClientState
