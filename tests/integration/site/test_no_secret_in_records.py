"""Every demo account's password typed into every user-ID field there is (the login ID, a
signature's and a co-signature's ID, the ID of an account an administrator unlocks, the ``hmi``
command's login prompt), and into the password fields of someone else's login and of the
locked kiosk until an account locks, on a real site with real argon2, real SQLite files and
the real ``hmi`` command; then the whole site folder (database with its WAL, every table's
rows, witness, keys), the audit trail bundle and CSV, the batch bundle and the batch report PDF
are searched for every password: none is there. What was typed as an ID that is not an account
is there as its keyed digest and length, so the attempts still correlate."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hmi.auth.errors import AuthenticationFailed, UnknownUser
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.roles import Meaning, Role
from hmi.auth.services import build_auth_services
from hmi.auth.signatures import RecordRef
from hmi.auth.totp import code_at, code_for_step, step_at
from hmi.auth.users import IdentityVerification
from hmi.commands.batch import build_engine
from hmi.demo import DEMO_USERS, DemoUser, seed_demo_site
from hmi.site import Site, init_site, open_site
from tests.helpers.secrets import contents, files_under, secrets_found

HMI = str(Path(sys.executable).parent / "hmi")
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)  # tests only
BATCH = "B-2026-0901"
PASSWORDS = [u.password for u in DEMO_USERS]
EXPORTERS = ("qa", "qa.two", "qa.three", "qa.four")
"""A fresh QA account for each export: an authenticator code is never accepted twice, and the
commands run on the real clock."""


def _run(data: Path, *args: str, answers: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HMI, *args, "--data", str(data)],
        input="".join(f"{line}\n" for line in answers),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )


def _actions(site: Site) -> list[str]:
    with site.engine.connect() as conn:
        return [str(r[0]) for r in conn.exec_driver_sql("SELECT action FROM audit_event")]


def _code(secret: str | None) -> str:
    assert secret is not None
    return code_at(secret, datetime.now(UTC))


def _batch(site: Site, users: dict[str, DemoUser]) -> None:
    """A batch started and aborted, so that there is a batch record to copy and print."""
    engine = build_engine(site)
    operator = engine.sessions.login("operator", users["operator"].password)
    engine.start_batch(operator, "PARA500-FB", 4, BATCH)
    engine.sessions.logout(operator)
    supervisor = engine.sessions.login(
        "supervisor", users["supervisor"].password, _code(users["supervisor"].totp_secret)
    )
    asyncio.run(engine.abort(supervisor, BATCH, "EQUIPMENT", "drive bearing failing"))
    engine.sessions.logout(supervisor)


def _type_everywhere(site: Site, users: dict[str, DemoUser]) -> dict[str, str]:
    """Every password into every ID field of the services (and some password fields); return
    the QA exporters' TOTP secrets."""
    auth = build_auth_services(
        site.settings, site.engine, site.audit, site.clock, argon2=CHEAP_ARGON2
    )
    own = users["operator"].password
    operator = auth.sessions.login("operator", own)
    request = auth.signatures.sign(
        operator,
        RecordRef.of("batch_step", f"{BATCH}.1", {"step": 1}),
        Meaning.REQUESTED,
        password=own,
        user_id="operator",
        accept_statement=True,
    )
    for typed in PASSWORDS:
        with pytest.raises(AuthenticationFailed):  # the login form's ID field
            auth.sessions.login(typed, typed)
        with pytest.raises(AuthenticationFailed):  # a signature's ID (the service still takes it)
            auth.signatures.sign(
                operator,
                RecordRef.of("batch_step", f"{BATCH}.2", {"step": 2}),
                Meaning.PERFORMED,
                password=typed,
                user_id=typed,
                accept_statement=True,
            )
        with pytest.raises(AuthenticationFailed):  # the co-signer's ID field
            auth.signatures.cosign(
                operator, request, cosigner_id=typed, password=typed, totp="123456"
            )
    # the locked kiosk has no ID field: other people's passwords into its password field,
    # until the account locks (security alert), then an administrator unlocks it
    auth.sessions.lock(operator)
    for typed in PASSWORDS[1:]:
        with pytest.raises(AuthenticationFailed):
            auth.sessions.unlock(operator, typed)
    locked = auth.store.load("operator")
    assert not operator.is_active and locked is not None and locked.status.value == "locked"
    assert "auth.alert.raised" in _actions(site)
    admin_user = users["admin"]
    admin = auth.sessions.login("admin", admin_user.password, _code(admin_user.totp_secret))
    for typed in PASSWORDS:  # the administrator's "unlock which account" ID
        with pytest.raises(UnknownUser):
            auth.users.unlock(admin, typed, reason="typed into the ID field")
    auth.users.unlock(admin, "operator", reason="locked out by the test")
    secrets: dict[str, str] = {}
    step = step_at(site.clock.now())
    for user_id in EXPORTERS[1:]:
        auth.users.create_user(
            admin,
            user_id=user_id,
            full_name=f"Quinn {user_id.split('.')[1].title()}",
            roles=[Role.QA],
            password="saffron-glacier-ferry-8191",
            identity=IdentityVerification("HR", "ID card"),
            reason="exports the records",
            temporary=False,
        )
        pending = auth.users.begin_totp_enrolment(admin, user_id, reason="new QA account")
        auth.users.confirm_totp_enrolment(
            admin, pending.enrolment_id, code_for_step(pending.secret, step - 1)
        )
        secrets[user_id] = pending.secret
    auth.sessions.logout(admin)
    return secrets


def test_no_typed_password_is_in_the_database_or_any_copy(tmp_path: Path) -> None:
    data = tmp_path / "site"
    init_site(data, terminal_id="KIOSK-01", site_name="Secret Site").close()
    site = open_site(data)
    try:
        users = {u.user_id: u for u in seed_demo_site(site, argon2=CHEAP_ARGON2)}
        assert sorted(u.password for u in users.values()) == sorted(PASSWORDS)
        _batch(site, users)
        exporters = _type_everywhere(site, users)
        digests = [site_digest(site, typed) for typed in PASSWORDS]
    finally:
        site.close()

    # the command's login prompt is an ID field too: refused, nothing written, not echoed
    printed: list[str] = []
    for typed in PASSWORDS:
        refused = _run(
            data, "audit", "export", "--out", str(tmp_path / "x.bundle"), answers=[typed, typed]
        )
        assert refused.returncode == 1 and "not correct" in refused.stderr, refused.stderr
        printed += [refused.stdout, refused.stderr]
    assert not (tmp_path / "x.bundle").exists()

    # every copy, each made by a QA user at the prompt
    passwords = {"qa": users["qa"].password} | dict.fromkeys(
        EXPORTERS[1:], "saffron-glacier-ferry-8191"
    )
    secrets = {"qa": users["qa"].totp_secret} | exporters
    logins = [[who, passwords[who], _code(secrets[who])] for who in EXPORTERS]
    trail, csv = tmp_path / "trail.bundle", tmp_path / "trail.csv"
    copy, pdf = tmp_path / "copy.bundle.jsonl", tmp_path / "record.pdf"
    for args, answers in [
        (("audit", "export", "--out", str(trail)), logins[0]),
        (("audit", "export", "--out", str(csv)), logins[1]),
        (("batch", "export", BATCH, "--out", str(copy)), logins[2]),
        (("batch", "report", BATCH, "--pdf", str(pdf)), logins[3]),
    ]:
        done = _run(data, *args, answers=answers)
        assert done.returncode == 0, done.stdout + done.stderr
        printed += [done.stdout, done.stderr]
    beside = pdf.with_suffix(".bundle.jsonl")
    assert beside.is_file()

    # the search can see what it looks for: the digests in the database and the trail copies,
    # the batch number in the PDF's (compressed) text
    database = b"".join(contents(data / "hmi.db"))
    for digest in digests:
        assert digest.encode() in database
        assert digest.encode() in trail.read_bytes() and digest.encode() in csv.read_bytes()
    assert any(BATCH.encode() in blob for blob in contents(pdf)[1:])

    every_file = files_under(data, trail, csv, copy, pdf, beside)
    assert {p.name for p in every_file} >= {"hmi.db", "checkpoints.jsonl", "hmi.toml"}
    assert secrets_found(every_file, PASSWORDS) == []
    assert not [p for p in PASSWORDS if any(p in text for text in printed)]


def site_digest(site: Site, typed: str) -> str:
    """What the site stores for a typed ID that is not an account (and checks it is one)."""
    auth = build_auth_services(
        site.settings, site.engine, site.audit, site.clock, argon2=CHEAP_ARGON2
    )
    digest = auth.store.audit_subject(typed)
    assert digest.startswith("uid-hmac:") and digest.endswith(f":len{len(typed)}")
    assert hashlib.sha256(typed.encode()).hexdigest()[:16] not in digest  # keyed, not plain
    return digest
