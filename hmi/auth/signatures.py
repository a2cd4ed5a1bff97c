"""Electronic signatures (21 CFR Part 11 Subpart C): sign, co-sign, verify, manifest.

A signature covers a record given as type, ID and the SHA-256 of its canonical content
(:class:`RecordRef`). It is written as a row of ``esignature`` and as an audit event in the same
transaction, so it is chained and signed by the terminal key; the row carries a binding hash of
everything it states. :meth:`SignatureService.verify` reports a signature invalid when the
record's content no longer matches, when the row was altered, or when it was copied to another
record.

Components (11.200(a)(1)): the first signature of a continuous session needs user ID +
password, later ones at least the password; meanings reserved to privileged roles also need a
TOTP code; a co-signature always needs user ID + password + TOTP from a different person.
Before their first signature a user accepts the accountability statement (11.10(j)), recorded
once; the written certification to the agency (11.100(c)) is the site's procedure.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from hmi.audit import canonical
from hmi.audit.chain import Actor, AuditLog, AuditWriteError
from hmi.audit.keys import PublicKey
from hmi.audit.tables import audit_event, audit_key
from hmi.audit.verify import OK, ROW_FIELDS, check_rows
from hmi.auth.accounts import (
    UserRecord,
    UserStatus,
    UserStore,
    normalise_user_id,
)
from hmi.auth.credentials import (
    COMPONENT_PASSWORD,
    COMPONENT_TOTP,
    COMPONENT_USER_ID,
    CredentialVerifier,
    Purpose,
)
from hmi.auth.errors import (
    AuthenticationFailed,
    FailureReason,
    InvalidUserInput,
    PermissionDenied,
    SessionNotActive,
    SignatureRefusal,
    SignatureRefused,
)
from hmi.auth.roles import Meaning, Role, may_sign, meaning_requires_totp, parse_meaning
from hmi.auth.sessions import Session, SessionService
from hmi.auth.tables import auth_signature_statement, esignature
from hmi.clock import Clock, from_utc_text, to_utc_text
from hmi.db import read_only

STATEMENT_VERSION = "1"
ACCOUNTABILITY_STATEMENT = (
    "I understand that my electronic signature in this system is the legally binding equivalent "
    "of my handwritten signature, and that I am accountable and responsible for every action "
    "initiated under it. I will not share my password or authenticator with anyone."
)
STATEMENT_SHA256 = hashlib.sha256(ACCOUNTABILITY_STATEMENT.encode("utf-8")).hexdigest()

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass(frozen=True)
class RecordRef:
    """What is signed: a record's type, ID and the SHA-256 of its canonical content."""

    type: str
    id: str
    sha256: str

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z][a-z0-9_.]{0,63}$", self.type):
            raise ValueError(f"record type must be lower-case words, got {self.type!r}")
        if not _NAME.match(self.id):
            raise ValueError(f"record ID {self.id!r} is not a valid identifier")
        if not _SHA256.match(self.sha256):
            raise ValueError("record sha256 must be 64 lower-case hex digits")

    @classmethod
    def of(cls, record_type: str, record_id: str, content: Any) -> RecordRef:
        """Reference a record by hashing its canonical JSON encoding."""
        digest = hashlib.sha256(canonical.canonical_bytes(content)).hexdigest()
        return cls(record_type, record_id, digest)


@dataclass(frozen=True)
class Signature:
    """A stored electronic signature (what the manifestation and the verifier show)."""

    signature_id: str
    record: RecordRef
    meaning: Meaning
    signer_id: str
    signer_name: str
    signer_role: Role
    signed_at: datetime
    session_id: str | None
    terminal_id: str
    components: tuple[str, ...]
    cosign_of: str | None
    binding_sha256: str
    audit_terminal_id: str
    audit_seq: int

    def binding_fields(self) -> dict[str, Any]:
        return _binding_fields(
            signature_id=self.signature_id,
            record=self.record,
            meaning=self.meaning.value,
            signer_id=self.signer_id,
            signer_name=self.signer_name,
            signer_role=self.signer_role.value,
            signed_at=to_utc_text(self.signed_at),
            session_id=self.session_id,
            terminal_id=self.terminal_id,
            components=self.components,
            cosign_of=self.cosign_of,
        )


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one signature of a record."""

    signature: Signature
    problems: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.problems


def _binding_fields(
    *,
    signature_id: str,
    record: RecordRef,
    meaning: str,
    signer_id: str,
    signer_name: str,
    signer_role: str,
    signed_at: str,
    session_id: str | None,
    terminal_id: str,
    components: tuple[str, ...],
    cosign_of: str | None,
) -> dict[str, Any]:
    return {
        "components": list(components),
        "cosign_of": cosign_of,
        "meaning": meaning,
        "record_id": record.id,
        "record_sha256": record.sha256,
        "record_type": record.type,
        "session_id": session_id,
        "signature_id": signature_id,
        "signed_at": signed_at,
        "signer_id": signer_id,
        "signer_name": signer_name,
        "signer_role": signer_role,
        "terminal_id": terminal_id,
    }


def binding_sha256(fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(
        b"HMI-ESIGNATURE-v1\x00" + canonical.canonical_bytes(dict(fields))
    ).hexdigest()


def manifestation(signature: Signature, *, tz: tzinfo | None = None) -> str:
    """The signature as shown on screens and printed on copies (21 CFR 11.50): printed name,
    user ID, local date and time with UTC offset (and UTC), and the meaning."""
    local = (
        signature.signed_at.astimezone(tz) if tz is not None else signature.signed_at.astimezone()
    )
    offset = local.strftime("%z")
    utc = to_utc_text(signature.signed_at)
    return (
        f"{signature.signer_name} ({signature.signer_id}) - {signature.meaning.label} - "
        f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]} (UTC {utc[:10]} {utc[11:19]})"
    )


def _signature(row: Mapping[str, Any]) -> Signature:
    return Signature(
        signature_id=str(row["signature_id"]),
        record=RecordRef(str(row["record_type"]), str(row["record_id"]), str(row["record_sha256"])),
        meaning=Meaning(str(row["meaning"])),
        signer_id=str(row["signer_id"]),
        signer_name=str(row["signer_name"]),
        signer_role=Role(str(row["signer_role"])),
        signed_at=from_utc_text(str(row["signed_at"])),
        session_id=None if row["session_id"] is None else str(row["session_id"]),
        terminal_id=str(row["terminal_id"]),
        components=tuple(canonical.loads(str(row["components"]))),
        cosign_of=None if row["cosign_of"] is None else str(row["cosign_of"]),
        binding_sha256=str(row["binding_sha256"]),
        audit_terminal_id=str(row["audit_terminal_id"]),
        audit_seq=int(row["audit_seq"]),
    )


class SignatureService:
    """Signing, co-signing, verification and the accountability statement."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        sessions: SessionService,
        credentials: CredentialVerifier,
        store: UserStore,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.credentials = credentials
        self.store = store

    # -- the accountability statement -------------------------------------------------------

    def statement_accepted(self, user_id: str) -> bool:
        with read_only(self.engine) as conn:
            return self._accepted(conn, user_id)

    @staticmethod
    def _accepted(conn: Connection, user_id: str) -> bool:
        found = conn.execute(
            select(auth_signature_statement.c.user_id).where(
                auth_signature_statement.c.user_id == user_id
            )
        )
        return found.first() is not None

    def accept_statement(self, session: Session, *, password: str) -> None:
        """The logged-in user accepts the statement, confirming with their password (once)."""
        self._usable(session, refusal_action="esignature.statement.refused")
        proof = self.credentials.check(
            user_id=session.user_id,
            password=password,
            totp=None,
            purpose=Purpose.STATEMENT,
            actor=session.actor,
            need_totp=False,
            id_entered=False,
        )
        with self.credentials.transaction(
            proof, purpose=Purpose.STATEMENT, actor=session.actor
        ) as conn:
            if not self._accepted(conn, session.user_id):
                self._record_statement(conn, session.actor, session.user_id)
        session.last_activity = self.clock.now()

    def _record_statement(self, conn: Connection, actor: Actor, user_id: str) -> None:
        now = self.clock.now()
        conn.execute(
            insert(auth_signature_statement),
            {
                "user_id": user_id,
                "statement_version": STATEMENT_VERSION,
                "statement_sha256": STATEMENT_SHA256,
                "accepted_at": to_utc_text(now),
                "session_id": actor.session_id,
                "terminal_id": self.audit.terminal_id,
            },
        )
        self.audit.record(
            conn,
            "esignature.statement.accepted",
            actor,
            entity=("user", user_id),
            details={
                "statement": ACCOUNTABILITY_STATEMENT,
                "statement_sha256": STATEMENT_SHA256,
                "statement_version": STATEMENT_VERSION,
            },
        )

    # -- signing ----------------------------------------------------------------------------

    def components_needed(self, session: Session, meaning: Meaning | str) -> tuple[str, ...]:
        """What the signature dialog must ask for (user ID, password, TOTP)."""
        wanted = parse_meaning(meaning)
        needed: tuple[str, ...] = () if session.signing_id_confirmed else (COMPONENT_USER_ID,)
        needed += (COMPONENT_PASSWORD,)
        return needed + ((COMPONENT_TOTP,) if meaning_requires_totp(wanted) else ())

    def sign(
        self,
        session: Session,
        record: RecordRef,
        meaning: Meaning | str,
        *,
        password: str,
        user_id: str | None = None,
        totp: str | None = None,
        accept_statement: bool = False,
    ) -> Signature:
        """Sign ``record`` as the session's user (blocking: hashes the password).

        Raises :class:`SessionNotActive`, :class:`PermissionDenied` (meaning not allowed for the
        active role), :class:`AuthenticationFailed` (components missing or wrong) or
        :class:`SignatureRefused` (statement not accepted); every refusal is recorded.
        """
        wanted = parse_meaning(meaning)
        context = {"record_type": record.type, "record_id": record.id, "meaning": wanted.value}
        self._usable(session, refusal_action="esignature.refused", details=context)
        if not may_sign(session.role, wanted):
            self._refuse(
                session.actor, "esignature.refused", session.user_id, "role_not_permitted", context
            )
            raise PermissionDenied(
                f"sign '{wanted.value}'",
                session.role.value,
                f"the role '{session.role.value}' may not sign with the meaning '{wanted.value}'",
            )
        if not session.signing_id_confirmed and not (user_id or "").strip():
            self._refuse(
                session.actor,
                "esignature.refused",
                session.user_id,
                FailureReason.USER_ID_REQUIRED.value,
                context,
            )
            raise AuthenticationFailed(FailureReason.USER_ID_REQUIRED, user_id=session.user_id)
        accepted = self.statement_accepted(session.user_id)
        if not accepted and not accept_statement:
            self._refuse(
                session.actor,
                "esignature.refused",
                session.user_id,
                SignatureRefusal.STATEMENT_NOT_ACCEPTED.value,
                context,
            )
            raise SignatureRefused(SignatureRefusal.STATEMENT_NOT_ACCEPTED)
        try:
            proof = self.credentials.check(
                user_id=user_id or session.user_id,
                password=password,
                totp=totp,
                purpose=Purpose.SIGN,
                actor=session.actor,
                need_totp=meaning_requires_totp(wanted),
                expect_user=session.user_id,
                id_entered=bool((user_id or "").strip()),
                refuse_password_change=True,
                details=context,
            )
        except AuthenticationFailed as exc:
            if exc.locked_now or exc.reason in {
                FailureReason.ACCOUNT_LOCKED,
                FailureReason.ACCOUNT_DISABLED,
            }:
                self.sessions.end_if_account_closed(session, exc)
            raise
        with self.credentials.transaction(
            proof, purpose=Purpose.SIGN, actor=session.actor, details=context
        ) as conn:
            if not accepted and not self._accepted(conn, session.user_id):
                self._record_statement(conn, session.actor, session.user_id)
            signature = self._write(
                conn,
                record=record,
                meaning=wanted,
                signer=proof.user,
                role=session.role,
                session_id=session.session_id,
                components=proof.components,
                cosign_of=None,
            )
        session.signing_id_confirmed = True
        session.last_activity = self.clock.now()
        return signature

    def cosign(
        self,
        session: Session,
        request: Signature | str,
        *,
        cosigner_id: str,
        password: str,
        totp: str | None,
        meaning: Meaning | str = Meaning.COSIGNED,
        accept_statement: bool = False,
    ) -> Signature:
        """A second person co-signs a signed request at the same kiosk (two-person rule).

        The co-signer gives user ID + password + TOTP, must be a different person from the
        requester and from the session's user, hold a role allowed for ``meaning``, and have an
        active account. The co-signature covers the same record as the request.
        """
        wanted = parse_meaning(meaning)
        request_id = request.signature_id if isinstance(request, Signature) else request
        context: dict[str, Any] = {"request_signature_id": request_id, "meaning": wanted.value}
        self._usable(session, refusal_action="esignature.cosign.refused", details=context)
        found = self._load(request_id)
        if found is None:
            self._refuse(
                session.actor, "esignature.cosign.refused", cosigner_id, "unknown_request", context
            )
            raise SignatureRefused(SignatureRefusal.UNKNOWN_REQUEST)
        context.update(record_type=found.record.type, record_id=found.record.id)
        if not self.check(found, found.record).valid:
            self._refuse(
                session.actor, "esignature.cosign.refused", cosigner_id, "invalid_request", context
            )
            raise SignatureRefused(SignatureRefusal.INVALID_REQUEST)
        try:
            uid = normalise_user_id(cosigner_id)
        except InvalidUserInput:
            uid = None
        if uid is not None and uid in {found.signer_id, session.user_id}:
            self._refuse(session.actor, "esignature.cosign.refused", uid, "same_person", context)
            raise SignatureRefused(SignatureRefusal.SAME_PERSON)
        cosigner = self.store.load(uid) if uid is not None else None
        role = None
        if cosigner is not None and cosigner.status is UserStatus.ACTIVE:
            role = next((r for r in cosigner.roles if may_sign(r, wanted)), None)
            if role is None:
                self._refuse(
                    session.actor,
                    "esignature.cosign.refused",
                    cosigner.user_id,
                    "role_not_permitted",
                    context,
                )
                raise SignatureRefused(SignatureRefusal.ROLE_NOT_PERMITTED)
            if not self.statement_accepted(cosigner.user_id) and not accept_statement:
                self._refuse(
                    session.actor,
                    "esignature.cosign.refused",
                    cosigner.user_id,
                    "statement_not_accepted",
                    context,
                )
                raise SignatureRefused(SignatureRefusal.STATEMENT_NOT_ACCEPTED)
        proof = self.credentials.check(
            user_id=cosigner_id,
            password=password,
            totp=totp,
            purpose=Purpose.COSIGN,
            actor=session.actor,
            need_totp=True,
            refuse_password_change=True,
            details=context,
        )
        if role is None:  # the account changed between the look-up and the check
            raise AuthenticationFailed(FailureReason.ACCOUNT_CHANGED, user_id=proof.user.user_id)
        signer = proof.user
        actor = Actor(signer.user_id, role.value, session.session_id)
        with self.credentials.transaction(
            proof, purpose=Purpose.COSIGN, actor=actor, details=context
        ) as conn:
            if not self._accepted(conn, signer.user_id):
                self._record_statement(conn, actor, signer.user_id)
            signature = self._write(
                conn,
                record=found.record,
                meaning=wanted,
                signer=signer,
                role=role,
                session_id=session.session_id,
                components=proof.components,
                cosign_of=found.signature_id,
                kiosk_user=session.user_id,
            )
        session.last_activity = self.clock.now()
        return signature

    def _usable(
        self, session: Session, *, refusal_action: str, details: Mapping[str, Any] | None = None
    ) -> None:
        try:
            self.sessions.ensure_active(session)
        except SessionNotActive as exc:
            self._refuse(
                session.actor, refusal_action, session.user_id, f"session_{exc.state}", details
            )
            raise

    def _refuse(
        self,
        actor: Actor,
        action: str,
        typed: str,
        failure: str,
        details: Mapping[str, Any] | None,
    ) -> None:
        """Record a refusal about ``typed`` (a user ID as given: see
        :meth:`UserStore.audit_subject`)."""
        self.audit.record_now(
            action,
            actor,
            entity=("user", self.store.audit_subject(typed)),
            details={**dict(details or {}), "failure": failure},
        )

    def _write(
        self,
        conn: Connection,
        *,
        record: RecordRef,
        meaning: Meaning,
        signer: UserRecord,
        role: Role,
        session_id: str | None,
        components: tuple[str, ...],
        cosign_of: str | None,
        kiosk_user: str | None = None,
    ) -> Signature:
        now = self.clock.now()
        signature_id = uuid.uuid4().hex
        fields = _binding_fields(
            signature_id=signature_id,
            record=record,
            meaning=meaning.value,
            signer_id=signer.user_id,
            signer_name=signer.full_name,
            signer_role=role.value,
            signed_at=to_utc_text(now),
            session_id=session_id,
            terminal_id=self.audit.terminal_id,
            components=components,
            cosign_of=cosign_of,
        )
        binding = binding_sha256(fields)
        details = {**fields, "binding_sha256": binding}
        if kiosk_user is not None:
            details["kiosk_session_user"] = kiosk_user
        # The row names the event that records it; written first, it is bound by that event.
        audit_terminal, audit_seq = self.audit.next_position(conn)
        conn.execute(
            insert(esignature),
            {
                "signature_id": signature_id,
                "record_type": record.type,
                "record_id": record.id,
                "record_sha256": record.sha256,
                "meaning": meaning.value,
                "signer_id": signer.user_id,
                "signer_name": signer.full_name,
                "signer_role": role.value,
                "signed_at": to_utc_text(now),
                "session_id": session_id,
                "terminal_id": self.audit.terminal_id,
                "components": canonical.dumps(list(components)),
                "cosign_of": cosign_of,
                "binding_sha256": binding,
                "audit_terminal_id": audit_terminal,
                "audit_seq": audit_seq,
            },
        )
        event = self.audit.record(
            conn,
            "esignature.cosigned" if cosign_of else "esignature.signed",
            Actor(signer.user_id, role.value, session_id),
            entity=(record.type, record.id),
            meaning=meaning.value,
            new_value=record.sha256,
            details=details,
        )
        if (event.terminal_id, event.seq) != (audit_terminal, audit_seq):
            raise AuditWriteError(
                f"the signature's event took {event.terminal_id}:{event.seq}, not the position"
                f" {audit_terminal}:{audit_seq} its row names; nothing was signed"
            )
        return Signature(
            signature_id=signature_id,
            record=record,
            meaning=meaning,
            signer_id=signer.user_id,
            signer_name=signer.full_name,
            signer_role=role,
            signed_at=from_utc_text(to_utc_text(now)),
            session_id=session_id,
            terminal_id=self.audit.terminal_id,
            components=components,
            cosign_of=cosign_of,
            binding_sha256=binding,
            audit_terminal_id=event.terminal_id,
            audit_seq=event.seq,
        )

    # -- reading and verifying --------------------------------------------------------------

    def _load(self, signature_id: str) -> Signature | None:
        with read_only(self.engine) as conn:
            row = (
                conn.execute(select(esignature).where(esignature.c.signature_id == signature_id))
                .mappings()
                .first()
            )
        return None if row is None else _signature(dict(row))

    def signatures_for(self, record_type: str, record_id: str) -> list[Signature]:
        """Every signature stored for a record, oldest first (valid or not: see :meth:`verify`)."""
        with read_only(self.engine) as conn:
            rows = (
                conn.execute(
                    select(esignature)
                    .where(
                        esignature.c.record_type == record_type, esignature.c.record_id == record_id
                    )
                    .order_by(esignature.c.signed_at, esignature.c.signature_id)
                )
                .mappings()
                .all()
            )
        return [_signature(dict(r)) for r in rows]

    def verify(
        self, record: RecordRef, *, trusted: Mapping[str, PublicKey] | None = None
    ) -> list[SignatureCheck]:
        """Check every signature of a record against its current content hash.

        ``trusted`` are the terminal keys to accept (default: the keys registered in the site
        database; ``hmi audit verify`` checks those against the published keys).
        """
        signatures = self.signatures_for(record.type, record.id)
        by_id = {s.signature_id: s for s in signatures}
        checks = []
        for signature in signatures:
            check = self.check(signature, record, trusted=trusted)
            if signature.cosign_of is not None:
                request = by_id.get(signature.cosign_of)
                extra: tuple[str, ...] = ()
                if request is None:
                    extra = ("the co-signed request is not a signature of this record",)
                elif not self.check(request, record, trusted=trusted).valid:
                    extra = ("the co-signed request's signature is not valid",)
                check = SignatureCheck(signature, check.problems + extra)
            checks.append(check)
        return checks

    def check(
        self,
        signature: Signature,
        record: RecordRef,
        *,
        trusted: Mapping[str, PublicKey] | None = None,
    ) -> SignatureCheck:
        """Verify one signature against the record it is presented with."""
        problems: list[str] = []
        if (signature.record.type, signature.record.id) != (record.type, record.id):
            problems.append("the signature belongs to another record")
        if signature.record.sha256 != record.sha256:
            problems.append("the record's content has changed since it was signed")
        computed = binding_sha256(signature.binding_fields())
        if computed != signature.binding_sha256:
            problems.append("the stored signature was altered after signing")
        with read_only(self.engine) as conn:
            event = conn.execute(
                select(*[audit_event.c[name] for name in ROW_FIELDS]).where(
                    audit_event.c.terminal_id == signature.audit_terminal_id,
                    audit_event.c.seq == signature.audit_seq,
                )
            ).first()
            if trusted is None:
                keys = {
                    str(r[0]): bytes.fromhex(str(r[1]))
                    for r in conn.execute(select(audit_key.c.key_id, audit_key.c.public_key))
                }
            else:
                keys = {key_id: key.raw for key_id, key in trusted.items()}
        if event is None:
            problems.append("the audit event recording this signature is missing")
            return SignatureCheck(signature, tuple(problems))
        row = dict(zip(ROW_FIELDS, event, strict=True))
        if check_rows([tuple(event)], keys) != [OK]:
            problems.append("the audit event recording this signature fails its hash or key check")
        try:
            details = canonical.loads(str(row["details"]))
        except ValueError:
            details = {}
        if (
            row["action"] not in {"esignature.signed", "esignature.cosigned"}
            or details.get("signature_id") != signature.signature_id
            or details.get("binding_sha256") != computed
            or (row["entity_type"], row["entity_id"]) != (record.type, record.id)
        ):
            problems.append(
                "the signature does not match the audit event that recorded it"
                " (copied from another record or altered)"
            )
        return SignatureCheck(signature, tuple(dict.fromkeys(problems)))
