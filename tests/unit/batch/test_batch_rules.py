"""Batch rules that need no PLC: settings, the training gate, the schema's guards, and the
refusals of starting a batch (each recorded in the audit trail)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from hmi.auth.errors import PermissionDenied
from hmi.auth.services import AuthServices
from hmi.auth.tables import user_training
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import BatchNumberInvalid, BatchNumberTaken, BatchStateError, NotTrained
from hmi.batch.model import BatchStatus
from hmi.batch.settings import BatchSettings
from hmi.batch.training import is_trained
from hmi.cli import main
from hmi.clock import ManualClock
from hmi.recipe.errors import RecipeNotFound
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.helpers.audit import outside_engine
from tests.integration.batch.support import (
    RECIPE_ID,
    RECIPE_VERSION,
    People,
    audit_actions,
    auth_services,
    build_engine,
    import_and_approve,
    record_training,
)


def test_settings_validate_patterns_codes_and_lengths() -> None:
    settings = BatchSettings()
    assert settings.batch_number_ok("B-2026-0001") and not settings.batch_number_ok("b 1")
    with pytest.raises(ValidationError, match="regular expression"):
        BatchSettings(batch_number_pattern="([")
    with pytest.raises(ValidationError, match="upper-case"):
        BatchSettings(reason_codes={"bad code": "x"})
    with pytest.raises(ValidationError, match="at least one"):
        BatchSettings(reason_codes={})
    with pytest.raises(ValidationError, match="min_reason_length"):
        BatchSettings(min_reason_length=100, max_reason_length=60)
    with pytest.raises(ValidationError):
        BatchSettings(unknown=1)  # type: ignore[call-arg]


@pytest.fixture
def auth(site: Site) -> AuthServices:
    return auth_services(site)


@pytest.fixture
def people(auth: AuthServices, clock: ManualClock) -> People:
    return People.create(auth, clock)


@pytest.fixture
def recipes(site: Site, auth: AuthServices, people: People) -> RecipeService:
    return import_and_approve(site, auth, people)


@pytest.fixture
def engine(site: Site, auth: AuthServices, recipes: RecipeService) -> BatchEngine:
    return build_engine(site, auth, None)


def test_training_gate_follows_the_latest_record(site: Site, people: People) -> None:
    supervisor = people.login("sup1")
    with site.engine.connect() as conn:
        assert not is_trained(conn, "op1", RECIPE_ID, RECIPE_VERSION)
    record_training(people.auth, supervisor, "op1", RECIPE_ID)
    with site.audit.transaction() as conn:
        assert is_trained(conn, "op1", RECIPE_ID, RECIPE_VERSION)
        conn.execute(
            insert(user_training).values(
                user_id="op1", recipe_id=RECIPE_ID, recipe_version="2", status="withdrawn",
                trained_by="sup1", ts="2026-03-02T09:00:00.000000Z",
            )
        )  # fmt: skip
        assert is_trained(conn, "op1", RECIPE_ID, 3)  # the withdrawal concerns v2 only
        assert not is_trained(conn, "op1", RECIPE_ID, 2)
        assert not is_trained(conn, "op2", RECIPE_ID, 3)


def test_starting_a_batch_checks_number_recipe_training_and_terminal(
    site: Site, engine: BatchEngine, people: People
) -> None:
    operator = people.login("op1")
    with pytest.raises(NotTrained):
        engine.start_batch(operator, RECIPE_ID, RECIPE_VERSION, "B-1001")
    supervisor = people.login("sup1")
    record_training(people.auth, supervisor, "op1", RECIPE_ID)
    operator = people.login("op1")
    with pytest.raises(BatchNumberInvalid):
        engine.start_batch(operator, RECIPE_ID, RECIPE_VERSION, "batch one")
    with pytest.raises(RecipeNotFound):
        engine.start_batch(operator, "NO-SUCH", 1, "B-1001")
    info = engine.start_batch(operator, RECIPE_ID, RECIPE_VERSION, "b-1001")
    assert info.batch_id == "B-1001" and info.status is BatchStatus.RUNNING
    assert info.recipe_sha256 == engine.recipes.get(RECIPE_ID, RECIPE_VERSION).info.sha256
    with pytest.raises(BatchNumberTaken):
        engine.start_batch(operator, RECIPE_ID, RECIPE_VERSION, "B-1001")
    with pytest.raises(BatchStateError, match="still in progress"):
        engine.start_batch(operator, RECIPE_ID, RECIPE_VERSION, "B-1002")
    with pytest.raises(PermissionDenied):
        engine.start_batch(people.login("qa1"), RECIPE_ID, RECIPE_VERSION, "B-1003")
    reasons = [r for a, _e, r in audit_actions(site, "batch.start.refused")]
    assert reasons[0] == "not trained" and reasons[1] == "batch number format"
    assert len(reasons) == 5
    current = engine.current_step("B-1001")
    assert current is not None and (current.index, current.step_id) == (0, "line-clearance")


def test_schema_guards_keep_records_original(
    site: Site, engine: BatchEngine, people: People
) -> None:
    supervisor = people.login("sup1")
    record_training(people.auth, supervisor, "op1", RECIPE_ID)
    engine.start_batch(people.login("op1"), RECIPE_ID, RECIPE_VERSION, "B-2001")
    outside = outside_engine(site)  # another program holding the file: only triggers
    with outside.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO batch_value (batch_id, step_index, step_id, name, value, source,"
                " recorded_by, recorded_at) VALUES ('B-2001', 0, 'line-clearance', 'x', '1',"
                " 'entered', 'op1', '2026-03-02T08:00:00.000000Z')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO batch_step (batch_id, step_index, step_id, kind, status, started_at,"
                " started_by) VALUES ('B-2001', 0, 'line-clearance', 'check', 'completed',"
                " '2026-03-02T08:00:00.000000Z', 'op1')"
            )
        )
    for statement, message in (
        ("UPDATE batch_value SET value = '2'", "append-only"),
        ("DELETE FROM batch_value", "never deleted"),
        ("UPDATE batch_step SET status = 'skipped'", "cannot change"),
        ("DELETE FROM batch", "never deleted"),
    ):
        with pytest.raises(DBAPIError, match=message), outside.begin() as conn:
            conn.execute(text(statement))
    with pytest.raises(IntegrityError), outside.begin() as conn:  # one row per step
        conn.execute(
            text(
                "INSERT INTO batch_step (batch_id, step_index, step_id, kind, status, started_at,"
                " started_by) VALUES ('B-2001', 0, 'line-clearance', 'check', 'completed',"
                " '2026-03-02T08:00:00.000000Z', 'op1')"
            )
        )
    with pytest.raises(IntegrityError), outside.begin() as conn:  # corrections need a why
        conn.execute(
            text(
                "INSERT INTO batch_value (batch_id, step_index, step_id, name, value, source,"
                " recorded_by, recorded_at, replaces_id) VALUES ('B-2001', 0, 'line-clearance',"
                " 'x', '3', 'entered', 'op1', '2026-03-02T08:00:00.000000Z', 1)"
            )
        )


def test_batch_list_command(
    site: Site, engine: BatchEngine, people: People, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["batch", "list", "--data", str(site.data_dir)]) == 0
    assert capsys.readouterr().out.strip() == "no batches"
    supervisor = people.login("sup1")
    record_training(people.auth, supervisor, "op1", RECIPE_ID)
    engine.start_batch(people.login("op1"), RECIPE_ID, RECIPE_VERSION, "B-3001")
    assert main(["batch", "list", "--status", "running", "--data", str(site.data_dir)]) == 0
    line = capsys.readouterr().out
    assert line.startswith("B-3001") and "PARA500-FB v4" in line and "step 1/12" in line
    assert main(["batch", "list", "--status", "released", "--data", str(site.data_dir)]) == 0
    assert capsys.readouterr().out.strip() == "no batches in status released"
    assert main(["batch", "show", "B-3001", "--data", str(site.data_dir)]) == 0
    shown = capsys.readouterr().out
    assert " 1. Line clearance [pending]" in shown and "Deviations (0)" in shown
