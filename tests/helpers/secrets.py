"""Searching everything a site keeps or hands out for a secret: every file of a site folder
(the SQLite file with its WAL and shared-memory files, the witness, the keys), every row of
every table, and exported copies, with a PDF's compressed streams and text opened up."""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Iterable
from pathlib import Path

from pypdf import PdfReader


def _variants(secret: str) -> list[bytes]:
    """The secret as it could be stored: UTF-8 as typed, lower and upper case, UTF-16."""
    texts = dict.fromkeys([secret, secret.lower(), secret.upper()])
    return [form for text in texts for form in (text.encode(), text.encode("utf-16-le"))]


def _pdf_texts(path: Path) -> list[bytes]:
    """A PDF's page text and every stream, decompressed (fonts compress their text)."""
    reader = PdfReader(path)
    found = [(page.extract_text() or "").encode() for page in reader.pages]
    raw = path.read_bytes()
    start = 0
    while (begin := raw.find(b"stream", start)) != -1:
        end = raw.find(b"endstream", begin)
        if end == -1:
            break
        body = raw[begin + len(b"stream") : end].lstrip(b"\r\n")
        try:
            found.append(zlib.decompress(body))
        except zlib.error:
            found.append(body)
        start = end
    return found


def _table_dump(path: Path) -> bytes:
    """Every row of every table of an SQLite file, as text (what is committed, WAL included)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return "\n".join(conn.iterdump()).encode()


def contents(path: Path) -> list[bytes]:
    """What a file holds, in every form the search looks at."""
    data = path.read_bytes()
    found = [data]
    if data.startswith(b"%PDF"):
        found += _pdf_texts(path)
    if data.startswith(b"SQLite format 3\x00"):
        found.append(_table_dump(path))
    return found


def files_under(*roots: Path, skip: Iterable[str] = ()) -> list[Path]:
    skipped = set(skip)
    found: list[Path] = []
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*"))
        found += [p for p in candidates if p.is_file() and p.name not in skipped]
    return found


def secrets_found(paths: Iterable[Path], secrets: Iterable[str]) -> list[str]:
    """``"<file>: <secret>"`` for every secret found in any of the files; empty when none."""
    wanted = list(secrets)
    hits = []
    for path in paths:
        blobs = contents(path)
        for secret in wanted:
            if any(form in blob for blob in blobs for form in _variants(secret)):
                hits.append(f"{path}: {secret}")
    return hits
