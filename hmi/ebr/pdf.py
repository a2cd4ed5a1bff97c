"""The printable batch record (PDF, fpdf2), printed from the electronic bundle it names.

Legible on A4 and Letter: a Unicode font shipped with the package (DejaVu Sans), every text
wrapped (never truncated, long words broken), table rows that would not fit on a page moved to
the next one or, if taller than a page, printed as labelled paragraphs. Every page carries the
batch number, "page x of y", the generation time (local with UTC offset, and UTC), the
generating user and the SHA-256 of the bundle the copy was printed from.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from fpdf import FPDF

from hmi.batch.report import PRECISION_NOTE
from hmi.batch.review import DISPOSITION_MEANINGS
from hmi.batch.rows import shown_value, step_places
from hmi.clock import from_utc_text, to_local_text
from hmi.ebr.model import Deviation, EbrRecord, Step, Value

FONT_DIR = Path(__file__).with_name("fonts")
FONT = "DejaVu"
PAGE_FORMATS = {"a4": "A4", "letter": "Letter"}
MARGIN = 15.0
BOTTOM = 24.0
BODY_SIZE = 8.5
TABLE_SIZE = 7.5


def when(text: str | None) -> str:
    """A stored UTC time for people: local time with offset, and UTC."""
    if not text:
        return "-"
    moment = from_utc_text(text)
    return f"{to_local_text(moment)} (UTC {text[:10]} {text[11:19]})"


def _or(text: Any, default: str = "-") -> str:
    return default if text is None or text == "" else str(text)


class RecordPdf(FPDF):
    """An FPDF document with the record's running header and footer."""

    def __init__(self, *, page_format: str, batch_id: str, footer_lines: Sequence[str]) -> None:
        super().__init__(orientation="portrait", unit="mm", format=page_format)
        self.batch_id = batch_id
        self.footer_lines = tuple(footer_lines)
        self.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=BOTTOM)
        self.alias_nb_pages("{nb}")
        self.set_title(f"Electronic batch record {batch_id}")
        self.set_creator("hmi.ebr")

    # -- running header and footer --------------------------------------------------------

    def header(self) -> None:
        self.set_font(FONT, "", 7)
        self.set_text_color(80, 80, 80)
        self.set_y(9.5)
        self.cell(0, 4, f"Electronic batch record {self.batch_id} - true copy", align="L")
        self.set_y(MARGIN)
        self.set_text_color(0, 0, 0)

    def footer(self) -> None:
        self.set_y(-BOTTOM + 6)
        self.set_font(FONT, "", 6.5)
        self.set_text_color(60, 60, 60)
        self.set_draw_color(160, 160, 160)
        self.line(MARGIN, self.get_y(), self.w - MARGIN, self.get_y())
        self.ln(1)
        first = f"Batch {self.batch_id} - page {self.page_no()} of {{nb}}"
        for text in (first, *self.footer_lines):
            self.multi_cell(0, 3, text, new_x="LMARGIN", new_y="NEXT", align="L")
        self.set_text_color(0, 0, 0)
        self.set_draw_color(0, 0, 0)

    # -- building blocks -------------------------------------------------------------------

    @property
    def limit(self) -> float:
        """The lowest y a line of text may reach on this page."""
        return self.h - BOTTOM

    def wrap(self, text: str, width: float, size: float, bold: bool = False) -> list[str]:
        """``text`` broken into lines no wider than ``width`` (mm) in the given font: at spaces,
        inside words longer than a line, and at line breaks. Nothing is ever dropped."""
        self.set_font(FONT, "B" if bold else "", size)
        usable = width - 2 * self.c_margin - 0.2
        widths: Any = cast(Any, self.current_font).cw  # advance widths, 1/1000 em
        factor = size / 1000 / self.k

        def measure(part: str) -> float:
            return float(sum(widths[ord(c)] for c in part)) * factor

        space = measure(" ")
        out: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            line_w = 0.0
            for word in paragraph.split(" "):
                word_w = measure(word)
                if line and line_w + space + word_w <= usable:
                    line, line_w = f"{line} {word}", line_w + space + word_w
                    continue
                if line or (out and not word):
                    out.append(line)
                    line, line_w = "", 0.0
                while word_w > usable:  # a word longer than a line: break it
                    cut = len(word)
                    while cut > 1 and measure(word[:cut]) > usable:
                        cut = max(1, cut * 3 // 4 if measure(word[: cut * 3 // 4]) > usable
                                  else cut - 1)  # fmt: skip
                    out.append(word[:cut])
                    word = word[cut:]
                    word_w = measure(word)
                line, line_w = word, word_w
            out.append(line)
        return out or [""]

    def line_at(self, x: float, top: float, line_h: float, line: str) -> None:
        """One line of text in a box of height ``line_h`` at (x, top), placed as ``cell``
        would place it (``text`` is several times faster, which counts for long trails)."""
        if line:
            self.text(x + self.c_margin, top + line_h / 2 + 0.3 * self.font_size, line)

    def _write(self, lines: Sequence[str], line_h: float, *, x: float, width: float) -> None:
        for line in lines:
            if self.get_y() + line_h > self.limit:
                self.add_page()
            self.line_at(x, self.get_y(), line_h, line)
            self.set_xy(self.l_margin, self.get_y() + line_h)

    def heading(self, text: str, size: float = 11) -> None:
        if self.get_y() > self.limit - 20:
            self.add_page()
        self.ln(2)
        self._write(self.wrap(text, self.epw, size, True), size * 0.5, x=self.l_margin,
                    width=self.epw)  # fmt: skip
        self.ln(1)
        self.set_font(FONT, "", BODY_SIZE)

    def para(self, text: str, *, bold: bool = False, size: float = BODY_SIZE) -> None:
        lines = self.wrap(text, self.epw, size, bold)
        self._write(lines, size * 0.45, x=self.l_margin, width=self.epw)
        self.set_font(FONT, "", BODY_SIZE)

    def pairs(self, items: Sequence[tuple[str, str]], label_width: float = 42) -> None:
        """Label/value rows (values wrap; a row never splits a label from its value)."""
        self.grid(("", ""), (label_width, self.epw - label_width), items, header=False,
                   size=BODY_SIZE, bold_first=True)  # fmt: skip

    def grid(
        self,
        headings: Sequence[str],
        widths: Sequence[float],
        rows: Sequence[Sequence[str]],
        *,
        header: bool = True,
        size: float = TABLE_SIZE,
        bold_first: bool = False,
    ) -> None:
        """A wrapped table: rows move whole to the next page; a row taller than a page is
        printed as labelled paragraphs instead. ``widths`` are in mm (scaled to the page)."""
        scale = self.epw / sum(widths)
        cols = [w * scale for w in widths]
        line_h = size * 0.42
        pad = 0.8

        def wrapped(cells: Sequence[str], bold_row: bool) -> list[list[str]]:
            return [
                self.wrap(t, w, size, bold_row or (bold_first and n == 0))
                for n, (w, t) in enumerate(zip(cols, cells, strict=True))
            ]

        def draw(cells: list[list[str]], bold_row: bool) -> None:
            height = max(len(c) for c in cells) * line_h + 2 * pad
            y = self.get_y()
            x = self.l_margin
            for number, (w, lines) in enumerate(zip(cols, cells, strict=True)):
                bold = bold_row or (bold_first and number == 0)
                self.set_font(FONT, "B" if bold else "", size)
                for k, line in enumerate(lines):
                    self.line_at(x, y + pad + k * line_h, line_h, line)
                self.rect(x, y, w, height)
                x += w
            self.set_xy(self.l_margin, y + height)

        head = wrapped(headings, True)
        head_h = max(len(c) for c in head) * line_h + 2 * pad
        usable = self.limit - self.t_margin - (head_h if header else 0)
        self.set_draw_color(170, 170, 170)
        self.set_line_width(0.1)
        self.set_auto_page_break(False, margin=BOTTOM)
        try:
            if header:
                if self.get_y() + head_h * 2 > self.limit:
                    self.add_page()
                draw(head, True)
            for cells in rows:
                texts = [str(c) for c in cells]
                lines = wrapped(texts, False)
                height = max(len(c) for c in lines) * line_h + 2 * pad
                if height > usable:
                    self.ln(1)
                    for title, text in zip(headings, texts, strict=True):
                        self.para(f"{title}: {text}" if title else text, size=size)
                    self.ln(1)
                    continue
                if self.get_y() + height > self.limit:
                    self.add_page()
                    if header:
                        draw(head, True)
                draw(lines, False)
        finally:
            self.set_auto_page_break(True, margin=BOTTOM)
            self.set_draw_color(0, 0, 0)
        self.set_font(FONT, "", BODY_SIZE)
        self.ln(2)


# -- the sections of the record ---------------------------------------------------------


def _header(pdf: RecordPdf, record: EbrRecord) -> None:
    h = record.header
    pdf.set_font(FONT, "B", 15)
    pdf.multi_cell(0, 7, f"Batch record {h.batch_id}", new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_font(FONT, "", 10)
    pdf.multi_cell(0, 5, f"{h.product} - {h.recipe_name}", new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.ln(2)
    ended = (
        f"completed {when(h.completed_at)}"
        if h.completed_at
        else (f"aborted {when(h.aborted_at)} by {h.aborted_by}" if h.aborted_at else "not ended")
    )
    items = [
        ("Site", h.site),
        ("Line", h.line),
        ("Terminal", h.terminal_id),
        ("Product", h.product),
        ("Recipe", f"{h.recipe_id} version {h.recipe_version} - {h.recipe_name}"),
        ("Recipe SHA-256", h.recipe_sha256),
        ("Batch number", h.batch_id),
        ("Status", h.status.replace("_", " ")),
        ("Started", f"{when(h.started_at)} by {h.started_by}"),
        ("Ended", ended),
        (
            "Steps",
            f"{sum(1 for s in record.steps if s.status != 'pending')} of {h.step_count} done",
        ),
    ]
    if h.hold_reason:
        items.append(("On hold", h.hold_reason))
    if h.reviewed_at:
        items.append(("Audit trail reviewed", f"{when(h.reviewed_at)} by {h.reviewed_by}"))
    if h.decided_at:
        reason = f" - {h.decision_reason}" if h.decision_reason else ""
        items.append(("QA decision", f"{h.status} {when(h.decided_at)} by {h.decided_by}{reason}"))
    pdf.pairs(items)


def _chain_heads(pdf: RecordPdf, heads: Sequence[tuple[str, int, str]]) -> None:
    """The chain heads the copy was made from: a later check of the audit trail against this
    copy (``hmi audit verify --against`` its bundle) proves the trail still extends them."""
    if not heads:
        return
    pdf.ln(1)
    pdf.pairs(
        [
            (f"Chain head {terminal}", f"seq {seq}, row hash {row_hash} (signed, in the bundle)")
            for terminal, seq, row_hash in heads
        ]
    )


def _summary(pdf: RecordPdf, record: EbrRecord) -> None:
    s = record.summary
    v = s.verification
    pdf.heading("Review by exception")
    meanings = ", ".join(f"{k.replace('_', ' ')}: {n}" for k, n in s.signatures_by_meaning.items())
    status = "INTACT" if v.chain_ok and not v.signatures_invalid else "NOT INTACT"
    items = [
        ("Exceptions to review", str(s.exceptions)),
        ("Deviations", f"{s.deviations} ({s.critical_deviations} critical, {s.open_deviations} "
                       f"open, {s.undispositioned_deviations} without QA disposition)"),
        ("Overrides and skips", str(s.overrides)),
        ("Alarms during the batch", str(s.alarms)),
        ("Late entries", str(s.late_entries)),
        ("Values changed after first entry", str(s.changed_values)),
        ("PLC commands without result", str(s.plc_commands_without_result)),
        ("Electronic signatures", f"{s.signatures} ({meanings or 'none'}); {v.signatures_valid} "
                                  f"valid, {v.signatures_invalid} invalid"),
        ("Audit trail verification", f"{status}: {v.events_checked} events checked"
         + ("" if v.chain_ok else "; " + "; ".join(v.chain_problems))),
    ]  # fmt: skip
    pdf.pairs(items, label_width=55)


def _value_row(
    value: Value, record: EbrRecord, places: dict[tuple[int, str | None], int]
) -> list[str]:
    limits = f"{_or(value.low)} .. {_or(value.high)}" if value.low or value.high else "-"
    verdict = (
        "-" if value.in_limits is None else ("in limits" if value.in_limits else "OUT OF LIMITS")
    )
    flags = []
    if value.replaces_id is not None:
        old = record.value(value.replaces_id)
        flags.append(
            f"CHANGED AFTER FIRST ENTRY: was {old.value if old else '?'}, now {value.value}; "
            f"changed by {value.recorded_by} {when(value.recorded_at)}; why: {value.reason}"
        )
    if value.replaced_by is not None:
        flags.append(f"superseded by value #{value.replaced_by}")
    if value.late:
        flags.append("LATE ENTRY")
    return [
        f"#{value.value_id} {value.name}",
        shown_value(
            value.value,
            value.source,
            value.low,
            value.high,
            places.get((value.step_index, value.unit)),
        ),
        _or(value.unit),
        limits,
        verdict,
        f"{value.recorded_by}, {when(value.recorded_at)} ({value.source})",
        "; ".join(flags) or "-",
    ]


def _steps(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.heading("Steps, values and who performed them")
    pdf.para(PRECISION_NOTE[0].upper() + PRECISION_NOTE[1:] + ".")
    by_id = {s.signature_id: s for s in record.signatures}
    for step in record.steps:
        _step(pdf, record, step, by_id)


def _step(pdf: RecordPdf, record: EbrRecord, step: Step, by_id: dict[str, Any]) -> None:
    pdf.heading(f"{step.index + 1}. {step.title} [{step.status}]", size=9.5)
    items = [("Step", f"{step.step_id} ({step.kind})")]
    if step.instruction:
        items.append(("Instruction", step.instruction))
    if step.started_at:
        items.append(("Started", f"{when(step.started_at)} by {step.started_by}"))
    if step.completed_at:
        items.append(("Performed", f"{step.performed_by}, completed {when(step.completed_at)}"))
    if step.deviation_id:
        items.append(("Deviation", step.deviation_id))
    for signature_id in step.signature_ids:
        found = by_id.get(signature_id)
        if found is not None:
            items.append(("Signed", found.manifestation))
    pdf.pairs(items, label_width=28)
    values = record.values_of(step.index)
    places = step_places(values)
    if values:
        pdf.grid(
            ("Value", "Recorded", "Unit", "Limits", "Result", "Recorded by, when", "Flags"),
            (26, 18, 10, 20, 16, 46, 44),
            [_value_row(v, record, places) for v in values],
        )


def _changes(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.heading("Values changed after first entry (EU GMP Annex 11 §8.2)")
    if not record.changes:
        pdf.para("None: no value was changed after its first entry.")
        return
    pdf.grid(
        ("Step / value", "Old", "New", "Changed by", "When", "Why"),
        (30, 18, 18, 20, 40, 54),
        [
            [f"{c.step_id} / {c.name} (#{c.replaces_id} -> #{c.value_id})", c.old,
             f"{c.new} {_or(c.unit, '')}".strip(), c.changed_by, when(c.changed_at), c.reason]
            for c in record.changes
        ],
    )  # fmt: skip


_DISPOSITION_MEANING = {
    decision: meaning.value for decision, meaning in DISPOSITION_MEANINGS.items()
}


def _deviation(pdf: RecordPdf, item: Deviation, record: EbrRecord) -> None:
    pdf.heading(
        f"{item.deviation_id} - {item.kind_label}{' - CRITICAL' if item.critical else ''}", size=9.5
    )
    by_id = {s.signature_id: s for s in record.signatures}
    items = [
        ("Step", _or(item.step_id)),
        ("What", item.description),
        ("Status", item.status.replace("_", " ")),
        ("Opened", f"{when(item.opened_at)} by {item.opened_by}"),
    ]
    if item.expected is not None or item.actual is not None:
        unit = f" {item.unit}" if item.unit else ""
        items.append(
            ("Expected / actual", f"{_or(item.expected)}{unit} / {_or(item.actual)}{unit}")
        )
    if item.parameter:
        items.append(("Parameter", item.parameter))
    if item.ended_at:
        items.append(("Ended", when(item.ended_at)))
    if item.reason_text:
        items.append(("Reason", f"{_or(item.reason_code)}: {item.reason_text}"))
        items.append(("Reason given", f"{_or(item.reason_by)} {when(item.reason_at)}"))
    else:
        items.append(("Reason", "MISSING"))
    if item.requires_cosign:
        cosign = by_id.get(item.cosign_signature_id or "")
        request = by_id.get(item.request_signature_id or "")
        if request is not None:
            items.append(("Requested", request.manifestation))
        items.append(("Co-signature", cosign.manifestation if cosign else
                      (f"{item.cosigned_by} {when(item.cosigned_at)}" if item.cosigned_by
                       else "MISSING")))  # fmt: skip
    if item.alarm_id is not None:
        items.append(("Alarm", f"#{item.alarm_id}"))
    items.append(
        (
            "QA disposition",
            f"{item.disposition}: {_or(item.disposition_comment)}"
            if item.disposition
            else "NONE YET",
        )
    )
    if item.disposition:
        meaning = _DISPOSITION_MEANING.get(item.disposition)
        signed = [
            s
            for s in record.signatures
            if s.record_id == item.deviation_id and s.meaning == meaning
        ]
        items.append(
            (
                "Disposition signed",
                signed[-1].manifestation
                if signed
                else f"NO SIGNATURE ({item.disposition_by}, {when(item.disposition_at)})",
            )
        )
    pdf.pairs(items, label_width=32)


def _deviations(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.heading(f"Deviations ({len(record.deviations)})")
    if not record.deviations:
        pdf.para("None.")
    for item in record.deviations:
        _deviation(pdf, item, record)


def _alarms(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.heading(f"Alarms during the batch ({len(record.alarms)})")
    if not record.alarms:
        pdf.para("None.")
        return
    pdf.grid(
        ("Alarm", "Message", "Raised", "Cleared", "Acknowledged", "Shelved"),
        (22, 40, 30, 30, 30, 28),
        [
            [f"#{a.alarm_id} {a.code} (severity {a.severity}, {a.source})", a.message,
             when(a.raised_at), when(a.cleared_at),
             f"{_or(a.acknowledged_by)} {when(a.acknowledged_at)}" if a.acknowledged_at else "-",
             f"{_or(a.shelved_by)} {when(a.shelved_at)} until {when(a.shelved_until)}: "
             f"{_or(a.shelve_reason)}" if a.shelved_at else "-"]
            for a in record.alarms
        ],
    )  # fmt: skip


def _signatures(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.heading(f"Electronic signatures ({len(record.signatures)})")
    if not record.signatures:
        pdf.para("None.")
        return
    pdf.para(
        "Each signature: printed name (user ID) - meaning - local date and time with UTC offset "
        "(UTC); the record it covers, and whether it verifies (21 CFR 11.50, 11.70)."
    )
    pdf.grid(
        ("Manifestation", "Covers", "Verifies"),
        (92, 58, 30),
        [
            [s.manifestation,
             f"{s.record_type} {s.record_id} (sha256 {s.record_sha256[:16]}...)"
             + (f"; co-signs {s.cosign_of[:12]}" if s.cosign_of else ""),
             "valid" if s.valid else "INVALID: " + "; ".join(s.problems)]
            for s in record.signatures
        ],
    )  # fmt: skip


def _commands(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.heading(f"PLC commands ({len(record.plc_commands)})")
    if not record.plc_commands:
        pdf.para("None.")
        return
    pdf.grid(
        ("Command", "Step", "Intent", "Result"),
        (50, 12, 54, 64),
        [
            [f"{c.command} {c.arguments}", "-" if c.step_index is None else str(c.step_index + 1),
             f"{c.intent_by} {when(c.intent_at)}",
             f"{_or(c.result, 'NO RESULT RECORDED')} {when(c.result_at) if c.result_at else ''}"
             + (f" - {c.result_detail}" if c.result_detail else "")]
            for c in record.plc_commands
        ],
    )  # fmt: skip


def _appendix(pdf: RecordPdf, record: EbrRecord) -> None:
    pdf.add_page()
    pdf.heading(
        f"Appendix: audit trail of batch {record.header.batch_id} ({len(record.events)} events)"
    )
    pdf.para(
        "Every audit event about this batch, its steps, deviations and alarms, in chain order. "
        "The electronic bundle named in the footer holds them with their hashes and signatures."
    )
    rows = []
    for e in record.events:
        change = ""
        if e.field or e.old_value is not None or e.new_value is not None:
            change = f"{_or(e.field, '')}: {_or(e.old_value)} -> {_or(e.new_value)}"
        extra = "; ".join(
            x for x in (f"meaning {e.meaning}" if e.meaning else "", e.reason or "") if x
        )
        rows.append(
            [
                when(e.ts),
                f"{e.terminal_id}:{e.seq}",
                f"{e.actor_id} ({e.actor_role})",
                e.action,
                f"{_or(e.entity_type, '')} {_or(e.entity_id, '')}".strip() or "-",
                change or "-",
                extra or "-",
            ]
        )
    pdf.grid(
        ("Time", "Terminal:seq", "User (role)", "Action", "Concerns", "Change", "Reason / meaning"),
        (30, 17, 20, 26, 27, 33, 27),
        rows,
        size=6.5,
    )


def render_pdf(
    record: EbrRecord,
    path: Path,
    *,
    bundle_sha256: str,
    generated_at: str,
    generated_by: str,
    page_format: str = "A4",
    chain_heads: Sequence[tuple[str, int, str]] = (),
) -> int:
    """Print ``record`` (as read from the bundle ``bundle_sha256``) to ``path``; return pages.

    ``chain_heads`` (terminal, seq, row hash) are the signed chain heads the bundle was made
    from, printed on the first page and in the appendix so a paper copy names them too."""
    fmt = PAGE_FORMATS.get(page_format.lower())
    if fmt is None:
        raise ValueError(f"page format must be A4 or Letter, not {page_format!r}")
    pdf = RecordPdf(
        page_format=fmt,
        batch_id=record.header.batch_id,
        footer_lines=(
            f"Generated {when(generated_at)} by {generated_by}",
            f"Printed from electronic bundle SHA-256 {bundle_sha256}",
        ),
    )
    pdf.set_subject(f"bundle sha256 {bundle_sha256}")
    pdf.add_page()
    _header(pdf, record)
    _chain_heads(pdf, chain_heads)
    _summary(pdf, record)
    _steps(pdf, record)
    _changes(pdf, record)
    _deviations(pdf, record)
    _alarms(pdf, record)
    _signatures(pdf, record)
    _commands(pdf, record)
    _appendix(pdf, record)
    _chain_heads(pdf, chain_heads)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    pdf.output(str(tmp))
    tmp.replace(path)
    return int(pdf.pages_count)
