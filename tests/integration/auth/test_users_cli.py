"""``hmi init`` (first administrator) and ``hmi users`` as an administrator uses them.

Prompts are answered by a scripted terminal; the site's clock is a ManualClock so TOTP codes
are deterministic; credentials are never command-line arguments.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from hmi.audit.tables import audit_event
from hmi.auth.accounts import UserStatus
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import build_auth_services
from hmi.auth.totp import code_at, new_secret
from hmi.cli import main
from hmi.clock import ManualClock
from hmi.site import Site, open_site

from .conftest import chain_verifies

ADMIN_PASSWORD = "violet tractor seventeen"
Answer = str | Callable[[], str]


@dataclass
class Terminal:
    """Answers prompts in the expected order; fails on any unexpected question."""

    script: list[tuple[str, Answer]] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def answer(self, prompt: str) -> str:
        self.asked.append(prompt)
        assert self.script, f"unexpected prompt {prompt!r}"
        expected, value = self.script.pop(0)
        assert prompt.startswith(expected), f"asked {prompt!r}, expected {expected!r}"
        return value() if callable(value) else value

    def expect(self, *pairs: tuple[str, Answer]) -> None:
        self.script.extend(pairs)


@dataclass
class Cli:
    data: Path
    clock: ManualClock
    terminal: Terminal
    admin_secret: str

    def code(self, secret: str | None = None) -> str:
        self.clock.advance(30)
        return code_at(secret or self.admin_secret, self.clock.now())

    def as_admin(self) -> None:
        self.terminal.expect(
            ("Administrator user ID", "ada"),
            ("Password", ADMIN_PASSWORD),
            ("Authenticator code", lambda: self.code()),
        )

    def run(self, *argv: str) -> int:
        code = main([*argv, "--data", str(self.data)])
        assert not self.terminal.script, f"prompts not asked: {self.terminal.script}"
        return code


def _all_events(site: Site) -> list[dict[str, object]]:
    with site.engine.connect() as conn:
        rows = conn.execute(select(audit_event).order_by(audit_event.c.seq)).mappings()
        return [dict(r) for r in rows]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    term = Terminal()
    monkeypatch.setattr("hmi.commands.users.ask", term.answer)
    monkeypatch.setattr("hmi.commands.users.ask_secret", term.answer)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    return term


@pytest.fixture
def site_clock(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> ManualClock:
    monkeypatch.setattr("hmi.site.SystemClock", lambda: clock)
    return clock


def init_args(data: Path, secret_file: Path, password_file: Path, code: str) -> list[str]:
    return [
        "init",
        "--data",
        str(data),
        "--site-name",
        "Plant A",
        "--admin-id",
        "Ada",
        "--admin-name",
        "Ada Admin",
        "--admin-password-file",
        str(password_file),
        "--admin-identity-verified-by",
        "HR officer P. Reyes",
        "--admin-identity-method",
        "passport checked",
        "--admin-totp-secret-file",
        str(secret_file),
        "--admin-totp-code",
        code,
    ]


@pytest.fixture
def cli(tmp_path: Path, site_clock: ManualClock, terminal: Terminal) -> Iterator[Cli]:
    """A site made by ``hmi init`` with flags, its argon2 cost lowered to the product floor."""
    secret = new_secret()
    (tmp_path / "totp").write_text(secret + "\n")
    (tmp_path / "pw").write_text(ADMIN_PASSWORD + "\n")
    data = tmp_path / "site"
    assert (
        main(init_args(data, tmp_path / "totp", tmp_path / "pw", code_at(secret, site_clock.now())))
        == 0
    )
    config = data / "hmi.toml"
    text = config.read_text()
    text = text.replace("argon2_time_cost = 3", "argon2_time_cost = 2")
    text = text.replace("argon2_memory_kib = 65536", "argon2_memory_kib = 19456")
    config.write_text(text)
    yield Cli(data, site_clock, terminal, secret)
    site = open_site(data, clock=site_clock)
    chain_verifies(site)
    site.close()


def test_init_with_flags_creates_the_site_and_the_first_admin(
    tmp_path: Path, site_clock: ManualClock, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = new_secret()
    (tmp_path / "totp").write_text(secret)
    (tmp_path / "pw").write_text(ADMIN_PASSWORD)
    data = tmp_path / "site"
    assert (
        main(init_args(data, tmp_path / "totp", tmp_path / "pw", code_at(secret, site_clock.now())))
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "Created site 'Plant A'" in out and "Created the first administrator ada (Ada Admin)" in out
    )
    site = open_site(data, clock=site_clock)
    try:
        events = _all_events(site)
        assert [e["action"] for e in events] == [
            "audit.chain.started",
            "audit.key.enrolled",
            "site.initialised",
            "user.created",
            "user.totp.enrolled",
        ]
        created = json.loads(str(events[3]["details"]))
        assert created["first_admin"] is True and created["identity_method"] == "passport checked"
        assert created["mode"] == "scripted"
        auth = build_auth_services(site.settings, site.engine, site.audit, site_clock)
        admin = auth.store.load("ada")
        assert (
            admin is not None
            and admin.totp_active
            and admin.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=1$")
        )  # the product parameters
        chain_verifies(site)
    finally:
        site.close()
    assert main(init_args(data, tmp_path / "totp", tmp_path / "pw", "123456")) == 2
    assert "already exists" in capsys.readouterr().err


def test_init_without_a_terminal_creates_the_site_only_then_resumes(
    tmp_path: Path, site_clock: ManualClock, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "site"
    assert main(["init", "--data", str(data)]) == 0
    assert "No administrator created" in capsys.readouterr().out
    assert main(["init", "--data", str(data)]) == 2  # nothing to do: refused as before
    assert "already exists" in capsys.readouterr().err
    secret = new_secret()
    (tmp_path / "totp").write_text(secret)
    (tmp_path / "pw").write_text(ADMIN_PASSWORD)
    site_clock.advance(60)
    assert (
        main(init_args(data, tmp_path / "totp", tmp_path / "pw", code_at(secret, site_clock.now())))
        == 0
    )
    assert "has no administrator yet" in capsys.readouterr().out
    site = open_site(data, clock=site_clock)
    try:
        assert [e["action"] for e in _all_events(site)][-2:] == [
            "user.created",
            "user.totp.enrolled",
        ]
        chain_verifies(site)
    finally:
        site.close()


def test_init_checks_the_admin_flags_before_creating_anything(
    tmp_path: Path, site_clock: ManualClock, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "totp").write_text(new_secret())
    (tmp_path / "pw").write_text("password1")
    data = tmp_path / "site"
    assert main(init_args(data, tmp_path / "totp", tmp_path / "pw", "123456")) == 2
    assert "administrator password not accepted" in capsys.readouterr().err
    (tmp_path / "totp").write_text("JBSWY3DPEHPK3PXP")
    (tmp_path / "pw").write_text(ADMIN_PASSWORD)
    assert main(init_args(data, tmp_path / "totp", tmp_path / "pw", "123456")) == 2
    assert "160 bits" in capsys.readouterr().err
    assert not data.exists()


def test_init_with_a_wrong_code_leaves_a_site_to_resume(
    tmp_path: Path, site_clock: ManualClock, terminal: Terminal, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = new_secret()
    (tmp_path / "totp").write_text(secret)
    (tmp_path / "pw").write_text(ADMIN_PASSWORD)
    data = tmp_path / "site"
    wrong = "000000" if code_at(secret, site_clock.now()) != "000000" else "111111"
    assert main(init_args(data, tmp_path / "totp", tmp_path / "pw", wrong)) == 1
    assert "run 'hmi init --data" in capsys.readouterr().err
    site = open_site(data, clock=site_clock)
    try:
        assert [e["action"] for e in _all_events(site)][-1] == "user.totp.enrolment_failed"
        chain_verifies(site)
    finally:
        site.close()


def test_init_interactively_on_a_terminal(
    tmp_path: Path,
    site_clock: ManualClock,
    terminal: Terminal,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = new_secret()
    monkeypatch.setattr("hmi.auth.totp.new_secret", lambda: secret)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    wrong = "000000" if code_at(secret, site_clock.now()) != "000000" else "111111"
    terminal.expect(
        ("Full name", "Ada Admin"),
        ("User ID", "ada"),
        ("Who verified", "HR officer P. Reyes"),
        ("How was the identity", "passport checked"),
        ("Password", "ada admin 1"),
        ("Password", ADMIN_PASSWORD),
        ("Repeat", ADMIN_PASSWORD),
        ("Code shown", wrong),
        ("Code shown", lambda: code_at(secret, site_clock.now())),
    )
    data = tmp_path / "site"
    assert main(["init", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert (
        "not accepted" in out
        and "Key: " + " ".join(secret[i : i + 4] for i in range(0, 32, 4)) in out
    )
    assert "Created the first administrator ada (Ada Admin)" in out
    site = open_site(data, clock=site_clock)
    try:
        actions = [e["action"] for e in _all_events(site)]
        assert actions[-3:] == ["user.totp.enrolment_failed", "user.created", "user.totp.enrolled"]
        chain_verifies(site)
    finally:
        site.close()


def test_users_commands_record_the_acting_admin_and_reason(
    cli: Cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = cli.terminal
    cli.as_admin()
    t.expect(
        ("Temporary password", "granite penguin umbrella seven"),
        ("Repeat", "granite penguin umbrella seven"),
    )
    assert (
        cli.run(
            "users",
            "add",
            "Olga",
            "--name",
            "Olga Operator",
            "--role",
            "operator",
            "--identity-verified-by",
            "HR",
            "--identity-method",
            "badge photo",
            "--reason",
            "new starter",
        )
        == 0
    )
    assert "Created olga (Olga Operator), roles: operator" in capsys.readouterr().out

    sam_secret = new_secret()
    monkeypatch.setattr("hmi.auth.users.new_secret", lambda: sam_secret)
    cli.as_admin()
    t.expect(
        ("Temporary password", "Kw9#pLm2vQ"),
        ("Repeat", "Kw9#pLm2vQ"),
        ("Code shown", lambda: cli.code(sam_secret)),
    )
    assert (
        cli.run(
            "users",
            "add",
            "sam",
            "--name",
            "Sam Supervisor",
            "--role",
            "supervisor",
            "--identity-verified-by",
            "HR",
            "--identity-method",
            "badge photo",
            "--enroll-totp",
            "--reason",
            "new shift lead",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Key: " in out and "Authenticator enrolled for sam" in out

    assert cli.run("users", "list") == 0  # reads only: no login, nothing recorded
    out = capsys.readouterr().out
    assert "olga" in out and "Sam Supervisor" in out and "3 account(s)" in out

    cli.as_admin()
    t.expect(("Reason", "forgot her password"))
    assert cli.run("users", "reset-password", "olga", "--generate-password") == 0
    out = capsys.readouterr().out
    temporary = re.search(r"shown once.*: (\S+)", out)
    assert temporary is not None and "must be changed at the next login" in out

    cli.as_admin()
    assert (
        cli.run(
            "users",
            "set-roles",
            "olga",
            "--role",
            "operator",
            "--role",
            "viewer",
            "--reason",
            "reads the audit trail too",
        )
        == 0
    )
    cli.as_admin()
    assert cli.run("users", "revoke-totp", "sam", "--reason", "phone lost") == 0
    cli.as_admin()
    assert cli.run("users", "disable", "olga", "--reason", "left the company") == 0
    cli.as_admin()
    assert cli.run("users", "show", "olga") == 0
    out = capsys.readouterr().out
    assert re.search(r"status:\s+disabled", out) and "badge photo" in out

    site = open_site(cli.data, clock=cli.clock)
    try:
        events = _all_events(site)
        changes = [
            e for e in events if str(e["action"]).startswith("user.") and e["actor_id"] == "ada"
        ]
        assert [e["action"] for e in changes] == [
            "user.created",
            "user.created",
            "user.totp.enrolment_started",
            "user.totp.enrolled",
            "user.password.reset",
            "user.roles.changed",
            "user.totp.revoked",
            "user.disabled",
        ]
        reasons = {e["action"]: e["reason"] for e in changes}
        assert reasons["user.password.reset"] == "forgot her password"
        assert reasons["user.disabled"] == "left the company"
        assert sum(1 for e in events if e["action"] == "auth.password.rehashed") == 1
        assert ADMIN_PASSWORD not in json.dumps([str(e) for e in events])
    finally:
        site.close()


def test_unlock_and_access_review(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    site = open_site(cli.data, clock=cli.clock)
    auth = build_auth_services(
        site.settings, site.engine, site.audit, cli.clock, argon2=Argon2Parameters(1, 8, 1)
    )
    cli.clock.advance(30)
    admin = auth.sessions.login("ada", ADMIN_PASSWORD, code_at(cli.admin_secret, cli.clock.now()))
    from hmi.auth.users import IdentityVerification

    auth.users.create_user(
        admin,
        user_id="otto",
        full_name="Otto Operator",
        roles=["operator"],
        password="copper walrus lantern nineteen",
        identity=IdentityVerification("HR", "badge"),
        reason="new starter",
    )
    auth.sessions.logout(admin)
    for _ in range(5):
        with pytest.raises(Exception, match="not correct"):
            auth.sessions.login("otto", "wrong wrong wrong wrong")
    site.close()

    cli.as_admin()
    assert cli.run("users", "unlock", "otto", "--reason", "identity confirmed") == 0
    assert "Unlocked otto." in capsys.readouterr().out
    cli.as_admin()
    assert cli.run("users", "review", "--json") == 0
    review = json.loads(capsys.readouterr().out)
    rows = {r["user_id"]: r for r in review["users"]}
    assert review["generated_by"] == "ada" and set(rows) == {"ada", "otto"}
    assert rows["otto"]["status"] == "active" and rows["otto"]["failed_count"] == 0
    assert rows["ada"]["totp"] == "active" and rows["ada"]["last_login_at"] is not None
    assert rows["otto"]["identity_verified_by"] == "HR" and rows["otto"]["password_age_days"] == 0
    cli.as_admin()
    assert cli.run("users", "review") == 0
    assert "Access review: Plant A" in capsys.readouterr().out
    site = open_site(cli.data, clock=cli.clock)
    try:
        actions = [e["action"] for e in _all_events(site)]
        assert "user.unlocked" in actions and actions.count("user.access_review.generated") == 2
        user = build_auth_services(site.settings, site.engine, site.audit, cli.clock).store.load(
            "otto"
        )
        assert user is not None and user.status is UserStatus.ACTIVE
    finally:
        site.close()


def test_credentials_are_never_arguments_and_failures_are_clear(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "list", "--password", ADMIN_PASSWORD, "--data", str(cli.data)]) == 2
    capsys.readouterr()
    cli.terminal.expect(
        ("Administrator user ID", "ada"),
        ("Password", "not the password at all"),
        ("Authenticator code", lambda: cli.code()),
    )
    assert cli.run("users", "show", "ada") == 1
    assert "User ID or password is not correct. (wrong_password)" in capsys.readouterr().err
    cli.as_admin()
    assert cli.run("users", "disable", "nobody", "--reason", "typo") == 1
    assert "there is no user nobody" in capsys.readouterr().err
    cli.as_admin()
    cli.terminal.expect(
        ("Temporary password", "sapphire tugboat 39 thistle"),
        ("Repeat", "sapphire tugboat 39 thistle"),
    )
    assert (
        cli.run(
            "users",
            "add",
            "xavier",
            "--name",
            "Xavier Both",
            "--role",
            "admin",
            "--role",
            "qa",
            "--identity-verified-by",
            "HR",
            "--identity-method",
            "badge",
            "--reason",
            "test",
        )
        == 2
    )
    assert "segregation of duties" in capsys.readouterr().err
    site = open_site(cli.data, clock=cli.clock)
    try:
        actions = [e["action"] for e in _all_events(site)]
        assert actions.count("auth.login.failed") == 1 and actions.count("user.change.refused") == 2
    finally:
        site.close()


def test_train_records_training_as_supervisor(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    from hmi.auth.users import IdentityVerification

    site = open_site(cli.data, clock=cli.clock)
    auth = build_auth_services(
        site.settings, site.engine, site.audit, cli.clock, argon2=Argon2Parameters(1, 8, 1)
    )
    cli.clock.advance(30)
    admin = auth.sessions.login("ada", ADMIN_PASSWORD, code_at(cli.admin_secret, cli.clock.now()))
    for user_id, name, role in (
        ("otto", "Otto Operator", "operator"),
        ("sam", "Sam Supervisor", "supervisor"),
    ):
        auth.users.create_user(
            admin, user_id=user_id, full_name=name, roles=[role],
            password="copper walrus lantern nineteen", identity=IdentityVerification("HR", "badge"),
            reason="joins the line", temporary=False,
        )  # fmt: skip
    pending = auth.users.begin_totp_enrolment(admin, "sam", reason="new phone")
    auth.users.confirm_totp_enrolment(admin, pending.enrolment_id, cli.code(pending.secret))
    auth.sessions.logout(admin)
    site.close()

    cli.terminal.expect(
        ("Supervisor or QA user ID", "sam"),
        ("Password", "copper walrus lantern nineteen"),
        ("Authenticator code", lambda: cli.code(pending.secret)),
        ("Training evidence", "SOP-BL-012 classroom, 2026-02-20"),
    )
    assert cli.run("users", "train", "otto", "PARA500-FB") == 0
    assert "otto: trained on PARA500-FB (all versions), recorded by sam" in capsys.readouterr().out

    site = open_site(cli.data, clock=cli.clock)
    try:
        auth = build_auth_services(site.settings, site.engine, site.audit, cli.clock)
        assert auth.training.is_trained("otto", "PARA500-FB", 4)
        recorded = [e for e in _all_events(site) if e["action"] == "training.recorded"]
        assert len(recorded) == 1 and recorded[0]["actor_id"] == "sam"
    finally:
        site.close()
