"""``hmi recipes``: the real command in-process, credentials fed on standard input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from hmi.auth.totp import code_for_step, step_at
from hmi.cli import main
from hmi.clock import ManualClock
from hmi.site import Site
from tests.integration.recipe.conftest import People, Person
from tests.integration.recipe.helpers import assert_chain_intact, event_count, events, version_rows

BROKEN = Path(__file__).resolve().parents[2] / "unit" / "recipe" / "broken"
FINAL_BLEND = "paracetamol-final-blend.toml"


@pytest.fixture(autouse=True)
def frozen_site_clock(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> None:
    """The command opens the site with the test's clock, so TOTP codes are deterministic."""
    monkeypatch.setattr("hmi.site.SystemClock", lambda: clock)


def run(site: Site, monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["recipes", *argv, "--data", str(site.data_dir)])


def login_lines(people: People, person: Person) -> str:
    return f"{person.user_id}\n{person.password}\n{people.code(person)}\n"


def import_final_blend(
    site: Site, monkeypatch: pytest.MonkeyPatch, people: People, recipe_dir: Path
) -> None:
    stdin = login_lines(people, people.supervisor)
    assert run(site, monkeypatch, "import", str(recipe_dir / FINAL_BLEND), stdin=stdin) == 0


def test_validate_reports_every_problem_and_exits_2(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    recipe_dir: Path,
) -> None:
    assert run(site, monkeypatch, "validate", *map(str, sorted(recipe_dir.glob("*.toml")))) == 0
    assert capsys.readouterr().out.count(": valid: ") == 3
    assert run(site, monkeypatch, "validate", str(BROKEN / "limits.toml")) == 2
    err = capsys.readouterr().err
    assert "limits.toml: parameter 'blend_speed', field 'low': low 14 is above high 10" in err
    assert "limits.toml: step 'bu' (#3), field 'low'" in err


def test_invalid_file_is_refused_before_any_login_and_touches_nothing(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    people: People,
    recipe_dir: Path,
) -> None:
    before = event_count(site)
    files = [str(recipe_dir / FINAL_BLEND), str(BROKEN / "segregation.toml")]
    assert run(site, monkeypatch, "import", *files, stdin="") == 2
    err = capsys.readouterr().err
    assert "segregation.toml: step 'admin-sign' (#3), field 'role'" in err
    assert "1 of 2 file(s) are not valid; nothing was stored" in err
    assert version_rows(site) == [] and event_count(site) == before


def test_import_approve_list_show_diff_retire(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    people: People,
    clock: ManualClock,
    recipe_dir: Path,
) -> None:
    import_final_blend(site, monkeypatch, people, recipe_dir)
    assert "imported PARA500-FB v4 as a draft" in capsys.readouterr().out
    assert version_rows(site)[0]["imported_by"] == "sup1"

    qa = people.qa
    login = login_lines(people, qa)
    assert qa.totp_secret is not None
    signing_code = code_for_step(qa.totp_secret, step_at(clock.now()) + 1)
    stdin = f"{login}I agree\nqa1\n{qa.password}\n{signing_code}\n"
    assert run(site, monkeypatch, "approve", "PARA500-FB", "4", stdin=stdin) == 0
    out = capsys.readouterr().out
    assert "PARA500-FB v4 is now effective." in out
    assert "Quinn Quality (qa1) - Approved" in out
    assert version_rows(site)[0]["status"] == "effective"

    path = recipe_dir / FINAL_BLEND
    path.write_text(
        path.read_text(encoding="utf-8").replace("setpoint = 12", "setpoint = 14"),
        encoding="utf-8",
    )
    assert run(site, monkeypatch, "list", "--check", str(recipe_dir)) == 1
    out = capsys.readouterr().out
    assert "changed, not approved" in out and "effective" in out
    assert "not imported" in out  # the two other shipped recipes

    assert run(site, monkeypatch, "show", "PARA500-FB") == 0
    out = capsys.readouterr().out
    assert "status" in out and "effective" in out and "blend_speed: 12 rpm (10..14) CRITICAL" in out
    assert run(site, monkeypatch, "show", "PARA500-FB", "4", "--text") == 0
    assert "setpoint = 12" in capsys.readouterr().out  # the stored copy, not the edited file

    assert run(site, monkeypatch, "diff", "PARA500-FB", "4", "4") == 0
    assert "identical texts" in capsys.readouterr().out

    clock.advance(30)  # past the step of the signing code
    stdin = login_lines(people, qa)
    assert run(site, monkeypatch, "retire", "PARA500-FB", "4", "--reason", "superseded by MBR-7",
               stdin=stdin) == 0  # fmt: skip
    assert "is retired" in capsys.readouterr().out
    assert [e["action"] for e in events(site)] == [
        "recipe.imported", "recipe.approved", "recipe.retired"
    ]  # fmt: skip
    assert_chain_intact(site)


def test_operator_cannot_import_from_the_command_line(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    people: People,
    recipe_dir: Path,
) -> None:
    stdin = f"op1\n{people.operator.password}\n"
    assert run(site, monkeypatch, "import", str(recipe_dir / FINAL_BLEND), stdin=stdin) == 1
    assert "may not do 'recipe.import'" in capsys.readouterr().err
    assert version_rows(site) == []
    assert events(site, "auth.permission.denied")[0]["actor_id"] == "op1"


def test_conflicting_reimport_exits_1(
    site: Site,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    people: People,
    recipe_dir: Path,
) -> None:
    import_final_blend(site, monkeypatch, people, recipe_dir)
    path = recipe_dir / FINAL_BLEND
    path.write_text(path.read_text(encoding="utf-8").replace("0.90", "0.95"), encoding="utf-8")
    stdin = login_lines(people, people.supervisor)
    assert run(site, monkeypatch, "import", str(path), stdin=stdin) == 1
    assert "with different content" in capsys.readouterr().err
    assert len(events(site, "recipe.import.refused")) == 1
