"""True copies of a batch record made with the real ``hmi`` command on a site that lives on the
real clock (as a kiosk does): the bundle verifies offline, the PDF is printed from it, and an
existing file is never overwritten."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from pypdf import PdfReader

from hmi.auth.passwords import Argon2Parameters
from hmi.auth.totp import code_at
from hmi.commands.batch import build_engine
from hmi.demo import DemoUser, seed_demo_site
from hmi.site import init_site, open_site

HMI = str(Path(sys.executable).parent / "hmi")
BATCH = "B-2026-0900"
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)  # tests only


def _run(
    data: Path, *args: str, answers: tuple[str, ...] | list[str] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HMI, *args, "--data", str(data)],
        input="".join(f"{line}\n" for line in answers),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )


def _login(user: DemoUser) -> list[str]:
    code = [code_at(user.totp_secret, datetime.now(UTC))] if user.totp_secret else []
    return [user.user_id, user.password, *code]


def _aborted_batch(data: Path) -> dict[str, DemoUser]:
    """A demo cast and recipes on the real clock, then a batch started and aborted."""
    site = open_site(data)
    try:
        users = {u.user_id: u for u in seed_demo_site(site, argon2=CHEAP_ARGON2)}
        engine = build_engine(site)
        sessions = engine.sessions
        operator = sessions.login("operator", users["operator"].password, None)
        engine.start_batch(operator, "PARA500-FB", 4, BATCH)
        sessions.logout(operator)
        secret = users["supervisor"].totp_secret
        assert secret is not None
        supervisor = sessions.login(
            "supervisor", users["supervisor"].password, code_at(secret, datetime.now(UTC))
        )
        asyncio.run(engine.abort(supervisor, BATCH, "EQUIPMENT", "drive bearing failing"))
        sessions.logout(supervisor)
    finally:
        site.close()
    return users


def test_copies_made_on_the_real_clock_verify_and_are_never_overwritten(tmp_path: Path) -> None:
    data = tmp_path / "site"
    init_site(data, terminal_id="KIOSK-01", site_name="Copy Site").close()
    users = _aborted_batch(data)
    key = str(data / "keys" / "terminal.ed25519.pub")

    bundle = tmp_path / "copy.bundle.jsonl"
    exported = _run(
        data, "batch", "export", BATCH, "--out", str(bundle), answers=_login(users["qa"])
    )
    assert exported.returncode == 0, exported.stderr
    assert f"Exported batch record {BATCH} to {bundle}" in exported.stdout
    verified = _run(data, "ebr", "verify", str(bundle), "--trust-key", key)
    assert verified.returncode == 0, verified.stdout
    assert "INTACT" in verified.stdout

    # An administrator prints the PDF (with its bundle beside it); also verifiable.
    pdf = tmp_path / "record.pdf"
    printed = _run(
        data, "batch", "report", BATCH, "--pdf", str(pdf), answers=_login(users["admin"])
    )
    assert printed.returncode == 0, printed.stderr
    assert pdf.read_bytes().startswith(b"%PDF")
    beside = tmp_path / "record.bundle.jsonl"
    assert _run(data, "ebr", "verify", str(beside), "--trust-key", key).returncode == 0

    # Both copies carry the signed chain head they were made from (the PDF prints it), and
    # the site's trail still extends every position they hold.
    pages = PdfReader(str(pdf)).pages
    printed_text = " ".join(" ".join(page.extract_text().split()) for page in pages)
    assert "Chain head KIOSK-01" in printed_text
    extends = _run(data, "audit", "verify", "--trust-key", key, "--against", str(bundle),
                   "--against", str(beside))  # fmt: skip
    assert extends.returncode == 0, extends.stdout + extends.stderr
    assert "INTACT" in extends.stdout

    # The same names again: refused before anyone is asked to log in; the files are unchanged.
    before = bundle.read_bytes(), pdf.read_bytes()
    again = _run(data, "batch", "export", BATCH, "--out", str(bundle))
    assert again.returncode == 2
    assert f"{bundle} already exists; a copy is never overwritten" in again.stderr
    reprint = _run(data, "batch", "report", BATCH, "--pdf", str(tmp_path / "other.pdf"),
                   "--bundle", str(bundle))  # fmt: skip
    assert reprint.returncode == 2 and "already exists" in reprint.stderr
    assert (bundle.read_bytes(), pdf.read_bytes()) == before
    assert not (tmp_path / "other.pdf").exists()
