"""The PLC gateway over OPC UA (asyncua): secure session, tag map, supervision, reconnection.

One :class:`AsyncuaGateway` owns at most one live session at a time. A session is only
*promoted* (state ``CONNECTED``, values delivered) once the tag map has been resolved against
the server, the subscription is live and the PLC heartbeat has been seen changing. A
supervisor task then watches three signals: the transport (socket closed, asyncua's own
probe), the subscription status, and the heartbeat (no change within
``heartbeat_timeout_s``). On any of them the session is dropped, every tag turns ``BAD``, a
``PLC_COMM_LOSS`` alarm is raised, and new sessions are attempted with exponential back-off;
recovery clears the alarm and resynchronises active alarms.

Writes and commands are refused locally (:class:`~hmi.plc.errors.PlcNotConnected`, nothing
sent) whenever there is no promoted session, and a write counts as done only once reading it
back returns the value written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hmi.clock import Clock, SystemClock
from hmi.plc._ua import (
    Client,
    DataChangeEvent,
    OpcEvent,
    SecurityPolicyBasic256Sha256,
    SecurityPolicyNone,
    StatusChangeEvent,
    UaClientState,
    UaError,
    UaStatusCodeError,
    ua,
)
from hmi.plc.certificates import (
    describe_certificate,
    ensure_client_certificate,
    load_trusted_certificate,
)
from hmi.plc.errors import (
    PlcAuthenticationFailed,
    PlcCertificateUntrusted,
    PlcClientCertificateRejected,
    PlcCommandNotConfirmed,
    PlcCommandRejected,
    PlcConfigError,
    PlcConnectionFailed,
    PlcError,
    PlcNotConnected,
    PlcSecurityError,
    PlcValueRejected,
    PlcWriteNotConfirmed,
    PlcWriteRejected,
)
from hmi.plc.settings import MethodSpec, PlcSettings, TagSpec
from hmi.plc.stream import PlcEventStream
from hmi.plc.tagmap import bad, check_arguments, check_write, received, same_value
from hmi.plc.types import (
    COMM_LOSS_ALARM,
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    ServerCertificate,
    TagUpdate,
    TagValue,
)

log = logging.getLogger(__name__)

COMM_LOSS_SEVERITY = 900
SESSION_TIMEOUT_MS = 60_000
TEARDOWN_TIMEOUT_S = 1.0

_CLIENT_CERT_REFUSED = frozenset(
    {
        "BadCertificateUntrusted",
        "BadCertificateInvalid",
        "BadCertificateUriInvalid",
        "BadCertificateUseNotAllowed",
        "BadCertificateTimeInvalid",
        "BadCertificateRevoked",
        "BadSecurityChecksFailed",
    }
)
_AUTH_REFUSED = frozenset(
    {
        "BadUserAccessDenied",
        "BadIdentityTokenRejected",
        "BadIdentityTokenInvalid",
        "BadUserSignatureInvalid",
    }
)
_LOGIC_REFUSALS = frozenset({"BadInvalidState", "BadRequestNotAllowed", "BadOutOfRange"})
"""Statuses a PLC program answers with; only then is ``last_result_tag`` worth reading."""
_CONNECTION_ERRORS = (OSError, ConnectionError, asyncio.TimeoutError)

# OPC UA built-in data type ids (namespace 0) the tag map can use, and common subtypes.
_FLOAT_TYPES = {10, 11}
_INT_TYPES = {2, 3, 4, 5, 6, 7, 8, 9}
_INT_LIMITS = {
    2: (-(2**7), 2**7 - 1),
    3: (0, 2**8 - 1),
    4: (-(2**15), 2**15 - 1),
    5: (0, 2**16 - 1),
    6: (-(2**31), 2**31 - 1),
    7: (0, 2**32 - 1),
    8: (-(2**63), 2**63 - 1),
    9: (0, 2**64 - 1),
}
_TYPE_ALIASES = {288: 7, 289: 7, 290: 11}  # IntegerId, Counter -> UInt32; Duration -> Double
_COMPATIBLE = {
    "float": _FLOAT_TYPES,
    "int": _INT_TYPES,
    "bool": {1},
    "str": {12},
    "str_list": {12},
}
_BASE_EVENT_TYPE = 2041
_OBJECTS_FOLDER = 85


def _status_name(error: BaseException) -> str:
    code = getattr(error, "code", None)
    if code is not None:
        with contextlib.suppress(Exception):
            return str(ua.StatusCode(code).name)
    return type(error).__name__


def _as_utc(moment: object) -> datetime | None:
    if not isinstance(moment, datetime):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _plain(value: object) -> TagValue:
    """An OPC UA value as a plain Python value for callers (lists become tuples)."""
    if isinstance(value, list | tuple):
        return tuple(str(v) for v in value)
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass
class _ResolvedTag:
    node: Any
    type_id: int
    vtype: Any


@dataclass
class _ResolvedMethod:
    object_node: Any
    method_node: Any
    in_types: list[tuple[int, Any]]


@dataclass
class _Session:
    """One live OPC UA session and what was resolved and received on it."""

    client: Any
    tags: dict[str, _ResolvedTag] = field(default_factory=dict)
    methods: dict[str, _ResolvedMethod] = field(default_factory=dict)
    node_tags: dict[Any, list[str]] = field(default_factory=dict)
    alarm_source: Any = None
    alarm_type: Any = None
    subscription: Any = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    loss_reason: str = ""
    promoted: bool = False
    beat_value: object = None
    last_beat: float | None = None
    beating: asyncio.Event = field(default_factory=asyncio.Event)
    pending_tags: dict[str, TagUpdate] = field(default_factory=dict)
    pending_alarms: list[PlcAlarmEvent] = field(default_factory=list)

    def mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.loss_reason = reason
            self.lost.set()


class AsyncuaGateway:
    """:class:`~hmi.plc.gateway.PlcGateway` over OPC UA with asyncua.

    ``base_dir`` resolves the relative file paths of the settings (the site data directory);
    ``clock`` stamps what the gateway itself observes (losses, values without a timestamp).
    """

    def __init__(
        self, settings: PlcSettings, *, base_dir: Path, clock: Clock | None = None
    ) -> None:
        self._settings = settings
        self._base_dir = base_dir
        self._clock: Clock = clock or SystemClock()
        self._state = ConnectionState.DISCONNECTED
        self._reason = "not connected yet"
        self._session: _Session | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._streams: set[PlcEventStream] = set()
        now = self._clock.now()
        self._latest: dict[str, TagUpdate] = {
            name: bad(name, spec, "not connected", now) for name, spec in settings.tags.items()
        }
        self._active_alarms: dict[str, PlcAlarmEvent] = {}
        self._alarm_info: dict[str, tuple[int, str]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._lost_at: float | None = None
        self._client_certificate_checked = False

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def state_reason(self) -> str:
        return self._reason

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    @property
    def secure(self) -> bool:
        return self._settings.secure

    @property
    def security_description(self) -> str:
        s = self._settings
        if not s.secure:
            return "INSECURE: no signing or encryption (allow_insecure = true)"
        user = f", user {s.username}" if s.username else ", anonymous"
        return f"{s.security_policy} {s.security_mode}{user}"

    @property
    def tags(self) -> Mapping[str, TagSpec]:
        return self._settings.tags

    @property
    def methods(self) -> Mapping[str, MethodSpec]:
        return self._settings.methods

    def snapshot(self) -> dict[str, TagUpdate]:
        return dict(self._latest)

    def events(self) -> PlcEventStream:
        stream = PlcEventStream(on_close=self._streams.discard)
        stream.push(self._state_event())
        stream.push_tags(dict(self._latest))
        for alarm in self._active_alarms.values():
            stream.push(alarm)
        self._streams.add(stream)
        return stream

    # ------------------------------------------------------------------ connection

    async def connect(self, *, retry: bool = False) -> None:
        if self._supervisor is not None or self._state is ConnectionState.CONNECTING:
            raise PlcError("the gateway is already connected or connecting; disconnect first")
        self._closing = False
        self._set_state(ConnectionState.CONNECTING, f"connecting to {self.endpoint}")
        try:
            session = await self._open_session()
        except (PlcSecurityError, PlcConfigError) as exc:
            self._set_state(ConnectionState.DISCONNECTED, str(exc))
            raise
        except asyncio.CancelledError:
            self._set_state(ConnectionState.DISCONNECTED, "connection attempt cancelled")
            raise
        except Exception as exc:
            if not isinstance(exc, PlcError):
                log.exception("unexpected failure while connecting to the PLC")
                exc = PlcConnectionFailed(f"connecting to the PLC failed: {exc!r}")
            if not retry:
                self._set_state(ConnectionState.DISCONNECTED, str(exc))
                raise exc from None
            self._lost_at = time.monotonic()
            self._set_state(ConnectionState.LOST, str(exc))
            self._raise_comm_alarm(str(exc))
            self._supervisor = asyncio.create_task(self._supervise(), name="plc-supervisor")
            return
        await self._promote(session, "connected")
        self._supervisor = asyncio.create_task(self._supervise(), name="plc-supervisor")

    async def disconnect(self) -> None:
        self._closing = True
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        session, self._session = self._session, None
        if session is not None:
            await self._teardown(session)
        if self._background:
            await asyncio.wait(list(self._background), timeout=TEARDOWN_TIMEOUT_S * 2)
        now = self._clock.now()
        self._publish_tags(
            {name: bad(name, spec, "disconnected", now) for name, spec in self.tags.items()}
        )
        if COMM_LOSS_ALARM in self._active_alarms:
            self._alarm(
                PlcAlarmEvent(
                    COMM_LOSS_ALARM,
                    False,
                    COMM_LOSS_SEVERITY,
                    "PLC connection monitoring stopped",
                    now,
                    "hmi",
                )
            )
        self._set_state(ConnectionState.DISCONNECTED, "disconnected by the HMI")

    async def fetch_server_certificate(self) -> ServerCertificate:
        client = self._new_client()
        endpoint = await self._discover(client, secure=True)
        if not endpoint.ServerCertificate:
            raise PlcSecurityError("the PLC presents no certificate on that endpoint")
        return describe_certificate(_first_certificate(endpoint.ServerCertificate))

    # ------------------------------------------------------------------ read / write / call

    async def read(self, tag: str) -> TagUpdate:
        spec = self._tag_spec(tag)
        session = self._require_session(f"read {tag}")
        node = session.client.get_node(session.tags[tag].node)
        try:
            data = await node.read_data_value(raise_on_bad_status=False)
        except _CONNECTION_ERRORS as exc:
            raise PlcNotConnected(
                f"reading {tag} failed: no answer from the PLC ({exc!r})"
            ) from None
        except UaStatusCodeError as exc:
            update = bad(tag, spec, f"PLC reports {_status_name(exc)}", self._clock.now())
            raise PlcValueRejected(tag, update.reason, update=update) from None
        update = self._to_update(tag, spec, data)
        if not update.good:
            raise PlcValueRejected(tag, update.reason, update=update)
        return update

    async def write(self, tag: str, value: TagValue) -> TagUpdate:
        spec = self._tag_spec(tag)
        checked = check_write(tag, spec, value)
        session = self._require_session(f"write {tag}")
        resolved = session.tags[tag]
        variant = self._variant(tag, checked, resolved.type_id, resolved.vtype)
        node = session.client.get_node(resolved.node)
        try:
            await node.write_value(ua.DataValue(variant))
        except UaStatusCodeError as exc:
            status = _status_name(exc)
            detail = await self._last_result(session, status)
            raise PlcWriteRejected(tag, checked, status, detail) from None
        except _CONNECTION_ERRORS as exc:
            raise PlcWriteNotConfirmed(tag, checked, f"no answer from the PLC ({exc!r})") from None
        try:
            data = await node.read_data_value(raise_on_bad_status=False)
        except (*_CONNECTION_ERRORS, UaStatusCodeError) as exc:
            raise PlcWriteNotConfirmed(tag, checked, f"read-back failed ({exc!r})") from None
        update = self._to_update(tag, spec, data)
        if not update.good:
            raise PlcWriteNotConfirmed(tag, checked, f"read-back is bad: {update.reason}")
        if not same_value(checked, update.value):
            raise PlcWriteNotConfirmed(
                tag, checked, f"the PLC holds {update.value!r}", actual=update.value
            )
        return update

    async def call(self, method: str, *args: TagValue) -> tuple[TagValue, ...]:
        spec = self._method_spec(method)
        checked = check_arguments(method, spec.args, args)
        session = self._require_session(method)
        resolved = session.methods[method]
        variants = [
            self._variant(f"{method}({arg.name})", value, type_id, vtype)
            for value, (type_id, vtype), arg in zip(
                checked, resolved.in_types, spec.args, strict=True
            )
        ]
        request = ua.CallMethodRequest()
        request.ObjectId = resolved.object_node
        request.MethodId = resolved.method_node
        request.InputArguments = variants
        try:
            results = await session.client.uaclient.call([request])
        except UaStatusCodeError as exc:
            status = _status_name(exc)
            reason = await self._last_result(session, status)
            raise PlcCommandRejected(method, status, reason) from None
        except _CONNECTION_ERRORS as exc:
            raise PlcCommandNotConfirmed(method, f"no answer from the PLC ({exc!r})") from None
        result = results[0]
        if not result.StatusCode.is_good():
            status = str(result.StatusCode.name)
            reason = await self._last_result(session, status)
            raise PlcCommandRejected(method, status, reason)
        return tuple(_plain(v.Value) for v in (result.OutputArguments or []))

    # ------------------------------------------------------------------ session set-up

    def _path(self, configured: str) -> Path:
        path = Path(configured)
        return path if path.is_absolute() else self._base_dir / path

    def _password(self) -> str:
        s = self._settings
        secret = s.password.get_secret_value()
        if secret:
            return secret
        if not s.password_file:
            return ""
        path = self._path(s.password_file)
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PlcSecurityError(f"cannot read the PLC password file {path}: {exc}") from None

    def _new_client(self) -> Any:
        s = self._settings
        client = Client(
            s.endpoint,
            timeout=s.request_timeout_s,
            watchdog_intervall=max(0.5, s.heartbeat_timeout_s),
        )
        client.application_uri = s.application_uri
        client.product_uri = "urn:line-hmi"
        client.name = client.description = "line-hmi"
        client.session_timeout = SESSION_TIMEOUT_MS
        return client

    async def _discover(self, client: Any, *, secure: bool | None = None) -> Any:
        """Ask the PLC for its endpoints (unsecured GetEndpoints, as OPC UA discovery does)."""
        s = self._settings
        secure = s.secure if secure is None else secure
        try:
            async with asyncio.timeout(s.request_timeout_s * 2):
                endpoints = await client.connect_and_get_server_endpoints()
        except (*_CONNECTION_ERRORS, UaError) as exc:
            raise PlcConnectionFailed(f"cannot reach the PLC at {s.endpoint}: {exc!r}") from None
        mode = ua.MessageSecurityMode[s.security_mode if secure else "None_"]
        policy_uri = SecurityPolicyBasic256Sha256.URI if secure else SecurityPolicyNone.URI
        for endpoint in endpoints:
            if endpoint.SecurityMode == mode and endpoint.SecurityPolicyUri == policy_uri:
                return endpoint
        offered = ", ".join(
            f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}" for e in endpoints
        )
        wanted = f"{s.security_policy} {s.security_mode}" if secure else "no security"
        raise PlcSecurityError(f"the PLC offers no endpoint with {wanted} (it offers {offered})")

    async def _configure_security(self, client: Any) -> None:
        s = self._settings
        cert_path = self._path(s.client_certificate)
        key_path = self._path(s.client_private_key)
        if not self._client_certificate_checked:  # loading an RSA key is slow: once is enough
            created = await asyncio.to_thread(
                ensure_client_certificate, cert_path, key_path, s.application_uri
            )
            if created:
                log.warning(
                    "created this terminal's OPC UA certificate %s: the PLC must trust it",
                    cert_path,
                )
            self._client_certificate_checked = True
        trusted = load_trusted_certificate(self._path(s.server_certificate))
        endpoint = await self._discover(client)
        offered = describe_certificate(_first_certificate(endpoint.ServerCertificate))
        if trusted is None:
            raise PlcCertificateUntrusted(
                f"the PLC's certificate is not trusted yet (SHA-256 {offered.sha256}); an "
                "administrator must review it and trust it before the HMI connects",
                offered,
            )
        if trusted.sha256 != offered.sha256:
            raise PlcCertificateUntrusted(
                f"the PLC presented certificate SHA-256 {offered.sha256}, not the trusted one "
                f"({trusted.sha256}); refusing to connect",
                offered,
            )
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(cert_path),
            private_key=str(key_path),
            server_certificate=trusted.der,
            mode=ua.MessageSecurityMode[s.security_mode],
        )

    async def _open_session(self) -> _Session:
        s = self._settings
        client = self._new_client()
        if s.secure:
            await self._configure_security(client)
        else:
            await self._discover(client)
            log.warning("connecting to %s WITHOUT security (allow_insecure = true)", s.endpoint)
        if s.username:
            client.set_user(s.username)
            client.set_password(self._password())
        session = _Session(client)

        async def on_connection_lost(exc: Exception) -> None:
            session.mark_lost(f"connection lost ({exc!r})")

        client.connection_lost_callback = on_connection_lost
        try:
            async with asyncio.timeout(s.request_timeout_s * 2):
                await client.connect()
        except asyncio.CancelledError:
            await _close_client(client)
            raise
        except Exception as exc:
            await _close_client(client)
            raise self._connect_error(exc) from None
        try:
            await self._resolve(session)
            await self._subscribe(session)
            await self._await_heartbeat(session)
        except BaseException:
            await self._teardown(session)
            raise
        return session

    def _connect_error(self, exc: Exception) -> PlcError:
        endpoint = self._settings.endpoint
        if isinstance(exc, UaStatusCodeError):
            status = _status_name(exc)
            if status in _AUTH_REFUSED:
                return PlcAuthenticationFailed(
                    f"the PLC refused user {self._settings.username!r} ({status}): check the "
                    "user name and password"
                )
            if status in _CLIENT_CERT_REFUSED:
                return PlcClientCertificateRejected(
                    f"the PLC does not trust this terminal's certificate ({status}); an "
                    f"administrator must add {self._path(self._settings.client_certificate)} "
                    "to the PLC's trusted certificates"
                )
            return PlcConnectionFailed(f"the PLC at {endpoint} refused the session ({status})")
        if isinstance(exc, UaError):
            return PlcSecurityError(f"no matching endpoint on the PLC at {endpoint}: {exc}")
        if isinstance(exc, _CONNECTION_ERRORS):
            return PlcConnectionFailed(f"cannot reach the PLC at {endpoint}: {exc!r}")
        return PlcConnectionFailed(f"connecting to the PLC at {endpoint} failed: {exc!r}")

    async def _resolve(self, session: _Session) -> None:
        """Find every tag, method and the alarm source on the server; check their types."""
        s = self._settings
        client = session.client
        try:
            namespaces: list[str] = list(await client.get_namespace_array())
        except (*_CONNECTION_ERRORS, UaStatusCodeError) as exc:
            raise PlcConnectionFailed(f"cannot read the PLC's namespaces: {exc!r}") from None
        if s.namespace_uri not in namespaces:
            raise PlcConfigError(f"the PLC has no namespace {s.namespace_uri!r}")
        ns = namespaces.index(s.namespace_uri)
        problems: list[str] = []
        wanted: list[tuple[str, str]] = []  # (key, browse path) from the Objects folder
        direct: dict[str, Any] = {}
        for name, tag in s.tags.items():
            if tag.path is not None:
                wanted.append((f"tag:{name}", tag.path))
            else:
                direct[f"tag:{name}"] = self._parse_node(tag.node or "", namespaces, problems)
        for name, method in s.methods.items():
            if method.path is not None:
                parent = method.path.rsplit("/", 1)[0] if "/" in method.path else ""
                wanted.append((f"method:{name}", method.path))
                wanted.append((f"object:{name}", parent))
                wanted.append((f"args:{name}", f"{method.path}/0:InputArguments"))
            else:
                direct[f"method:{name}"] = self._parse_node(method.node or "", namespaces, problems)
                direct[f"object:{name}"] = self._parse_node(
                    method.object_node or "", namespaces, problems
                )
        wanted.append(("alarm_source", s.alarms.source))
        found = dict(direct)
        found.update(await self._translate(client, _OBJECTS_FOLDER, wanted, ns))
        alarm_type = await self._translate(
            client, _BASE_EVENT_TYPE, [("alarm_type", s.alarms.event_type)], ns
        )
        found.update(alarm_type)
        for key, path in wanted:
            if found.get(key) is None and not key.startswith("args:"):
                what, _, name = key.partition(":")
                problems.append(f"{what} {name or ''} not found at {path!r}".replace("  ", " "))
        if found.get("alarm_type") is None:
            problems.append(f"alarm event type {s.alarms.event_type!r} not found")
        session.alarm_source = found.get("alarm_source")
        session.alarm_type = found.get("alarm_type")
        await self._check_tag_types(session, found, problems)
        await self._check_method_args(session, found, problems)
        if problems:
            raise PlcConfigError("the tag map does not match the PLC: " + "; ".join(problems))

    def _parse_node(self, text: str, namespaces: list[str], problems: list[str]) -> Any:
        try:
            node = ua.NodeId.from_string(text)
        except Exception:
            problems.append(f"{text!r} is not a node ID")
            return None
        uri = getattr(node, "NamespaceUri", None)
        if uri:
            if uri not in namespaces:
                problems.append(f"{text!r}: the PLC has no namespace {uri!r}")
                return None
            return ua.NodeId(node.Identifier, namespaces.index(uri), node.NodeIdType)
        return node

    async def _translate(
        self, client: Any, start: int, paths: list[tuple[str, str]], ns: int
    ) -> dict[str, Any]:
        requests = []
        keys = []
        for key, path in paths:
            if not path:
                continue
            relative = ua.RelativePath()
            for segment in path.split("/"):
                index, name = ns, segment
                head, sep, tail = segment.partition(":")
                if sep and head.isdigit():
                    index, name = int(head), tail
                element = ua.RelativePathElement()
                element.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
                element.IsInverse = False
                element.IncludeSubtypes = True
                element.TargetName = ua.QualifiedName(name, index)
                relative.Elements.append(element)
            browse_path = ua.BrowsePath()
            browse_path.StartingNode = ua.NodeId(start)
            browse_path.RelativePath = relative
            requests.append(browse_path)
            keys.append(key)
        result: dict[str, Any] = {key: ua.NodeId(start) for key, path in paths if not path}
        if not requests:
            return result
        try:
            answers = await client.uaclient.translate_browsepaths_to_nodeids(requests)
        except (*_CONNECTION_ERRORS, UaStatusCodeError) as exc:
            raise PlcConnectionFailed(f"cannot browse the PLC: {exc!r}") from None
        for key, answer in zip(keys, answers, strict=True):
            if answer.StatusCode.is_good() and answer.Targets:
                target = answer.Targets[0].TargetId
                result[key] = ua.NodeId(target.Identifier, target.NamespaceIndex, target.NodeIdType)
            else:
                result[key] = None
        return result

    async def _read_attributes(self, client: Any, items: list[tuple[Any, Any]]) -> list[Any]:
        params = ua.ReadParameters()
        for node, attribute in items:
            rv = ua.ReadValueId()
            rv.NodeId = node
            rv.AttributeId = attribute
            params.NodesToRead.append(rv)
        if not items:
            return []
        try:
            return list(await client.uaclient.read(params))
        except (*_CONNECTION_ERRORS, UaStatusCodeError) as exc:
            raise PlcConnectionFailed(f"cannot read from the PLC: {exc!r}") from None

    async def _check_tag_types(
        self, session: _Session, found: dict[str, Any], problems: list[str]
    ) -> None:
        names = [n for n in self._settings.tags if found.get(f"tag:{n}") is not None]
        items: list[tuple[Any, Any]] = []
        for name in names:
            node = found[f"tag:{name}"]
            items.append((node, ua.AttributeIds.DataType))
            items.append((node, ua.AttributeIds.ValueRank))
        values = await self._read_attributes(session.client, items)
        for i, name in enumerate(names):
            spec = self._settings.tags[name]
            data_type, rank = values[2 * i], values[2 * i + 1]
            if not data_type.StatusCode.is_good() or data_type.Value is None:
                problems.append(f"tag {name}: node is not a variable")
                continue
            type_id = _builtin_type_id(data_type.Value.Value)
            is_array = rank.Value is not None and rank.Value.Value == 1
            if type_id not in _COMPATIBLE[spec.type] or is_array != (spec.type == "str_list"):
                problems.append(
                    f"tag {name}: configured as {spec.type} but the PLC node is "
                    f"{_type_name(type_id)}{'[]' if is_array else ''}"
                )
                continue
            node = found[f"tag:{name}"]
            session.tags[name] = _ResolvedTag(node, type_id, ua.VariantType(type_id))
            session.node_tags.setdefault(node, []).append(name)

    async def _check_method_args(
        self, session: _Session, found: dict[str, Any], problems: list[str]
    ) -> None:
        names = [
            n
            for n in self._settings.methods
            if found.get(f"method:{n}") is not None and found.get(f"object:{n}") is not None
        ]
        arg_nodes = [(n, found.get(f"args:{n}")) for n in names]
        readable = [(n, node) for n, node in arg_nodes if node is not None]
        values = await self._read_attributes(
            session.client, [(node, ua.AttributeIds.Value) for _, node in readable]
        )
        declared: dict[str, list[int]] = {n: [] for n in names}
        for (name, _), value in zip(readable, values, strict=True):
            if value.StatusCode.is_good() and value.Value is not None and value.Value.Value:
                declared[name] = [_builtin_type_id(arg.DataType) for arg in value.Value.Value]
        for name in names:
            spec = self._settings.methods[name]
            types = declared[name]
            if len(types) != len(spec.args):
                problems.append(
                    f"method {name}: configured with {len(spec.args)} argument(s), the PLC "
                    f"declares {len(types)}"
                )
                continue
            bad_args = [
                arg.name
                for arg, type_id in zip(spec.args, types, strict=True)
                if type_id not in _COMPATIBLE[arg.type]
            ]
            if bad_args:
                problems.append(f"method {name}: argument type mismatch ({', '.join(bad_args)})")
                continue
            session.methods[name] = _ResolvedMethod(
                found[f"object:{name}"],
                found[f"method:{name}"],
                [(t, ua.VariantType(t)) for t in types],
            )

    async def _subscribe(self, session: _Session) -> None:
        s = self._settings
        client = session.client
        try:
            subscription = await client.create_subscription(
                s.publishing_interval_ms, None, queue_maxsize=100_000
            )
            session.subscription = subscription
            nodes = [client.get_node(node) for node in session.node_tags]
            results = await subscription.subscribe_data_change(nodes, sampling_interval=0.0)
            source = client.get_node(session.alarm_source)
            await subscription.subscribe_events(source, client.get_node(session.alarm_type))
        except (*_CONNECTION_ERRORS, UaStatusCodeError) as exc:
            raise PlcConnectionFailed(f"cannot subscribe to PLC values: {exc!r}") from None
        failed = [
            str(node.nodeid.to_string())
            for node, result in zip(nodes, results, strict=True)
            if not isinstance(result, int)
        ]
        if failed:
            raise PlcConfigError(f"the PLC refused to monitor {', '.join(failed)}")
        session.tasks.append(asyncio.create_task(self._consume(session), name="plc-consume"))
        session.tasks.append(asyncio.create_task(self._watch_transport(session), name="plc-wire"))

    async def _await_heartbeat(self, session: _Session) -> None:
        s = self._settings
        wait = s.heartbeat_timeout_s + s.publishing_interval_ms / 1000
        lost = asyncio.ensure_future(session.lost.wait())
        beating = asyncio.ensure_future(session.beating.wait())
        try:
            await asyncio.wait({lost, beating}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            beating.cancel()
        if session.lost.is_set():
            raise PlcConnectionFailed(session.loss_reason)
        if not session.beating.is_set():
            raise PlcConnectionFailed(
                f"connected, but the PLC heartbeat did not change within {wait:g} s "
                "(PLC stopped or communication frozen)"
            )

    # ------------------------------------------------------------------ receiving

    async def _consume(self, session: _Session) -> None:
        try:
            async for event in session.subscription:
                if isinstance(event, DataChangeEvent):
                    self._on_data(session, event)
                elif isinstance(event, OpcEvent):
                    self._on_alarm_event(session, event.event)
                elif isinstance(event, StatusChangeEvent):
                    status = event.notification.Status
                    session.mark_lost(f"the PLC ended the subscription ({status.name})")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reading PLC notifications failed")
            session.mark_lost("internal error while reading PLC notifications")

    async def _watch_transport(self, session: _Session) -> None:
        client = session.client
        async with client.subscribe_state() as changes:
            while True:
                if client.state is not UaClientState.CONNECTED:
                    session.mark_lost(f"connection closed ({client.state.value})")
                    return
                await changes.next_change(None)

    def _to_update(self, tag: str, spec: TagSpec, data: Any) -> TagUpdate:
        status = data.StatusCode
        good = status is None or bool(status.is_good())
        name = "Good" if status is None else str(status.name)
        value = data.Value.Value if data.Value is not None else None
        stamp = _as_utc(data.SourceTimestamp) or _as_utc(data.ServerTimestamp) or self._clock.now()
        return received(tag, spec, value, status_good=good, status_name=name, timestamp=stamp)

    def _on_data(self, session: _Session, event: Any) -> None:
        data = event.data.monitored_item.Value
        names = session.node_tags.get(event.node.nodeid, ())
        updates: dict[str, TagUpdate] = {}
        for name in names:
            update = self._to_update(name, self._settings.tags[name], data)
            if name == self._settings.heartbeat_tag and update.good:
                if session.beat_value is not None and update.value != session.beat_value:
                    session.last_beat = time.monotonic()
                    session.beating.set()
                session.beat_value = update.value
            updates[name] = update
        if session.promoted:
            self._publish_tags(updates)
        else:
            session.pending_tags.update(updates)

    def _on_alarm_event(self, session: _Session, event: Any) -> None:
        a = self._settings.alarms
        code = getattr(event, a.code_field, None)
        active = getattr(event, a.active_field, None)
        if not isinstance(code, str) or not code or not isinstance(active, bool):
            log.warning("ignoring a PLC alarm event without %s/%s", a.code_field, a.active_field)
            return
        message = getattr(event, "Message", None)
        text = str(getattr(message, "Text", None) or message or code)
        severity = getattr(event, "Severity", 0)
        alarm = PlcAlarmEvent(
            code,
            active,
            int(severity) if isinstance(severity, int) else 0,
            text,
            _as_utc(getattr(event, "Time", None)) or self._clock.now(),
        )
        if session.promoted:
            self._alarm(alarm)
        else:
            session.pending_alarms.append(alarm)

    # ------------------------------------------------------------------ supervision

    async def _promote(self, session: _Session, reason: str) -> None:
        self._session = session
        session.promoted = True
        if self._lost_at is not None:
            reason = f"connection restored after {time.monotonic() - self._lost_at:.1f} s"
            self._lost_at = None
        if not self.secure:
            reason += " (INSECURE)"
        self._set_state(ConnectionState.CONNECTED, reason)
        pending, session.pending_tags = session.pending_tags, {}
        self._publish_tags(pending)
        for alarm in session.pending_alarms:
            self._alarm(alarm)
        session.pending_alarms.clear()
        await self._resync_alarms(session)
        if COMM_LOSS_ALARM in self._active_alarms:
            self._alarm(
                PlcAlarmEvent(
                    COMM_LOSS_ALARM,
                    False,
                    COMM_LOSS_SEVERITY,
                    "Communication with the PLC restored",
                    self._clock.now(),
                    "hmi",
                )
            )

    async def _resync_alarms(self, session: _Session) -> None:
        """Align active alarms with the PLC's list (events may have been missed meanwhile)."""
        tag = self._settings.alarms.active_list_tag
        if tag is None or tag not in session.tags:
            return
        try:
            data = await session.client.get_node(session.tags[tag].node).read_data_value(
                raise_on_bad_status=False
            )
        except (*_CONNECTION_ERRORS, UaStatusCodeError):
            log.warning("could not read the PLC's active alarm list")
            return
        update = self._to_update(tag, self._settings.tags[tag], data)
        if not update.good or not isinstance(update.value, tuple):
            log.warning("the PLC's active alarm list is unusable: %s", update.reason)
            return
        active = set(update.value)
        now = self._clock.now()
        for code in sorted(active - self._active_alarms.keys()):
            severity, message = self._alarm_info.get(code, (500, f"PLC alarm {code}"))
            self._alarm(PlcAlarmEvent(code, True, severity, message, now))
        for code, known in sorted(self._active_alarms.items()):
            if known.source == "plc" and code not in active:
                self._alarm(
                    PlcAlarmEvent(code, False, known.severity, known.message, now, known.source)
                )

    async def _supervise(self) -> None:
        s = self._settings
        delay = s.reconnect_initial_s
        try:
            while not self._closing:
                session = self._session
                if session is not None:
                    reason = await self._watch(session)
                    self._lose(session, reason)
                    delay = s.reconnect_initial_s
                await asyncio.sleep(delay)
                try:
                    fresh = await self._open_session()
                except PlcError as exc:
                    log.info("PLC reconnect failed: %s", exc)
                    self._set_state(ConnectionState.LOST, str(exc))
                    delay = min(delay * 2, s.reconnect_max_s)
                    continue
                except Exception as exc:  # never let supervision die silently
                    log.exception("PLC reconnect attempt crashed")
                    self._set_state(ConnectionState.LOST, f"reconnect failed: {exc!r}")
                    delay = min(delay * 2, s.reconnect_max_s)
                    continue
                await self._promote(fresh, "connected")
                delay = s.reconnect_initial_s
        except asyncio.CancelledError:
            pass

    async def _watch(self, session: _Session) -> str:
        """Wait until the session is lost; return why (transport, subscription, heartbeat)."""
        timeout = self._settings.heartbeat_timeout_s
        while True:
            last = session.last_beat if session.last_beat is not None else time.monotonic()
            remaining = last + timeout - time.monotonic()
            if remaining <= 0:
                return f"PLC heartbeat frozen for more than {timeout:g} s"
            try:
                async with asyncio.timeout(remaining):  # not wait_for: see AlarmService.run
                    await session.lost.wait()
            except TimeoutError:
                continue
            return session.loss_reason

    def _lose(self, session: _Session, reason: str) -> None:
        if self._session is session:
            self._session = None
        self._lost_at = time.monotonic()
        log.warning("PLC connection lost: %s", reason)
        self._set_state(ConnectionState.LOST, reason)
        now = self._clock.now()
        self._publish_tags(
            {
                name: bad(name, spec, f"no connection to the PLC: {reason}", now)
                for name, spec in self.tags.items()
            }
        )
        self._raise_comm_alarm(reason)
        task = asyncio.create_task(self._teardown(session), name="plc-teardown")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _raise_comm_alarm(self, reason: str) -> None:
        self._alarm(
            PlcAlarmEvent(
                COMM_LOSS_ALARM,
                True,
                COMM_LOSS_SEVERITY,
                f"Communication with the PLC lost: {reason}",
                self._clock.now(),
                "hmi",
            )
        )

    async def _teardown(self, session: _Session) -> None:
        session.mark_lost("closed")
        for task in session.tasks:
            task.cancel()
        for task in session.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await _close_client(session.client)

    # ------------------------------------------------------------------ helpers

    def _tag_spec(self, tag: str) -> TagSpec:
        spec = self._settings.tags.get(tag)
        if spec is None:
            raise PlcConfigError(f"no tag {tag!r} in the tag map")
        return spec

    def _method_spec(self, method: str) -> MethodSpec:
        spec = self._settings.methods.get(method)
        if spec is None:
            raise PlcConfigError(f"no method {method!r} in the tag map")
        return spec

    def _require_session(self, what: str) -> _Session:
        session = self._session
        if session is None or not session.promoted or session.lost.is_set():
            raise PlcNotConnected(
                f"cannot {what}: the PLC is not connected ({self._state.value}: {self._reason})"
            )
        return session

    def _variant(self, what: str, value: TagValue, type_id: int, vtype: Any) -> Any:
        if type_id in _INT_LIMITS and isinstance(value, int):
            low, high = _INT_LIMITS[type_id]
            if not low <= value <= high:
                raise PlcValueRejected(
                    what, f"{value} does not fit the PLC's {_type_name(type_id)}", value
                )
        return ua.Variant(value, vtype)

    async def _last_result(self, session: _Session, status: str) -> str:
        """The PLC's own explanation of a refusal, for refusals its logic makes."""
        tag = self._settings.last_result_tag
        if tag is None or tag not in session.tags or status not in _LOGIC_REFUSALS:
            return ""
        try:
            data = await session.client.get_node(session.tags[tag].node).read_data_value(
                raise_on_bad_status=False
            )
        except (*_CONNECTION_ERRORS, UaStatusCodeError):
            return ""
        value = data.Value.Value if data.Value is not None else None
        return value if isinstance(value, str) else ""

    def _state_event(self) -> ConnectionStateChanged:
        return ConnectionStateChanged(
            self._state, self._reason, self._clock.now(), self.secure, self.endpoint
        )

    def _set_state(self, state: ConnectionState, reason: str) -> None:
        if state is self._state and reason == self._reason:
            return
        self._state, self._reason = state, reason
        event = self._state_event()
        for stream in list(self._streams):
            stream.push(event)

    def _publish_tags(self, updates: dict[str, TagUpdate]) -> None:
        if not updates:
            return
        self._latest.update(updates)
        for stream in list(self._streams):
            stream.push_tags(updates)

    def _alarm(self, alarm: PlcAlarmEvent) -> None:
        known = self._active_alarms.get(alarm.code)
        if alarm.active:
            if known is not None:
                return
            self._active_alarms[alarm.code] = alarm
            self._alarm_info[alarm.code] = (alarm.severity, alarm.message)
        else:
            if known is None:
                return
            del self._active_alarms[alarm.code]
        for stream in list(self._streams):
            stream.push(alarm)


def _first_certificate(der: bytes) -> bytes:
    """Servers may send their certificate followed by its chain: keep the first one."""
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


def _builtin_type_id(data_type: Any) -> int:
    identifier = getattr(data_type, "Identifier", None)
    index = getattr(data_type, "NamespaceIndex", None)
    if index != 0 or not isinstance(identifier, int):
        return -1
    return _TYPE_ALIASES.get(identifier, identifier)


def _type_name(type_id: int) -> str:
    try:
        return str(ua.VariantType(type_id).name)
    except ValueError:
        return "an unsupported type"


async def _close_client(client: Any) -> None:
    """Close a client quickly, whatever state it is in; a dead server must not stall us."""
    try:
        async with asyncio.timeout(TEARDOWN_TIMEOUT_S):
            await client.disconnect()
    except Exception:
        log.debug("closing the OPC UA client did not finish cleanly", exc_info=True)
    with contextlib.suppress(Exception):
        client.disconnect_socket()
