"""The printed record lays out very long texts, Unicode names and many steps on A4 and Letter
without truncation, without text running off the page and without text drawn over text."""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import ImageOps
from pypdf import PdfReader

from hmi.ebr.pdf import render_pdf
from tests.unit.ebr.records import LONG_WORD, UNICODE_NAMES, sample_record

PT_PER_MM = 72 / 25.4
BAND_MM = 8.0  # nothing may be printed this close to any edge of the sheet
BUNDLE_SHA = "9f" * 32


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


_RUNNING = re.compile(
    r"^(Electronic batch record \S+ - true copy|Batch \S+ - page \d+ of \d+"
    r"|Generated .* by .*|Printed from electronic bundle SHA-256 [0-9a-f]{64})$"
)


def _body(text: str) -> str:
    """A page's text without its running header and footer lines."""
    return "\n".join(line for line in text.splitlines() if not _RUNNING.match(line.strip()))


def _ink_in_band(page: pdfium.PdfPage) -> list[str]:
    """Render the page and report every edge band that has ink in it."""
    scale = 1.0  # 72 dpi: a 0.35 mm pixel
    image = ImageOps.invert(page.render(scale=scale, grayscale=True).to_pil().convert("L"))
    width, height = image.size
    band = int(BAND_MM * PT_PER_MM * scale)
    boxes = {
        "left": (0, 0, band, height),
        "right": (width - band, 0, width, height),
        "top": (0, 0, width, band),
        "bottom": (0, height - band, width, height),
    }
    inked = []
    for name, box in boxes.items():
        region = image.crop(box).point(lambda v: 255 if v > 40 else 0)
        if region.getbbox() is not None:
            inked.append(name)
    return inked


def _overlaps(page: pdfium.PdfPage) -> list[str]:
    """Characters whose boxes overlap another character's (text drawn over text)."""
    textpage = page.get_textpage()
    boxes = []
    for index in range(textpage.count_chars()):
        char = textpage.get_text_range(index, 1)
        if not char.strip():
            continue
        left, bottom, right, top = textpage.get_charbox(index)
        if right - left > 0.2 and top - bottom > 0.2:
            boxes.append((left, bottom, right, top, char))
    textpage.close()
    grid: dict[tuple[int, int], list[int]] = {}
    found: list[str] = []
    for n, (left, bottom, right, top, char) in enumerate(boxes):
        cells = {(int(x // 6), int(y // 6)) for x in (left, right) for y in (bottom, top)}
        for cell in cells:
            for other in grid.get(cell, []):
                ol, ob, orr, ot, ochar = boxes[other]
                dx = min(right, orr) - max(left, ol)
                dy = min(top, ot) - max(bottom, ob)
                smaller = min((right - left) * (top - bottom), (orr - ol) * (ot - ob))
                if dx > 0 and dy > 0 and dx * dy > 0.3 * smaller:
                    found.append(f"{char!r} over {ochar!r} at ({left:.0f}, {bottom:.0f})")
            grid.setdefault(cell, []).append(n)
    return found


@pytest.mark.parametrize("page_format", ["A4", "Letter"])
def test_long_texts_unicode_and_many_steps_fit_the_page(tmp_path: Path, page_format: str) -> None:
    record = sample_record(steps=60, values_per_step=4, events=300)
    out = tmp_path / f"record-{page_format}.pdf"
    pages = render_pdf(
        record,
        out,
        bundle_sha256=BUNDLE_SHA,
        generated_at="2026-03-02T12:00:00.000000Z",
        generated_by=UNICODE_NAMES[3],
        page_format=page_format,
    )
    document = pdfium.PdfDocument(str(out))
    try:
        assert len(document) == pages and pages >= 20
        width_pt, height_pt = document[0].get_size()
        expected = (595, 842) if page_format == "A4" else (612, 792)
        assert (round(width_pt), round(height_pt)) == expected
        problems = {}
        for number in range(len(document)):
            page = document[number]
            inked = _ink_in_band(page)
            overlapping = _overlaps(page)
            page.close()
            if inked or overlapping:
                problems[number + 1] = (inked, overlapping[:3])
    finally:
        document.close()
    assert problems == {}
    # Nothing truncated: every long text, name and value is in the extracted text, whole.
    reader = PdfReader(str(out))
    texts = [page.extract_text() for page in reader.pages]
    everything = _squash("".join(_body(text) for text in texts))
    deviation = record.deviations[0]
    assert deviation.reason_text is not None
    for expected_text in (
        deviation.reason_text,
        deviation.description,
        record.changes[0].reason,
        LONG_WORD,
        record.header.product,
        record.steps[3].title,
        *(s.manifestation for s in record.signatures),
        *(v.value for v in record.values),
        *UNICODE_NAMES,
    ):
        assert _squash(expected_text) in everything, expected_text[:60]
    # Every page names its place, the generator and the bundle it was printed from.
    for number, text in enumerate(texts, start=1):
        flat = _squash(text)
        assert _squash(f"page {number} of {pages}") in flat
        assert BUNDLE_SHA in flat
        assert _squash(UNICODE_NAMES[3]) in flat
        assert _squash("2026-03-02 12:00:00") in flat or "UTC2026-03-0212:00:00" in flat


def test_the_overlap_check_sees_text_printed_over_text(tmp_path: Path) -> None:
    """The layout check itself: text deliberately printed twice at one spot is caught, and
    text printed in the edge band is seen as ink there."""
    from hmi.ebr.pdf import FONT, RecordPdf

    pdf = RecordPdf(page_format="A4", batch_id="X-1", footer_lines=("footer",))
    pdf.add_page()
    pdf.set_font(FONT, "", 10)
    pdf.set_xy(40, 60)
    pdf.cell(60, 5, "overlapping text")
    pdf.set_xy(41, 60.5)
    pdf.cell(60, 5, "WRITTEN OVER IT")
    pdf.set_xy(2, 100)
    pdf.cell(20, 5, "edge")
    out = tmp_path / "bad.pdf"
    pdf.output(str(out))
    document = pdfium.PdfDocument(str(out))
    try:
        page = document[0]
        assert _overlaps(page)
        assert "left" in _ink_in_band(page)
        page.close()
    finally:
        document.close()


def test_page_format_must_be_a4_or_letter(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="A4 or Letter"):
        render_pdf(
            sample_record(steps=1, values_per_step=1, events=1),
            tmp_path / "x.pdf",
            bundle_sha256=BUNDLE_SHA,
            generated_at="2026-03-02T12:00:00.000000Z",
            generated_by="qa1",
            page_format="A3",
        )
