"""Property tests of verification on chains built in memory: random chains verify, and any
single-character change to any stored field of any row is caught at that row."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.audit import canonical
from hmi.audit.chain import seal_event
from hmi.audit.hashing import GENESIS_PREV_HASH
from hmi.audit.keys import Signer
from hmi.audit.verify import ROW_FIELDS, Row, verify_rows

SIGNER = Signer(Ed25519PrivateKey.generate())
TRUSTED = {SIGNER.key_id: SIGNER.public}

event_content = st.fixed_dictionaries(
    {
        "actor_id": st.text(min_size=1, max_size=8),
        "actor_role": st.sampled_from(["operator", "qa", "system"]),
        "action": st.sampled_from(["batch.step.completed", "auth.login.failed", "plc.write"]),
        "reason": st.one_of(st.none(), st.text(max_size=20)),
        "new_value": st.one_of(st.none(), st.text(max_size=10)),
        "details": st.dictionaries(
            st.text(max_size=5), st.integers(-1000, 1000) | st.text(max_size=5), max_size=4
        ),
    }
)


def build_chain(contents: list[dict[str, object]]) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS_PREV_HASH
    genesis = {
        "ts": "2026-01-01T00:00:00.000000Z", "actor_id": "system", "actor_role": "system",
        "action": "audit.chain.started",
        "entity_type": "terminal", "entity_id": "T1",
        "details": canonical.dumps({
            "algorithm": "ed25519", "key_id": SIGNER.key_id,
            "public_key": SIGNER.public.raw.hex(), "software_version": "1.0", "terminal_id": "T1",
        }),
    }  # fmt: skip
    for seq, content in enumerate([genesis, *contents], start=1):
        fields = dict(content)
        fields["ts"] = f"2026-01-01T{seq // 3600:02d}:{seq // 60 % 60:02d}:{seq % 60:02d}.000000Z"
        if isinstance(fields.get("details"), dict):
            fields["details"] = canonical.dumps(fields["details"])
        sealed = seal_event(SIGNER, "T1", seq, prev, fields)
        rows.append(tuple(sealed[name] for name in ROW_FIELDS))
        prev = sealed["row_hash"]
    return rows


@given(st.lists(event_content, min_size=0, max_size=15))
@settings(max_examples=60, deadline=None)
def test_random_chains_verify(contents: list[dict[str, object]]) -> None:
    report = verify_rows(build_chain(contents), trusted=TRUSTED, workers=1)
    assert report.ok, report.problems
    assert report.rows_checked == len(contents) + 1


@given(
    st.lists(event_content, min_size=1, max_size=10),
    st.data(),
)
@settings(max_examples=150, deadline=None)
def test_any_single_character_change_is_caught(
    contents: list[dict[str, object]], data: st.DataObject
) -> None:
    rows = build_chain(contents)
    index = data.draw(st.integers(0, len(rows) - 1))
    candidates = [i for i, v in enumerate(rows[index]) if isinstance(v, str) and v]
    column = data.draw(st.sampled_from(candidates))
    value = rows[index][column]
    position = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.characters(codec="utf-8").filter(lambda c: c != value[position]))
    changed = value[:position] + replacement + value[position + 1 :]
    tampered = list(rows)
    tampered[index] = (*rows[index][:column], changed, *rows[index][column + 1 :])
    report = verify_rows(tampered, trusted=TRUSTED, workers=1)
    assert not report.ok
    seq = rows[index][1]
    assert any(p.seq in (seq, seq + 1) or p.terminal != "T1" for p in report.problems), (
        ROW_FIELDS[column],
        report.problems,
    )


def test_seq_change_is_caught() -> None:
    rows = build_chain(
        [{"actor_id": "a", "actor_role": "operator", "action": "plc.write", "details": {}}] * 3
    )
    tampered = list(rows)
    tampered[2] = (*rows[2][:1], 7, *rows[2][2:])
    assert not verify_rows(tampered, trusted=TRUSTED, workers=1).ok


def test_parallel_and_serial_agree() -> None:
    contents = [
        {"actor_id": f"u{i}", "actor_role": "operator", "action": "plc.write", "details": {"i": i}}
        for i in range(5000)
    ]
    rows = build_chain(contents)
    tampered = list(rows)
    tampered[4321] = (*rows[4321][:12], "bad reason", *rows[4321][13:])
    serial = verify_rows(tampered, trusted=TRUSTED, workers=1)
    parallel = verify_rows(tampered, trusted=TRUSTED, workers=2)
    assert [p.to_json() for p in serial.problems] == [p.to_json() for p in parallel.problems]
    assert {(p.kind.value, p.seq) for p in parallel.problems} == {("modified", 4322)}
