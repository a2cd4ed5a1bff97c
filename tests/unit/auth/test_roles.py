"""The permission matrix: one place, segregation of duties, TOTP rules derived from it."""

from __future__ import annotations

import pytest

from hmi.auth.roles import (
    PERMISSIONS,
    PRODUCTION_ACTIONS,
    SIGNATURE_MEANINGS,
    TOTP_ROLES,
    Meaning,
    Role,
    UnknownAction,
    allowed,
    may_sign,
    meaning_requires_totp,
    parse_meaning,
    parse_role,
    role_combination_problems,
    roles_for_action,
    roles_require_totp,
)

LATER_ISSUES_NEED = [
    "batch.start", "batch.step.complete", "batch.hold", "batch.resume", "batch.abort",
    "deviation.reason", "override.request", "override.cosign", "parameter.change",
    "alarm.acknowledge", "alarm.shelve", "service_mode.enter", "recipe.import",
    "recipe.approve", "recipe.retire", "batch.review", "batch.release", "batch.reject",
    "deviation.disposition", "audit.view", "audit.export", "user.manage", "training.record",
]  # fmt: skip


@pytest.mark.parametrize("action", LATER_ISSUES_NEED)
def test_every_action_later_issues_need_is_in_the_matrix(action: str) -> None:
    assert roles_for_action(action), f"{action} has no role at all"


def test_every_meaning_has_signers() -> None:
    assert set(SIGNATURE_MEANINGS) == set(Meaning)
    assert all(SIGNATURE_MEANINGS[m] for m in Meaning)


def test_admin_can_never_execute_sign_or_release_production_records() -> None:
    assert {
        "batch.start",
        "batch.release",
        "recipe.approve",
        "override.cosign",
    } <= PRODUCTION_ACTIONS
    assert not [a for a in PRODUCTION_ACTIONS if allowed(Role.ADMIN, a)]
    assert not [m for m in Meaning if may_sign(Role.ADMIN, m)]
    assert allowed(Role.ADMIN, "user.manage") and allowed(Role.ADMIN, "config.change")


def test_only_admin_manages_accounts_and_configuration() -> None:
    assert roles_for_action("user.manage") == {Role.ADMIN}
    assert roles_for_action("config.change") == {Role.ADMIN}


def test_viewer_is_read_only() -> None:
    viewer_actions = {a for a in PERMISSIONS if allowed(Role.VIEWER, a)}
    assert viewer_actions == {"batch.view", "recipe.view", "audit.view"}
    assert not [m for m in Meaning if may_sign(Role.VIEWER, m)]


def test_quality_decisions_belong_to_qa_and_cosigning_to_supervisor_or_qa() -> None:
    for action in ("recipe.approve", "batch.release", "batch.reject", "deviation.disposition"):
        assert roles_for_action(action) == {Role.QA}
    assert SIGNATURE_MEANINGS[Meaning.COSIGNED] == {Role.SUPERVISOR, Role.QA}
    assert SIGNATURE_MEANINGS[Meaning.RELEASED] == {Role.QA}
    assert not may_sign(Role.OPERATOR, Meaning.VERIFIED)


def test_totp_is_needed_by_privileged_roles_and_privileged_meanings() -> None:
    assert {Role.SUPERVISOR, Role.MAINTENANCE, Role.QA, Role.ADMIN} == TOTP_ROLES
    assert roles_require_totp([Role.OPERATOR, Role.QA])
    assert not roles_require_totp([Role.OPERATOR, Role.VIEWER])
    assert not meaning_requires_totp(Meaning.PERFORMED)
    assert not meaning_requires_totp("requested")
    for meaning in (
        Meaning.VERIFIED,
        Meaning.COSIGNED,
        Meaning.APPROVED,
        Meaning.RELEASED,
        Meaning.REJECTED,
        Meaning.REVIEWED,
        Meaning.AUDIT_TRAIL_REVIEWED,
    ):
        assert meaning_requires_totp(meaning), meaning


def test_unknown_actions_and_names_are_errors_not_refusals() -> None:
    with pytest.raises(UnknownAction):
        allowed(Role.QA, "batch.relase")
    with pytest.raises(ValueError, match="valid roles"):
        parse_role("superuser")
    with pytest.raises(ValueError, match="valid"):
        parse_meaning("witnessed-ish")
    assert parse_role(" QA ") is Role.QA
    assert Meaning.AUDIT_TRAIL_REVIEWED.label == "Audit trail reviewed"


def test_role_combinations_keep_admin_apart_from_production() -> None:
    assert role_combination_problems([Role.SUPERVISOR, Role.QA]) == []
    assert role_combination_problems([Role.ADMIN, Role.VIEWER]) == []
    problems = role_combination_problems([Role.ADMIN, Role.QA])
    assert problems and "segregation of duties" in problems[0]
    assert role_combination_problems([]) == ["an account needs at least one role"]
