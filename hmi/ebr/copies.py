"""Making true copies of a batch record: the electronic bundle, and the PDF printed from it.

Both are recorded in the audit trail (``ebr.exported`` / ``ebr.printed``) with the bundle's
SHA-256, so an inspector's copy can be matched to the moment and the person that made it.

A copy made for a logged-in user (:meth:`BatchRecordCopies.export_for`,
:meth:`BatchRecordCopies.report_for`) is checked against the permission matrix (QA or an
administrator), never overwrites a file, and without a file name goes to the site's
``exports/`` folder under a name of its own (batch number and UTC time of the copy).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmi.audit.chain import Actor, AuditWriteError
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.keys import PublicKey
from hmi.audit.store import chain_heads, heads_details
from hmi.batch.engine import BatchEngine
from hmi.batch.integrity import RecordMismatch
from hmi.clock import to_utc_text
from hmi.ebr.assemble import Assembled, EbrError, assemble
from hmi.ebr.bundle import BatchBundle, read_batch_bundle, write_batch_bundle
from hmi.ebr.pdf import render_pdf

EXPORTS_FOLDER = "exports"
"""Where copies made without a file name go, inside the site data directory."""
BUNDLE_SUFFIX = ".bundle.jsonl"
EXPORT_ACTION = "audit.export"


class CopyRefused(EbrError):
    """The copy would overwrite a file, or cannot be written where it was asked for."""


@dataclass(frozen=True)
class CopyResult:
    bundle: Path
    sha256: str
    pdf: Path | None = None
    pages: int = 0


def _free(path: Path) -> Path:
    if path.exists():
        raise CopyRefused(f"{path} already exists; a copy is never overwritten, choose a new name")
    if path.parent.exists() and not path.parent.is_dir():
        raise CopyRefused(f"{path.parent} is not a folder")
    return path


@contextlib.contextmanager
def _reserved(paths: list[Path]) -> Iterator[None]:
    """Hold the names (an empty file each, created exclusively) while the copy is written, so
    two copies made at the same moment never take the same name; give them back on failure."""
    made: list[Path] = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.open("x").close()
            except FileExistsError:
                raise CopyRefused(
                    f"{path} already exists; a copy is never overwritten, choose a new name"
                ) from None
            made.append(path)
        yield
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()
        raise


class BatchRecordCopies:
    """Export and print batch records of one site (collaborators passed in, nothing global)."""

    def __init__(
        self,
        batches: BatchEngine,
        *,
        site: str,
        line: str,
        witness: WitnessFile | None,
        extra_keys: tuple[PublicKey, ...] = (),
        exports: Path | None = None,
    ) -> None:
        self.batches = batches
        self.site = site
        self.line = line
        self.witness = witness
        self.extra_keys = extra_keys
        self.exports = exports

    @classmethod
    def for_site(cls, site: Any, batches: BatchEngine) -> BatchRecordCopies:
        """The copies of an opened site: its names, witness file and ``exports/`` folder."""
        settings = site.settings
        return cls(
            batches,
            site=settings.site.site_name,
            line=settings.site.line_name,
            witness=WitnessFile(settings.witness_path),
            exports=settings.data_dir / EXPORTS_FOLDER,
        )

    @property
    def audit(self) -> Any:
        return self.batches.audit

    def assemble(self, batch_id: str, *, generated_by: str) -> Assembled:
        """The record as it is to be copied; refused (CopyRefused) if its rows do not match
        their audit trail."""
        try:
            return assemble(
                self.batches,
                batch_id,
                site=self.site,
                line=self.line,
                generated_by=generated_by,
                witness=self.witness,
                extra_keys=self.extra_keys,
            )
        except RecordMismatch as exc:
            raise CopyRefused(str(exc)) from exc

    def export(self, batch_id: str, out: Path, *, actor: Actor, generated_by: str) -> CopyResult:
        """Write the electronic true copy of ``batch_id`` to ``out`` and record it."""
        return self._export(batch_id, out, actor=actor, generated_by=generated_by)[0]

    def _export(
        self, batch_id: str, out: Path, *, actor: Actor, generated_by: str
    ) -> tuple[CopyResult, BatchBundle]:
        """The copy is written beside ``out`` under a hidden name, read back and verified as
        its reader will, and only then given its name: a copy that does not verify is never
        left on disk looking like one. A refusal is recorded."""
        try:
            assembled = self.assemble(batch_id, generated_by=generated_by)
        except CopyRefused as exc:
            self._record_refusal(actor, batch_id, str(exc))
            raise
        created_at = to_utc_text(self.batches.clock.now())
        heads = chain_heads(
            self.batches.engine, self.audit.signer, created_at, sorted(assembled.context.spans)
        )
        partial = out.with_name(f".{out.name}.partial")
        try:
            digest = write_batch_bundle(
                partial,
                assembled,
                signer=self.audit.signer,
                created_at=created_at,
                exported_by={"user": generated_by, "terminal": self.audit.terminal_id},
                heads=heads,
            )
            read = read_batch_bundle(partial, workers=1)
            if not read.ok or read.record is None:
                problems = "; ".join(p.message for p in read.report.problems[:5])
                message = (
                    f"the copy of batch {batch_id} does not verify, so none was made: {problems}"
                )
                self._record_refusal(actor, batch_id, message)
                raise CopyRefused(message)
            os.replace(partial, out)
        finally:
            with contextlib.suppress(OSError):
                partial.unlink()
        self.audit.record_now(
            "ebr.exported",
            actor,
            entity=("batch", assembled.record.header.batch_id),
            details={"file": str(out), "sha256": digest, "events": len(assembled.context.rows),
                     "generated_by": generated_by, "chain_heads": heads_details(heads)},
        )  # fmt: skip
        return CopyResult(out, digest), read

    def _record_refusal(self, actor: Actor, batch_id: str, message: str) -> None:
        with contextlib.suppress(AuditWriteError):
            self.audit.record_now(
                "ebr.export.refused", actor, entity=("batch", batch_id), reason=message[:2000]
            )

    def report(
        self,
        batch_id: str,
        pdf: Path,
        *,
        bundle: Path | None = None,
        actor: Actor,
        generated_by: str,
        page_format: str = "A4",
    ) -> CopyResult:
        """Export the bundle (beside the PDF unless ``bundle`` is given), verify it, and print
        the PDF from what the bundle holds; record the printing with the bundle's hash."""
        target = bundle or pdf.with_suffix(".bundle.jsonl")
        exported, read = self._export(batch_id, target, actor=actor, generated_by=generated_by)
        assert read.record is not None
        generated_at = to_utc_text(self.batches.clock.now())
        pages = render_pdf(
            read.record,
            pdf,
            bundle_sha256=read.sha256,
            chain_heads=[
                (str(h.get("terminal")), int(h.get("seq") or 0), str(h.get("row_hash")))
                for h in read.contents.header.get("chain_heads") or []
                if isinstance(h, dict)
            ],
            generated_at=generated_at,
            generated_by=generated_by,
            page_format=page_format,
        )
        self.audit.record_now(
            "ebr.printed",
            actor,
            entity=("batch", read.record.header.batch_id),
            details={"file": str(pdf), "bundle_sha256": read.sha256, "pages": pages,
                     "format": page_format, "generated_by": generated_by},
        )  # fmt: skip
        return CopyResult(target, exported.sha256, pdf, pages)

    # -- copies made for a logged-in user ---------------------------------------------------

    def _authorized(self, session: Any, batch_id: str) -> tuple[Actor, str]:
        """Who makes the copy (refused and recorded unless QA or an administrator)."""
        actor: Actor = self.batches.sessions.authorize(
            session, EXPORT_ACTION, entity=("batch", batch_id)
        )
        self.batches.get(batch_id)  # an unknown batch is named before any file is touched
        return actor, f"{session.full_name} ({session.user_id})"

    def _default_stem(self, batch_id: str, suffixes: tuple[str, ...]) -> Path:
        """A name in ``exports/`` that no file has yet: batch number and UTC time."""
        if self.exports is None:
            raise CopyRefused("this site has no exports folder; give the file name")
        stamp = self.batches.clock.now().strftime("%Y%m%dT%H%M%SZ")
        base = f"{batch_id}_{stamp}"
        for n in range(1, 1000):
            stem = self.exports / (base if n == 1 else f"{base}-{n}")
            if not any(stem.with_name(stem.name + s).exists() for s in suffixes):
                return stem
        raise CopyRefused(f"too many copies of {batch_id} named {base} in {self.exports}")

    def export_for(self, session: Any, batch_id: str, out: Path | None = None) -> CopyResult:
        """The electronic true copy of ``batch_id``, made by the session's user, verified
        after writing; to ``out`` (never overwritten) or a new file in ``exports/``."""
        actor, who = self._authorized(session, batch_id)
        target = _free(out) if out is not None else self._default_bundle(batch_id)
        with _reserved([target]):
            return self.export(batch_id, target, actor=actor, generated_by=who)

    def _default_bundle(self, batch_id: str) -> Path:
        stem = self._default_stem(batch_id, (BUNDLE_SUFFIX,))
        return stem.with_name(stem.name + BUNDLE_SUFFIX)

    def report_for(
        self,
        session: Any,
        batch_id: str,
        pdf: Path | None = None,
        *,
        bundle: Path | None = None,
        page_format: str = "A4",
    ) -> CopyResult:
        """The printable PDF of ``batch_id`` and the bundle it is printed from, made by the
        session's user; to the given names (never overwritten) or new files in ``exports/``."""
        actor, who = self._authorized(session, batch_id)
        if pdf is None:
            stem = self._default_stem(batch_id, (".pdf", BUNDLE_SUFFIX))
            pdf = stem.with_name(stem.name + ".pdf")
            bundle = bundle or stem.with_name(stem.name + BUNDLE_SUFFIX)
        target = bundle or pdf.with_suffix(BUNDLE_SUFFIX)
        if target == pdf:
            raise CopyRefused("the PDF and the bundle need two different file names")
        with _reserved([_free(pdf), _free(target)]):
            return self.report(
                batch_id,
                pdf,
                bundle=target,
                actor=actor,
                generated_by=who,
                page_format=page_format,
            )

    @staticmethod
    def verify(path: Path, *, trust: dict[str, PublicKey] | None = None) -> BatchBundle:
        return read_batch_bundle(path, trust=trust)
