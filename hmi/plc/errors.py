"""Everything that can go wrong between the HMI and the PLC, one class per thing to do about it.

Every message is one sentence an operator or administrator can act on. Callers catch
:class:`PlcError` for "the PLC action did not (certainly) happen" and the subclasses when they
react differently (retry later, ask an administrator to trust a certificate, record a failed
write in the batch record).
"""

from __future__ import annotations

from hmi.plc.types import ServerCertificate, TagUpdate, TagValue


class PlcError(Exception):
    """A PLC operation failed or its outcome is unknown."""


class PlcConfigError(PlcError):
    """The tag map does not match the PLC (unknown tag or method, node not found, wrong type)."""


class PlcNotConnected(PlcError):
    """The PLC is not connected: nothing was sent."""


class PlcConnectionFailed(PlcError):
    """A connection attempt failed (unreachable, timed out, refused, heartbeat frozen)."""


class PlcSecurityError(PlcConnectionFailed):
    """The secure connection could not be set up; retrying will not help until settings change."""


class PlcCertificateUntrusted(PlcSecurityError):
    """The PLC presented a certificate that is not the one trusted in the configuration."""

    def __init__(self, message: str, certificate: ServerCertificate | None) -> None:
        super().__init__(message)
        self.certificate = certificate


class PlcClientCertificateRejected(PlcSecurityError):
    """The PLC does not trust this terminal's certificate (an administrator must add it)."""


class PlcAuthenticationFailed(PlcSecurityError):
    """The PLC refused the user name or password."""


class PlcValueRejected(PlcError):
    """A value failed validation (type, range or OPC UA status) and was not used or sent."""

    def __init__(
        self,
        tag: str,
        reason: str,
        value: object = None,
        update: TagUpdate | None = None,
    ) -> None:
        super().__init__(f"{tag}: {reason}")
        self.tag = tag
        self.reason = reason
        self.value = value
        self.update = update


class PlcWriteRejected(PlcError):
    """The PLC answered the write with a bad status: the value was not taken."""

    def __init__(self, tag: str, value: TagValue, status: str, detail: str = "") -> None:
        suffix = f": {detail}" if detail else ""
        super().__init__(f"the PLC refused {tag} = {value!r} ({status}){suffix}")
        self.tag = tag
        self.value = value
        self.status = status
        self.detail = detail


class PlcWriteNotConfirmed(PlcError):
    """The write was sent but reading it back did not confirm it: treat it as failed."""

    def __init__(
        self, tag: str, value: TagValue, reason: str, actual: TagValue | None = None
    ) -> None:
        super().__init__(f"write of {tag} = {value!r} not confirmed: {reason}")
        self.tag = tag
        self.value = value
        self.reason = reason
        self.actual = actual


class PlcCommandRejected(PlcError):
    """The PLC refused the command (wrong state, interlock, bad argument); nothing happened."""

    def __init__(self, method: str, status: str, reason: str = "") -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"the PLC refused {method} ({status}){detail}")
        self.method = method
        self.status = status
        self.reason = reason


class PlcCommandNotConfirmed(PlcError):
    """The command was sent but no answer came back: it may or may not have happened."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(f"{method}: outcome unknown ({reason})")
        self.method = method
        self.reason = reason
