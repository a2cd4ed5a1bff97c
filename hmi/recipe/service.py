"""The master recipe lifecycle: import (draft), approve (effective), supersede, retire.

The database copy of a recipe version is the controlled one. Importing stores the file's exact
text, its canonical JSON and both SHA-256 hashes; nothing that runs ever reads the file again,
so editing it afterwards changes nothing until it is imported as a new version and approved.
Every state change is written together with its audit event in one transaction; refusals are
recorded too. Reading a version re-derives its hash from the stored text, so a row altered in
the database is reported, never used.

Statuses: ``draft`` --approve--> ``effective`` --(a newer version approved)--> ``superseded``;
``draft`` or ``effective`` --retire--> ``retired``. At most one version of a recipe is
effective, and only an effective version can run.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, RowMapping, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from hmi.audit.chain import Actor, AuditLog
from hmi.auth.roles import Meaning
from hmi.auth.signatures import RecordRef, Signature, SignatureCheck
from hmi.clock import Clock, to_utc_text
from hmi.db import DatabaseError, describe_db_error, read_only
from hmi.recipe.errors import (
    RecipeError,
    RecipeImportRefused,
    RecipeIntegrityError,
    RecipeInvalid,
    RecipeNotFound,
    RecipeStateError,
)
from hmi.recipe.limits import UNBOUNDED, EquipmentLimits
from hmi.recipe.loader import LoadedRecipe, load_recipe_file, load_recipe_text
from hmi.recipe.model import Recipe
from hmi.recipe.tables import recipe_version

#: The record type e-signatures and audit events use for a recipe version.
RECORD_TYPE = "recipe_version"


class RecipeStatus(StrEnum):
    DRAFT = "draft"
    EFFECTIVE = "effective"
    SUPERSEDED = "superseded"
    RETIRED = "retired"


class ImportOutcome(StrEnum):
    IMPORTED = "imported"
    UNCHANGED = "unchanged"


class FileState(StrEnum):
    """How a recipe file compares with the controlled copy in the database."""

    MATCHES = "matches"
    EQUIVALENT = "equivalent"
    CHANGED = "changed"
    NOT_IMPORTED = "not_imported"
    INVALID = "invalid"


class Authorizer(Protocol):
    """Checks that a session may perform an action and records a refusal
    (:class:`hmi.auth.sessions.SessionService` is one)."""

    def authorize(
        self,
        session: Any,
        action: str,
        *,
        entity: tuple[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Actor: ...


class ApprovalSigner(Protocol):
    """Checks a signer's credentials and records an e-signature over a record, and verifies
    the signatures of a record (:class:`hmi.auth.signatures.SignatureService` is one)."""

    def sign(
        self,
        session: Any,
        record: RecordRef,
        meaning: Meaning | str,
        *,
        password: str,
        user_id: str | None = None,
        totp: str | None = None,
        accept_statement: bool = False,
    ) -> Signature: ...

    def verify(self, record: RecordRef) -> list[SignatureCheck]: ...


@dataclass(frozen=True)
class RecipeVersionInfo:
    """One stored recipe version as listed (no parsing): identity, hashes and lifecycle."""

    recipe_id: str
    version: int
    name: str
    product: str
    status: RecipeStatus
    sha256: str
    content_sha256: str
    source_path: str
    imported_by: str
    imported_at: str
    approved_by: str | None
    approved_at: str | None
    approval_ref: str | None
    superseded_at: str | None
    superseded_by_version: int | None
    retired_by: str | None
    retired_at: str | None
    retire_reason: str | None

    @property
    def entity_id(self) -> str:
        return entity_id(self.recipe_id, self.version)

    @property
    def record(self) -> RecordRef:
        """What an approval signature covers: this version and its SHA-256."""
        return RecordRef(RECORD_TYPE, self.entity_id, self.sha256)


@dataclass(frozen=True)
class StoredRecipe:
    """A stored version with its exact text and the parsed, hash-checked :class:`Recipe`."""

    info: RecipeVersionInfo
    recipe: Recipe
    content: str
    canonical_json: str

    @property
    def runnable(self) -> bool:
        return self.info.status is RecipeStatus.EFFECTIVE


@dataclass(frozen=True)
class ImportResult:
    outcome: ImportOutcome
    info: RecipeVersionInfo
    message: str


@dataclass(frozen=True)
class ApprovalResult:
    info: RecipeVersionInfo
    signature: Signature
    superseded: RecipeVersionInfo | None


@dataclass(frozen=True)
class FileStatus:
    """A file compared with the database: ``state`` plus what a person needs to act on it."""

    path: str
    state: FileState
    recipe_id: str | None = None
    version: int | None = None
    stored_status: RecipeStatus | None = None
    effective_version: int | None = None
    file_sha256: str | None = None
    stored_sha256: str | None = None
    problems: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """One phrase for a listing (``changed, not approved`` is the one to act on)."""
        status = self.stored_status.value if self.stored_status else ""
        if self.state is FileState.MATCHES:
            return f"matches stored version ({status})"
        if self.state is FileState.EQUIVALENT:
            return f"same recipe, comments/layout differ from the stored text ({status})"
        if self.state is FileState.CHANGED:
            return "changed, not approved"
        if self.state is FileState.NOT_IMPORTED:
            return "not imported"
        return "invalid"


def entity_id(recipe_id: str, version: int) -> str:
    """How audit events and signatures name a recipe version: ``PARA500-FB/4``."""
    return f"{recipe_id}/{version}"


_COLUMNS = (
    "recipe_id",
    "version",
    "name",
    "product",
    "status",
    "sha256",
    "content_sha256",
    "source_path",
    "imported_by",
    "imported_at",
    "approved_by",
    "approved_at",
    "approval_ref",
    "superseded_at",
    "superseded_by_version",
    "retired_by",
    "retired_at",
    "retire_reason",
)


def _info(row: RowMapping) -> RecipeVersionInfo:
    values = {name: row[name] for name in _COLUMNS}
    values["status"] = RecipeStatus(row["status"])
    values["version"] = int(row["version"])
    return RecipeVersionInfo(**values)


def _reason(text: str) -> str:
    value = " ".join(unicodedata.normalize("NFKC", text or "").split())
    if not 3 <= len(value) <= 500:
        raise RecipeError("a reason is required: 3 to 500 characters")
    return value


class RecipeService:
    """Import, approve, retire, list, read and compare master recipe versions.

    ``sessions`` checks permissions (and records refusals) for the acting session;
    ``signatures`` captures the QA e-signature an approval needs. Both come from
    :mod:`hmi.auth`; tests may pass stand-ins with the same methods. ``limits`` is the
    equipment files are checked against when they are imported or compared (the site's, see
    :func:`hmi.recipe.limits.limits_from_settings`; None: the product defaults). A stored
    version is re-read without them: they were checked when it was imported.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        sessions: Authorizer,
        signatures: ApprovalSigner,
        limits: EquipmentLimits | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.signatures = signatures
        self.limits = limits

    # -- import -------------------------------------------------------------------------

    def import_file(self, session: Any, path: Path) -> ImportResult:
        """Validate a file and store it as a draft version (or say it is already stored).

        Raises :class:`RecipeInvalid` (nothing is written), :class:`RecipeImportRefused` (the
        ID and version are stored with other content; recorded) or
        :class:`hmi.auth.errors.PermissionDenied` (recorded by the session service).
        """
        return self.import_loaded(
            session, load_recipe_file(path, self.limits), source_path=str(path)
        )

    def import_text(self, session: Any, text: str, source: str) -> ImportResult:
        """Like :meth:`import_file` for a recipe given as text (``source`` names it)."""
        return self.import_loaded(
            session, load_recipe_text(text, source, self.limits), source_path=source
        )

    def import_loaded(
        self, session: Any, loaded: LoadedRecipe, *, source_path: str
    ) -> ImportResult:
        recipe = loaded.recipe
        target = (RECORD_TYPE, entity_id(recipe.id, recipe.version))
        actor = self.sessions.authorize(
            session, "recipe.import", entity=target, details={"source_path": source_path}
        )
        refusal: str | None = None
        with self.audit.transaction() as conn:
            row = self._row(conn, recipe.id, recipe.version)
            if row is not None:
                stored = _info(row)
                if (
                    stored.sha256 == loaded.sha256
                    and stored.content_sha256 == loaded.content_sha256
                ):
                    return ImportResult(
                        ImportOutcome.UNCHANGED,
                        stored,
                        f"{recipe.id} v{recipe.version} is already stored with identical content"
                        f" ({stored.status.value}); nothing was changed",
                    )
                refusal = _conflict_message(stored, loaded)
                self.audit.record(
                    conn,
                    "recipe.import.refused",
                    actor,
                    entity=target,
                    reason=refusal,
                    details={
                        "source_path": source_path,
                        "file_sha256": loaded.sha256,
                        "file_content_sha256": loaded.content_sha256,
                        "stored_sha256": stored.sha256,
                        "stored_content_sha256": stored.content_sha256,
                        "stored_status": stored.status.value,
                    },
                )
            else:
                now = to_utc_text(self.clock.now())
                conn.execute(
                    insert(recipe_version),
                    {
                        "recipe_id": recipe.id,
                        "version": recipe.version,
                        "name": recipe.name,
                        "product": recipe.product,
                        "format": recipe.format,
                        "status": RecipeStatus.DRAFT.value,
                        "content": loaded.text,
                        "content_sha256": loaded.content_sha256,
                        "canonical_json": loaded.canonical_json,
                        "sha256": loaded.sha256,
                        "source_path": source_path,
                        "imported_by": actor.user_id,
                        "imported_at": now,
                    },
                )
                self.audit.record(
                    conn,
                    "recipe.imported",
                    actor,
                    entity=target,
                    field="status",
                    new_value=RecipeStatus.DRAFT.value,
                    details={
                        "recipe_id": recipe.id,
                        "version": recipe.version,
                        "name": recipe.name,
                        "product": recipe.product,
                        "sha256": loaded.sha256,
                        "content_sha256": loaded.content_sha256,
                        "source_path": source_path,
                        "steps": len(recipe.steps),
                        "parameters": sorted(recipe.parameters),
                    },
                )
                created = self._row(conn, recipe.id, recipe.version)
                assert created is not None
                info = _info(created)
        if refusal is not None:
            raise RecipeImportRefused(refusal)
        return ImportResult(
            ImportOutcome.IMPORTED,
            info,
            f"imported {recipe.id} v{recipe.version} as a draft (sha256 {loaded.sha256[:16]}…);"
            " it needs QA approval before it can run",
        )

    # -- approve ------------------------------------------------------------------------

    def approve(
        self,
        session: Any,
        recipe_id: str,
        version: int,
        *,
        password: str,
        user_id: str | None = None,
        totp: str | None = None,
        accept_statement: bool = False,
    ) -> ApprovalResult:
        """QA approves a draft with an e-signature (meaning ``approved``); it becomes effective.

        The approver must not be the user who imported the version (four-eyes principle).

        The session's user signs: ``password`` (and ``user_id``/``totp`` as the signature
        service asks, see ``SignatureService.components_needed``) are checked by the signature
        service, which records the signature over the version's SHA-256. A previously effective
        older version becomes ``superseded`` in the same transaction. Raises
        :class:`RecipeStateError` when the version is not a draft, a newer version is
        effective or the approver imported it (recorded), and whatever the auth services raise
        for permissions and credentials (recorded by them).

        The signature service commits the signature in its own transaction (it checks the
        credentials outside any transaction); the status change follows in a second one that
        re-checks the state. Should that re-check fail (a concurrent change), the refusal is
        recorded with the signature's ID, so a signature without its approval is explained.
        """
        target = (RECORD_TYPE, entity_id(recipe_id, version))
        actor = self.sessions.authorize(session, "recipe.approve", entity=target)
        stored = self.get(recipe_id, version)  # checks the stored hash too
        problem = self._approval_problem(stored.info) or self._equipment_problem(stored)
        if problem is None and actor.user_id == stored.info.imported_by:
            problem = (
                f"{actor.user_id} imported {recipe_id} v{version} and cannot also approve it"
                " (four-eyes principle): another QA user must approve"
            )
        if problem is not None:
            self._refuse("recipe.approve.refused", actor, target, problem, stored.info)
            raise RecipeStateError(problem)
        signature = self.signatures.sign(
            session,
            stored.info.record,
            Meaning.APPROVED,
            password=password,
            user_id=user_id,
            totp=totp,
            accept_statement=accept_statement,
        )
        superseded: RecipeVersionInfo | None = None
        refusal: str | None = None
        with self.audit.transaction() as conn:
            row = self._row(conn, recipe_id, version)
            assert row is not None
            current = _info(row)
            refusal = self._approval_problem(current, conn)
            if refusal is None and current.sha256 != signature.record.sha256:
                refusal = "the stored version changed while it was being signed"
            if refusal is not None:
                self.audit.record(
                    conn,
                    "recipe.approve.refused",
                    actor,
                    entity=target,
                    reason=refusal,
                    details={
                        "signature_id": signature.signature_id,
                        "status": current.status.value,
                    },
                )
            else:
                now = to_utc_text(self.clock.now())
                previous = self._effective_row(conn, recipe_id)
                if previous is not None:
                    old = _info(previous)
                    conn.execute(
                        update(recipe_version)
                        .where(
                            recipe_version.c.recipe_id == recipe_id,
                            recipe_version.c.version == old.version,
                        )
                        .values(
                            status=RecipeStatus.SUPERSEDED.value,
                            superseded_at=now,
                            superseded_by_version=version,
                        )
                    )
                    self.audit.record(
                        conn,
                        "recipe.superseded",
                        actor,
                        entity=(RECORD_TYPE, old.entity_id),
                        field="status",
                        old_value=RecipeStatus.EFFECTIVE.value,
                        new_value=RecipeStatus.SUPERSEDED.value,
                        reason=f"v{version} approved",
                        details={"sha256": old.sha256, "superseded_by_version": version},
                    )
                conn.execute(
                    update(recipe_version)
                    .where(
                        recipe_version.c.recipe_id == recipe_id, recipe_version.c.version == version
                    )
                    .values(
                        status=RecipeStatus.EFFECTIVE.value,
                        approved_by=signature.signer_id,
                        approved_at=now,
                        approval_ref=signature.signature_id,
                    )
                )
                self.audit.record(
                    conn,
                    "recipe.approved",
                    actor,
                    entity=target,
                    field="status",
                    old_value=RecipeStatus.DRAFT.value,
                    new_value=RecipeStatus.EFFECTIVE.value,
                    meaning=Meaning.APPROVED.value,
                    details={
                        "sha256": current.sha256,
                        "signature_id": signature.signature_id,
                        "signer_id": signature.signer_id,
                        "signer_name": signature.signer_name,
                        "supersedes_version": None
                        if previous is None
                        else int(previous["version"]),
                    },
                )
                if previous is not None:
                    superseded_row = self._row(conn, recipe_id, int(previous["version"]))
                    assert superseded_row is not None
                    superseded = _info(superseded_row)
                approved = self._row(conn, recipe_id, version)
                assert approved is not None
                info = _info(approved)
        if refusal is not None:
            raise RecipeStateError(refusal)
        return ApprovalResult(info, signature, superseded)

    def _approval_problem(
        self, info: RecipeVersionInfo, conn: Connection | None = None
    ) -> str | None:
        name = f"{info.recipe_id} v{info.version}"
        if info.status is not RecipeStatus.DRAFT:
            return f"{name} is {info.status.value}; only a draft can be approved"
        if conn is None:
            with read_only(self.engine) as reader:
                effective = self._effective_row(reader, info.recipe_id)
        else:
            effective = self._effective_row(conn, info.recipe_id)
        if effective is not None and int(effective["version"]) > info.version:
            return (
                f"{info.recipe_id} v{effective['version']} is effective and newer than"
                f" v{info.version}; an older version cannot replace it"
            )
        return None

    def _equipment_problem(self, stored: StoredRecipe) -> str | None:
        """The version against this site's equipment as it is now (its tag map may have
        changed since the import): a recipe the PLC cannot run is refused at approval, not
        found out mid-batch."""
        name = f"{stored.info.recipe_id} v{stored.info.version}"
        try:
            load_recipe_text(stored.content, name, self.limits)
        except RecipeInvalid as exc:
            problems = "; ".join(str(p) for p in exc.problems)
            return f"{name} does not fit this site's equipment: {problems}"
        return None

    # -- retire -------------------------------------------------------------------------

    def retire(self, session: Any, recipe_id: str, version: int, reason: str) -> RecipeVersionInfo:
        """Take a draft or effective version out of use for good (it stays readable)."""
        why = _reason(reason)
        target = (RECORD_TYPE, entity_id(recipe_id, version))
        actor = self.sessions.authorize(session, "recipe.retire", entity=target)
        refusal: str | None = None
        with self.audit.transaction() as conn:
            row = self._row(conn, recipe_id, version)
            if row is None:
                raise RecipeNotFound(f"no stored recipe {recipe_id} v{version}")
            current = _info(row)
            if current.status not in (RecipeStatus.DRAFT, RecipeStatus.EFFECTIVE):
                refusal = (
                    f"{recipe_id} v{version} is {current.status.value}; only a draft or an"
                    " effective version can be retired"
                )
                self.audit.record(
                    conn,
                    "recipe.retire.refused",
                    actor,
                    entity=target,
                    reason=refusal,
                    details={"requested_reason": why, "status": current.status.value},
                )
            else:
                now = to_utc_text(self.clock.now())
                conn.execute(
                    update(recipe_version)
                    .where(
                        recipe_version.c.recipe_id == recipe_id, recipe_version.c.version == version
                    )
                    .values(
                        status=RecipeStatus.RETIRED.value,
                        retired_by=actor.user_id,
                        retired_at=now,
                        retire_reason=why,
                    )
                )
                self.audit.record(
                    conn,
                    "recipe.retired",
                    actor,
                    entity=target,
                    field="status",
                    old_value=current.status.value,
                    new_value=RecipeStatus.RETIRED.value,
                    reason=why,
                    details={"sha256": current.sha256},
                )
                retired = self._row(conn, recipe_id, version)
                assert retired is not None
                info = _info(retired)
        if refusal is not None:
            raise RecipeStateError(refusal)
        return info

    # -- reading ------------------------------------------------------------------------

    def list_versions(self, recipe_id: str | None = None) -> list[RecipeVersionInfo]:
        """Every stored version (of one recipe, or all), by recipe ID then version."""
        query = select(recipe_version).order_by(
            recipe_version.c.recipe_id, recipe_version.c.version
        )
        if recipe_id is not None:
            query = query.where(recipe_version.c.recipe_id == recipe_id)
        with self._reading() as conn:
            return [_info(row) for row in conn.execute(query).mappings()]

    def get(self, recipe_id: str, version: int | None = None) -> StoredRecipe:
        """A stored version, parsed from its stored text and checked against its SHA-256.

        Without ``version``: the effective version, or else the highest one. Raises
        :class:`RecipeNotFound` or :class:`RecipeIntegrityError`.
        """
        with self._reading() as conn:
            if version is None:
                row = (
                    self._effective_row(conn, recipe_id)
                    or conn.execute(
                        select(recipe_version)
                        .where(recipe_version.c.recipe_id == recipe_id)
                        .order_by(recipe_version.c.version.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
            else:
                row = self._row(conn, recipe_id, version)
        if row is None:
            which = recipe_id if version is None else f"{recipe_id} v{version}"
            raise RecipeNotFound(f"no stored recipe {which}")
        return _checked(row)

    def effective(self, recipe_id: str) -> StoredRecipe:
        """The version of a recipe that may run now (approval signature verified);
        :class:`RecipeStateError` if there is none."""
        with self._reading() as conn:
            row = self._effective_row(conn, recipe_id)
            known = row is not None or self._any(conn, recipe_id)
        if row is None:
            if not known:
                raise RecipeNotFound(f"no stored recipe {recipe_id}")
            raise RecipeStateError(f"{recipe_id} has no effective (approved) version")
        return self._approved(_checked(row))

    def runnable(self, recipe_id: str, version: int) -> StoredRecipe:
        """The given version if, and only if, it is effective now and its approval signature
        verifies over its content: what a batch may execute."""
        stored = self.get(recipe_id, version)
        if not stored.runnable:
            raise RecipeStateError(
                f"{recipe_id} v{version} is {stored.info.status.value}; only the effective"
                " (approved) version can run"
            )
        return self._approved(stored)

    def _approved(self, stored: StoredRecipe) -> StoredRecipe:
        """Prove that a valid QA ``approved`` signature covers exactly this content (11.70)."""
        info = stored.info
        for check in self.signatures.verify(info.record):
            signature = check.signature
            if (
                check.valid
                and signature.signature_id == info.approval_ref
                and signature.meaning is Meaning.APPROVED
                and signature.signer_id == info.approved_by
            ):
                return stored
        raise RecipeIntegrityError(
            f"{info.recipe_id} v{info.version}: no valid approval signature covers its content"
            f" (sha256 {info.sha256}); it must not run"
        )

    def diff(self, recipe_id: str, v1: int, v2: int, *, semantic: bool = False) -> list[str]:
        """Unified diff of two stored versions' texts (or, ``semantic``, of their canonical
        content, which ignores comments and layout)."""
        old, new = self.get(recipe_id, v1), self.get(recipe_id, v2)
        if semantic:
            before, after = _pretty(old.canonical_json), _pretty(new.canonical_json)
        else:
            before, after = old.content, new.content
        return list(
            difflib.unified_diff(
                before.splitlines(),
                after.splitlines(),
                fromfile=_diff_label(old.info),
                tofile=_diff_label(new.info),
                lineterm="",
            )
        )

    def file_status(self, path: Path) -> FileStatus:
        """Compare a recipe file with the stored version of the same ID and version."""
        try:
            loaded = load_recipe_file(path, self.limits)
        except RecipeInvalid as exc:
            return FileStatus(
                str(path), FileState.INVALID, problems=tuple(str(p) for p in exc.problems)
            )
        recipe = loaded.recipe
        with self._reading() as conn:
            row = self._row(conn, recipe.id, recipe.version)
            effective = self._effective_row(conn, recipe.id)
        common: dict[str, Any] = {
            "recipe_id": recipe.id,
            "version": recipe.version,
            "file_sha256": loaded.sha256,
            "effective_version": None if effective is None else int(effective["version"]),
        }
        if row is None:
            return FileStatus(str(path), FileState.NOT_IMPORTED, **common)
        stored = _info(row)
        if stored.sha256 != loaded.sha256:
            state = FileState.CHANGED
        elif stored.content_sha256 != loaded.content_sha256:
            state = FileState.EQUIVALENT
        else:
            state = FileState.MATCHES
        return FileStatus(
            str(path), state, stored_status=stored.status, stored_sha256=stored.sha256, **common
        )

    # -- helpers ------------------------------------------------------------------------

    def _reading(self) -> AbstractContextManager[Connection]:
        return _reading(self.engine)

    @staticmethod
    def _row(conn: Connection, recipe_id: str, version: int) -> RowMapping | None:
        return (
            conn.execute(
                select(recipe_version).where(
                    recipe_version.c.recipe_id == recipe_id, recipe_version.c.version == version
                )
            )
            .mappings()
            .first()
        )

    @staticmethod
    def _effective_row(conn: Connection, recipe_id: str) -> RowMapping | None:
        return (
            conn.execute(
                select(recipe_version).where(
                    recipe_version.c.recipe_id == recipe_id,
                    recipe_version.c.status == RecipeStatus.EFFECTIVE.value,
                )
            )
            .mappings()
            .first()
        )

    @staticmethod
    def _any(conn: Connection, recipe_id: str) -> bool:
        found = conn.execute(
            select(recipe_version.c.id).where(recipe_version.c.recipe_id == recipe_id).limit(1)
        ).first()
        return found is not None

    def _refuse(
        self,
        action: str,
        actor: Actor,
        target: tuple[str, str],
        reason: str,
        info: RecipeVersionInfo,
    ) -> None:
        self.audit.record_now(
            action, actor, entity=target, reason=reason, details={"status": info.status.value}
        )


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A read-only transaction; driver errors become :class:`DatabaseError`."""
    try:
        with read_only(engine) as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc


def _checked(row: RowMapping) -> StoredRecipe:
    """Parse a stored version and prove it is what was imported (and approved)."""
    info = _info(row)
    name = f"{info.recipe_id} v{info.version}"
    content, canonical_json = str(row["content"]), str(row["canonical_json"])
    if hashlib.sha256(content.encode("utf-8")).hexdigest() != info.content_sha256:
        raise RecipeIntegrityError(f"{name}: the stored text does not match its recorded SHA-256")
    if hashlib.sha256(canonical_json.encode("utf-8")).hexdigest() != info.sha256:
        raise RecipeIntegrityError(
            f"{name}: the stored content does not match its recorded SHA-256"
        )
    try:
        loaded = load_recipe_text(content, f"stored {name}", UNBOUNDED)
    except RecipeInvalid as exc:
        raise RecipeIntegrityError(
            f"{name}: the stored text no longer validates with this software: {exc}"
        ) from None
    if loaded.sha256 != info.sha256 or loaded.canonical_json != canonical_json:
        raise RecipeIntegrityError(
            f"{name}: the stored text no longer produces its recorded SHA-256 with this software"
        )
    if (loaded.recipe.id, loaded.recipe.version) != (info.recipe_id, info.version):
        raise RecipeIntegrityError(f"{name}: the stored text names another recipe or version")
    return StoredRecipe(info, loaded.recipe, content, canonical_json)


def _conflict_message(stored: RecipeVersionInfo, loaded: LoadedRecipe) -> str:
    name = f"{stored.recipe_id} v{stored.version}"
    if stored.sha256 == loaded.sha256:
        return (
            f"{name} is already stored ({stored.status.value}) and this file differs from it only"
            " in comments or layout; the stored text stays the controlled copy. Give the file"
            " a new version number to change the document."
        )
    return (
        f"{name} is already stored ({stored.status.value}) with different content"
        f" (stored sha256 {stored.sha256[:16]}…, file {loaded.sha256[:16]}…); a stored version"
        " never changes: give the file a new version number"
    )


def _diff_label(info: RecipeVersionInfo) -> str:
    return f"{info.recipe_id} v{info.version} ({info.status.value}, sha256 {info.sha256[:12]})"


def _pretty(canonical_json: str) -> str:
    return json.dumps(json.loads(canonical_json), indent=2, sort_keys=True, ensure_ascii=False)


__all__ = [
    "RECORD_TYPE",
    "ApprovalResult",
    "ApprovalSigner",
    "Authorizer",
    "FileState",
    "FileStatus",
    "ImportOutcome",
    "ImportResult",
    "RecipeService",
    "RecipeStatus",
    "RecipeVersionInfo",
    "StoredRecipe",
    "entity_id",
]
