"""Training records (11.10(i)): recorded by a supervisor or QA, never by oneself, withdrawable,
version-specific or for all versions, every case audited."""

from __future__ import annotations

import pytest

from hmi.auth.errors import InvalidUserInput, PermissionDenied, UnknownUser

from .conftest import World


def test_supervisor_records_training_for_all_versions_or_one(world: World) -> None:
    world.add_user("olga")
    world.add_user("sam")
    sam = world.login("sam")
    world.trail.mark()
    training = world.auth.training
    assert not training.is_trained("olga", "PARA500-FB", 4)
    training.record(sam, "olga", "PARA500-FB", evidence="SOP-BL-012 classroom, 2026-02-20")
    assert training.is_trained("olga", "PARA500-FB", 4)
    assert training.is_trained("olga", "PARA500-FB", 4)
    assert not training.is_trained("olga", "IBU200-PB", 1)
    training.record(sam, "olga", "IBU200-PB", version=1, evidence="on-the-job, batch IBU-0007")
    assert training.is_trained("olga", "IBU200-PB", 1)
    assert not training.is_trained("olga", "IBU200-PB", 2)
    events = world.trail.expect("training.recorded", "training.recorded")
    assert events[0]["actor_id"] == "sam" and events[0]["entity_id"] == "olga"
    assert events[0]["reason"] == "SOP-BL-012 classroom, 2026-02-20"
    assert events[1]["new_value"] == "trained (v1)"


def test_withdrawn_training_closes_the_gate(world: World) -> None:
    world.add_user("olga")
    world.add_user("quinn")
    quinn = world.login("quinn")
    training = world.auth.training
    training.record(quinn, "olga", "PARA500-FB", evidence="SOP-BL-012 classroom")
    world.trail.mark()
    training.record(
        quinn, "olga", "PARA500-FB", evidence="retraining due after deviation", withdraw=True
    )
    assert not training.is_trained("olga", "PARA500-FB", 4)
    world.trail.expect("training.withdrawn")
    assert [r.status for r in training.history("olga")] == ["trained", "withdrawn"]


def test_refusals_are_recorded(world: World) -> None:
    world.add_user("olga")
    world.add_user("otto")
    world.add_user("sam")
    olga = world.login("olga")
    world.trail.mark()
    with pytest.raises(PermissionDenied):
        world.auth.training.record(olga, "otto", "PARA500-FB", evidence="peer said so")
    world.trail.expect("auth.permission.denied")
    sam = world.login("sam")
    world.trail.mark()
    with pytest.raises(PermissionDenied, match="own training"):
        world.auth.training.record(sam, "sam", "PARA500-FB", evidence="I read the SOP")
    world.trail.expect("training.record.refused")
    with pytest.raises(UnknownUser):
        world.auth.training.record(sam, "nobody", "PARA500-FB", evidence="SOP-BL-012")
    with pytest.raises(InvalidUserInput, match="say what the training was"):
        world.auth.training.record(sam, "olga", "PARA500-FB", evidence="ok")
    assert not world.auth.training.is_trained("olga", "PARA500-FB", 4)
