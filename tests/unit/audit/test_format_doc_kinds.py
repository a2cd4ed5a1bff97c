"""docs/audit-format.md lists every kind of problem verify reports, and the exit statuses the
verify commands use: a new kind cannot go undocumented, and the documented statuses are the
ones the commands return (checked on a small bundle made here, offline, in one process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit import canonical
from hmi.audit.bundle import write_bundle
from hmi.audit.chain import seal_event
from hmi.audit.checkpoint import make_checkpoint
from hmi.audit.hashing import GENESIS_PREV_HASH
from hmi.audit.keys import Signer, public_pem
from hmi.audit.verify import GENESIS_ACTION, ROW_FIELDS, Kind, Row
from hmi.cli import main

DOC = (Path(__file__).parents[3] / "docs" / "audit-format.md").read_text(encoding="utf-8")
KINDS = {kind.value for kind in Kind}
#: The documented meaning of each exit status starts with these words (§11).
STATUS_WORDS = {0: "intact", 1: "problems found", 2: "cannot verify"}


def section(number: int) -> str:
    """The text of ``## N.`` up to the next section of the same level."""
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert match, f"docs/audit-format.md has no section {number}"
    return match.group(0)


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of every row of every table in ``text`` whose header row starts with
    ``| header |`` (the separator row left out)."""
    rows: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            inside = False
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if not inside:
            inside = cells[0] == header
            continue
        if set(line) <= {"|", "-", " ", ":"}:
            continue
        rows.append(cells)
    return rows


def kinds_in(cell: str) -> list[str]:
    return re.findall(r"`([a-z_]+)`", cell)


def test_the_kinds_table_lists_every_kind_exactly_once() -> None:
    rows = table_rows(section(10), "kind")
    documented = [kind for cells in rows for kind in kinds_in(cells[0])]
    assert all(len(kinds_in(cells[0])) == 1 for cells in rows), "one kind per row"
    assert sorted(documented) == sorted(set(documented)), "a kind listed twice"
    assert set(documented) == KINDS, (
        f"undocumented: {sorted(KINDS - set(documented))};"
        f" not a kind: {sorted(set(documented) - KINDS)}"
    )
    assert all(cells[1] for cells in rows), "every kind has its rule"


def test_every_kind_any_table_names_is_a_kind() -> None:
    named = {kind for cells in table_rows(DOC, "kind") for kind in kinds_in(cells[0])}
    assert named <= KINDS, sorted(named - KINDS)
    business = {kind for cells in table_rows(section(7), "kind") for kind in kinds_in(cells[0])}
    assert business == {k for k in KINDS if k.startswith("row_")}


def documented_statuses() -> dict[int, str]:
    rows = table_rows(section(11), "status")
    statuses = {int(cells[0]): cells[1] for cells in rows}
    assert len(statuses) == len(rows)
    return statuses


def test_the_documented_exit_statuses_are_the_commands_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    statuses = documented_statuses()
    assert set(statuses) == set(STATUS_WORDS)
    for status, words in STATUS_WORDS.items():
        assert statuses[status].startswith(words), statuses[status]
    for command in (["audit", "verify"], ["ebr", "verify"]):
        assert main([*command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        for status, words in STATUS_WORDS.items():
            assert f"{status} {words}" in text, (command, status)


# -- the statuses as the commands return them, on a bundle made here ------------------------

TS = "2026-03-02T07:30:0{}.000000Z"


def _signer() -> Signer:
    return Signer(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))


def _rows(signer: Signer) -> list[Row]:
    genesis = {
        "ts": TS.format(0), "actor_id": "system", "actor_role": "system",
        "action": GENESIS_ACTION, "entity_type": "terminal", "entity_id": "KIOSK-01",
        "details": canonical.dumps({
            "algorithm": "ed25519", "key_id": signer.key_id,
            "public_key": signer.public.raw.hex(), "software_version": "test",
            "terminal_id": "KIOSK-01",
        }),
    }  # fmt: skip
    first = seal_event(signer, "KIOSK-01", 1, GENESIS_PREV_HASH, genesis)
    second = seal_event(
        signer, "KIOSK-01", 2, first["row_hash"],
        {"ts": TS.format(1), "actor_id": "op1", "actor_role": "operator",
         "action": "test.event", "details": canonical.dumps({"index": 1})},
    )  # fmt: skip
    return [tuple(row[name] for name in ROW_FIELDS) for row in (first, second)]


@pytest.fixture
def made(tmp_path: Path) -> tuple[Path, Path]:
    """An intact bundle of a two-event chain, and the published key it verifies with."""
    signer = _signer()
    rows = _rows(signer)
    head = rows[-1]
    seq, digest = int(head[ROW_FIELDS.index("seq")]), str(head[ROW_FIELDS.index("row_hash")])
    bundle = tmp_path / "trail.bundle"
    write_bundle(
        bundle,
        signer=signer,
        header={"partial": False, "created_at": TS.format(2), "scope": {}},
        keys=[signer.public],
        rows=rows,
        checkpoints=[make_checkpoint(signer, "KIOSK-01", seq, digest, TS.format(1), "interval")],
        heads=[make_checkpoint(signer, "KIOSK-01", seq, digest, TS.format(2), "export")],
        ends_at_head=True,
    )
    key = tmp_path / "terminal.pub"
    key.write_bytes(
        public_pem(Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key())
    )
    return bundle, key


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_audit_verify_returns_the_documented_statuses(
    made: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, key = made
    verify = ["audit", "verify", "--workers", "1", "--trust-key", str(key)]
    code, out = run(capsys, *verify, "--bundle", str(bundle))
    assert code == 0 and "INTACT" in out, out
    edited = tmp_path / "edited.bundle"
    edited.write_bytes(bundle.read_bytes().replace(b'"test.event"', b'"test.evenu"'))
    code, out = run(capsys, *verify, "--bundle", str(edited))
    assert code == 1 and "NOT INTACT" in out, out
    later = tmp_path / "later.bundle"
    later.write_bytes(bundle.read_bytes().replace(b'"version":2', b'"version":3', 1))
    for cannot in (
        [*verify, "--bundle", str(tmp_path / "missing.bundle")],
        [*verify, "--bundle", str(later)],
        [*verify, "--bundle", str(key)],  # not a bundle
        ["audit", "verify", "--trust-key", str(tmp_path / "nothing.pub"), "--bundle", str(bundle)],
        [*verify, "--bundle", str(bundle), "--against", str(tmp_path / "no-copy")],
    ):
        code, out = run(capsys, *cannot)
        assert code == 2 and "INTACT" not in out, (cannot, out)


def test_ebr_verify_returns_the_documented_statuses(
    made: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle, key = made
    code, out = run(capsys, "ebr", "verify", str(bundle), "--trust-key", str(key))
    # an audit bundle: not what ebr verify reads, so it cannot verify it (never "tampered")
    assert code == 2 and "not a batch record" in out and "hmi audit verify --bundle" in out, out
    assert "NOT INTACT" not in out
    for cannot in (
        ["ebr", "verify", str(tmp_path / "missing.bundle")],
        ["ebr", "verify", str(bundle), "--trust-key", str(tmp_path / "nothing.pub")],
    ):
        code, out = run(capsys, *cannot)
        assert code == 2 and "INTACT" not in out, (cannot, out)
