"""Making true copies of a batch record: the electronic bundle, and the PDF printed from it.

Both are recorded in the audit trail (``ebr.exported`` / ``ebr.printed``) with the bundle's
SHA-256, so an inspector's copy can be matched to the moment and the person that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmi.audit.chain import Actor
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.keys import PublicKey
from hmi.batch.engine import BatchEngine
from hmi.clock import to_utc_text
from hmi.ebr.assemble import Assembled, EbrError, assemble
from hmi.ebr.bundle import BatchBundle, read_batch_bundle, write_batch_bundle
from hmi.ebr.pdf import render_pdf


@dataclass(frozen=True)
class CopyResult:
    bundle: Path
    sha256: str
    pdf: Path | None = None
    pages: int = 0


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
    ) -> None:
        self.batches = batches
        self.site = site
        self.line = line
        self.witness = witness
        self.extra_keys = extra_keys

    @property
    def audit(self) -> Any:
        return self.batches.audit

    def assemble(self, batch_id: str, *, generated_by: str) -> Assembled:
        return assemble(
            self.batches,
            batch_id,
            site=self.site,
            line=self.line,
            generated_by=generated_by,
            witness=self.witness,
            extra_keys=self.extra_keys,
        )

    def export(self, batch_id: str, out: Path, *, actor: Actor, generated_by: str) -> CopyResult:
        """Write the electronic true copy of ``batch_id`` to ``out`` and record it."""
        assembled = self.assemble(batch_id, generated_by=generated_by)
        created_at = to_utc_text(self.batches.clock.now())
        digest = write_batch_bundle(
            out,
            assembled,
            signer=self.audit.signer,
            created_at=created_at,
            exported_by={"user": generated_by, "terminal": self.audit.terminal_id},
        )
        self.audit.record_now(
            "ebr.exported",
            actor,
            entity=("batch", assembled.record.header.batch_id),
            details={"file": str(out), "sha256": digest, "events": len(assembled.context.rows),
                     "generated_by": generated_by},
        )  # fmt: skip
        return CopyResult(out, digest)

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
        exported = self.export(batch_id, target, actor=actor, generated_by=generated_by)
        read = read_batch_bundle(target, workers=1)
        if not read.ok or read.record is None:
            problems = "; ".join(p.message for p in read.report.problems[:5])
            raise EbrError(f"the bundle just written does not verify: {problems}")
        generated_at = to_utc_text(self.batches.clock.now())
        pages = render_pdf(
            read.record,
            pdf,
            bundle_sha256=read.sha256,
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

    @staticmethod
    def verify(path: Path, *, trust: dict[str, PublicKey] | None = None) -> BatchBundle:
        return read_batch_bundle(path, trust=trust)
