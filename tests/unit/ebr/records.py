"""Batch records built in memory (the PDF renderer's input), for layout tests without a site."""

from __future__ import annotations

from hmi.ebr.model import (
    Alarm,
    AuditEvent,
    Change,
    Deviation,
    EbrRecord,
    EventRef,
    Header,
    PlcCommand,
    RecipeContent,
    SignatureEntry,
    Step,
    Summary,
    Value,
    Verification,
)

UNICODE_NAMES = (
    "Zoë Ångström-Øvergård",
    "Łukasz Żółkiewski-Brzęczyszczykiewicz",
    "Дмитрий Иванович Менделеев",
    "Ελένη Παπαδοπούλου",
    "José María Núñez de Balboa y Pérez",
)
LONG_WORD = "LOT" + "0123456789ABCDEF" * 12  # 195 characters without a space


def long_text(n: int, seed: str) -> str:
    words = [f"{seed}{i}" for i in range(n)]
    return " ".join(words)


def ts(minute: int) -> str:
    return f"2026-03-02T{7 + minute // 60:02d}:{minute % 60:02d}:00.000000Z"


def sample_record(*, steps: int = 60, values_per_step: int = 4, events: int = 300) -> EbrRecord:
    """Many steps, very long texts, unbreakable words and names in several scripts."""
    step_list = []
    values = []
    signatures = []
    value_id = 0
    for index in range(steps):
        who = UNICODE_NAMES[index % len(UNICODE_NAMES)]
        sig_id = f"sig{index:04d}"
        signatures.append(
            SignatureEntry(
                signature_id=sig_id,
                record_type="batch_step",
                record_id=f"B-2026-0042/step-{index}",
                record_sha256="ab" * 32,
                meaning="performed",
                meaning_label="Performed",
                signer_id=f"user{index % 5}",
                signer_name=who,
                signer_role="operator",
                signed_at=ts(index),
                session_id="s-1",
                terminal_id="KIOSK-01",
                components=("password",),
                cosign_of=None,
                binding_sha256="cd" * 32,
                manifestation=f"{who} (user{index % 5}) - Performed - 2026-03-02"
                f" 08:{index % 60:02d}:00 +01:00 (UTC 2026-03-02 07:00:00)",
                valid=True,
                problems=(),
                event=EventRef(terminal_id="KIOSK-01", seq=index + 2),
            )
        )
        step_list.append(
            Step(
                index=index,
                step_id=f"step-{index}",
                title=f"Step {index} – {who}"
                + (" " + long_text(60, "title") if index == 3 else ""),
                kind="charge",
                status="completed",
                instruction=long_text(200, "instr") if index % 10 == 0 else None,
                started_at=ts(index),
                started_by="user1",
                completed_at=ts(index + 1),
                performed_by="user1",
                deviation_id=None,
                signature_ids=(sig_id,),
            )
        )
        for k in range(values_per_step):
            value_id += 1
            values.append(
                Value(
                    value_id=value_id,
                    step_index=index,
                    step_id=f"step-{index}",
                    name=f"value_{k}" if k else LONG_WORD,
                    value=f"{index}.{k}5" if k else LONG_WORD,
                    unit="kg",
                    source="entered",
                    low="1.0",
                    high="999.9",
                    in_limits=True,
                    recorded_by=UNICODE_NAMES[k % len(UNICODE_NAMES)],
                    recorded_at=ts(index + 1),
                    replaces_id=value_id - 1 if (k == 2 and index == 5) else None,
                    reason=long_text(400, "why") if (k == 2 and index == 5) else None,
                    replaced_by=None,
                    late=False,
                    event=None,
                )
            )
    deviations = (
        Deviation(
            deviation_id="B-2026-0042-D01",
            seq=1,
            step_index=5,
            step_id="step-5",
            kind="out_of_tolerance",
            kind_label="value out of tolerance",
            parameter="quantity",
            expected="0.882..0.918",
            actual="0.80",
            unit="kg",
            critical=True,
            description=long_text(150, "descr"),
            opened_at=ts(6),
            opened_by="user1",
            ended_at=None,
            requires_cosign=True,
            status="closed",
            reason_code="MATERIAL",
            reason_text=long_text(3000, "reason") + " " + LONG_WORD,
            reason_by="user1",
            reason_at=ts(7),
            request_signature_id="sig0001",
            cosign_signature_id="sig0002",
            cosigned_by="user2",
            cosigned_at=ts(8),
            disposition="accepted",
            disposition_comment=long_text(100, "dispo"),
            disposition_by="qa1",
            disposition_at=ts(9),
            alarm_id=None,
            event=None,
        ),
    )
    events_list = tuple(
        AuditEvent(
            terminal_id="KIOSK-01",
            seq=n,
            ts=ts(n % 600),
            actor_id="user1",
            actor_role="operator",
            action="batch.step.completed",
            entity_type="batch",
            entity_id="B-2026-0042",
            field="current_step",
            old_value=str(n),
            new_value=str(n + 1),
            reason=long_text(80, "evreason") if n == 7 else None,
            meaning=None,
            row_hash="ef" * 32,
        )
        for n in range(1, events + 1)
    )
    header = Header(
        site="Usine de Lyon – Bâtiment Ü",
        line="Ligne 3 (mélangeur V)",
        terminal_id="KIOSK-01",
        batch_id="B-2026-0042",
        product="Paracétamol 500 mg – " + long_text(30, "product"),
        recipe_id="PARA500-FB",
        recipe_name="Paracetamol final blend",
        recipe_version=3,
        recipe_sha256="12" * 32,
        status="released",
        step_count=steps,
        current_step=steps,
        started_by="user1",
        started_at=ts(0),
        completed_at=ts(steps + 1),
        aborted_by=None,
        aborted_at=None,
        hold_reason=None,
        reviewed_by="qa1",
        reviewed_at=ts(steps + 2),
        reviewed_sha256="34" * 32,
        decided_by="qa1",
        decided_at=ts(steps + 3),
        decision_reason=None,
        started_event=EventRef(terminal_id="KIOSK-01", seq=1),
    )
    summary = Summary(
        deviations=1,
        critical_deviations=1,
        open_deviations=0,
        undispositioned_deviations=0,
        overrides=0,
        alarms=1,
        late_entries=0,
        changed_values=1,
        signatures=len(signatures),
        signatures_by_meaning={"performed": len(signatures)},
        plc_commands_without_result=0,
        verification=Verification(
            chain_ok=True,
            chain_problems=(),
            events_checked=events,
            signatures_valid=len(signatures),
            signatures_invalid=0,
        ),
    )
    return EbrRecord(
        header=header,
        recipe=RecipeContent(
            recipe_id="PARA500-FB", version=3, sha256="12" * 32, text="", canonical_json="{}"
        ),
        steps=tuple(step_list),
        values=tuple(values),
        changes=(
            Change(
                value_id=23,
                replaces_id=22,
                step_id="step-5",
                name="value_2",
                old="5.15",
                new="5.25",
                unit="kg",
                changed_by=UNICODE_NAMES[1],
                changed_at=ts(30),
                reason=long_text(400, "why"),
            ),
        ),
        deviations=deviations,
        signatures=tuple(signatures),
        alarms=(
            Alarm(
                alarm_id=1,
                code="LOADCELL_DRIFT",
                source="plc",
                severity=500,
                message=long_text(50, "alarm"),
                terminal_id="KIOSK-01",
                raised_at=ts(3),
                cleared_at=ts(4),
                acknowledged_at=ts(4),
                acknowledged_by=UNICODE_NAMES[0],
                shelved_at=None,
                shelved_by=None,
                shelved_until=None,
                shelve_reason=None,
                step_index=2,
            ),
        ),
        plc_commands=(
            PlcCommand(
                command_id=1,
                step_index=3,
                command="write",
                arguments='{"tag":"speed_setpoint","value":"12"}',
                intent_at=ts(3),
                intent_by="user1",
                result="ok",
                result_detail="confirmed 12.0",
                result_at=ts(3),
            ),
        ),
        events=events_list,
        summary=summary,
        assembled_at=ts(100),
        assembled_by=UNICODE_NAMES[2],
    )
