"""``hmi audit review`` and ``hmi ebr unreviewed`` as QA and supervisors use them: the real
command in a subprocess, on a site living on the real clock, credentials piped one per line.

Every reviewer logs in with the authenticator code of the current 30-second step and signs with
the next one (one step of drift is accepted), so each account is used for one review only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from hmi.audit.tables import audit_event
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import build_auth_services
from hmi.auth.totp import code_at
from hmi.clock import ManualClock
from hmi.demo import DemoUser, seed_accounts
from hmi.ebr.review import audit_review
from hmi.site import init_site, open_site

HMI = str(Path(sys.executable).parent / "hmi")
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)
CAST = (
    DemoUser("admin", "Ada Admin", "admin", "saffron-tunnel-glacier-9"),
    DemoUser("qa", "Quinn Quality", "qa", "maple-quartz-river-58"),
    DemoUser("qa2", "Quentin Quality", "qa", "amber-mosaic-falcon-31"),
    DemoUser("supervisor", "Sam Supervisor", "supervisor", "violet-harbor-engine-7"),
    DemoUser("sup2", "Sue Supervisor", "supervisor", "cobalt-meadow-lantern-4"),
    DemoUser("operator", "Olga Operator", "operator", "copper-lantern-meadow-42"),
)
SINCE = "2020-01-01"  # long before the site existed: the range starts at its first event


@dataclass
class RealSite:
    data: Path
    users: dict[str, DemoUser]

    def run(self, *args: str, answers: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HMI, *args, "--data", str(self.data)],
            input="".join(f"{line}\n" for line in answers or []),
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
        )

    def reviewer(self, user_id: str, *, password: str | None = None) -> list[str]:
        """Login, the accountability statement, then the signature (ID, password, next code)."""
        user = self.users[user_id]
        now = datetime.now(UTC)
        login = [user.user_id, user.password]
        if user.totp_secret:
            login.append(code_at(user.totp_secret, now))
        signature = [user.user_id, password or user.password]
        if user.totp_secret:
            signature.append(code_at(user.totp_secret, now + timedelta(seconds=30)))
        return [*login, "I agree", *signature]

    def rows(self) -> list[dict[str, object]]:
        site = open_site(self.data, upgrade=False, witness=False)
        try:
            with site.engine.connect() as conn:
                found = conn.execute(select(audit_review).order_by(audit_review.c.id))
                return [dict(r) for r in found.mappings()]
        finally:
            site.close()

    def events(self, action: str) -> list[tuple[str, str | None, dict[str, object]]]:
        site = open_site(self.data, upgrade=False, witness=False)
        t = audit_event.c
        try:
            with site.engine.connect() as conn:
                found = conn.execute(
                    select(t.actor_id, t.reason, t.details).where(t.action == action).order_by(t.id)
                ).all()
        finally:
            site.close()
        return [(str(a), r, json.loads(d or "{}")) for a, r, d in found]


@pytest.fixture
def real_site(tmp_path: Path) -> Iterator[RealSite]:
    """A site on the real clock, made and seeded 90 s in the past: accounts enrolled a few TOTP
    steps back, so that each can log in with the current code and sign with the next, and its
    records all before "now to the whole second", where a range that ends now ends (made in
    the current second, none would be in that range)."""
    data = tmp_path / "site"
    early = ManualClock(datetime.now(UTC) - timedelta(seconds=90))
    init_site(data, terminal_id="KIOSK-01", site_name="Review Site", clock=early).close()
    site = open_site(data, clock=early)
    try:
        auth = build_auth_services(
            site.settings, site.engine, site.audit, early, argon2=CHEAP_ARGON2
        )
        users = {u.user_id: u for u in seed_accounts(auth, CAST)}
    finally:
        site.close()
    yield RealSite(data, users)


def test_range_reviews_signed_on_the_command_line_shrink_the_unreviewed_report(
    real_site: RealSite,
) -> None:
    before = real_site.run("ebr", "unreviewed")
    assert before.returncode == 0, before.stderr
    assert "Batches without a signed audit trail review: 0" in before.stdout
    assert "Audit trail ranges not covered by a signed review: 1" in before.stdout
    assert "KIOSK-01 seq 1-" in before.stdout

    signed = real_site.run(
        "audit", "review", "--from", SINCE, "--comment", "no findings",
        answers=real_site.reviewer("qa"),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert "Periodic review of the audit trail:" in signed.stdout
    assert "KIOSK-01 seq 1-" in signed.stdout  # shown before the signature is asked for
    assert "Signed periodic review " in signed.stdout
    assert "Quinn Quality (qa) - Audit trail reviewed" in signed.stdout
    [row] = real_site.rows()
    assert (row["terminal_id"], row["from_seq"], row["kind"]) == ("KIOSK-01", 1, "periodic")
    assert (row["reviewed_by"], row["comment"]) == ("qa", "no findings")
    [(actor, reason, details)] = real_site.events("audit.review.signed")
    assert (actor, reason, details["review_id"]) == ("qa", "no findings", row["review_id"])

    after = real_site.run("ebr", "unreviewed")
    assert after.returncode == 0, after.stderr
    assert "KIOSK-01 seq 1-" not in after.stdout
    assert f"KIOSK-01 seq {int(str(row['to_seq'])) + 1}-" in after.stdout

    # The same events again in a review of the same kind: a duplicate record, refused.
    again = real_site.run("audit", "review", "--from", SINCE, answers=real_site.reviewer("qa2"))
    assert again.returncode == 1
    assert "already covered by the periodic review signed by qa" in again.stderr
    assert "nothing was signed" in again.stderr
    assert len(real_site.rows()) == 1

    # A supervisor's shift review of the same events is another line of review: accepted.
    shift = real_site.run(
        "audit", "review", "--from", SINCE, answers=real_site.reviewer("supervisor")
    )
    assert shift.returncode == 0, shift.stderr
    assert "Signed shift review " in shift.stdout and "- Reviewed -" in shift.stdout
    assert [(r["kind"], r["reviewed_by"]) for r in real_site.rows()] == [
        ("periodic", "qa"),
        ("shift", "supervisor"),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--from", "soon"], "--from: 'soon' is not a date or time"),
        (["--from", SINCE, "--to", "2026-13-40"], "--to: '2026-13-40' is not a date or time"),
        (["--from", "2025-06-02", "--to", "2025-05-31"], "the range ends before it starts"),
        (["--from", "2025-06-02T06:00", "--to", "2025-06-02T06:00"], "the range is empty"),
        (["--from", SINCE, "--to", "2999-01-01"], "the range ends in the future"),
        (["--from", "2999-01-01"], "the range starts in the future"),
    ],
)
def test_a_bad_range_is_refused_before_anyone_logs_in(
    real_site: RealSite, options: list[str], message: str
) -> None:
    refused = real_site.run("audit", "review", *options, answers=real_site.reviewer("qa"))
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "user ID" not in refused.stderr  # no credentials were asked for
    assert real_site.rows() == []


def test_wrong_passwords_the_operator_and_an_empty_range_are_refused(
    real_site: RealSite,
) -> None:
    # A wrong password at login, then a wrong signature password: nothing is signed.
    login = real_site.run(
        "audit", "review", "--from", SINCE, answers=["sup2", "not-the-password", "000000"]
    )
    assert login.returncode == 1
    assert "User ID or password is not correct." in login.stderr
    wrong = real_site.run(
        "audit", "review", "--from", SINCE,
        answers=real_site.reviewer("sup2", password="not-the-password"),
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "User ID or password is not correct." in wrong.stderr
    assert "Shift review of the audit trail:" in wrong.stdout  # it got as far as signing
    [(actor, _reason, details)] = real_site.events("esignature.refused")
    assert actor == "sup2" and details["record_type"] == "audit_range"

    # An operator does not review the audit trail; the refusal names who does, recorded.
    operator = real_site.run(
        "audit", "review", "--from", SINCE, "--kind", "shift",
        answers=real_site.reviewer("operator"),
    )  # fmt: skip
    assert operator.returncode == 1
    assert (
        "a shift review of the audit trail is signed by qa or supervisor, not by the role"
        " 'operator'" in operator.stderr
    )
    [(actor, reason, _details)] = real_site.events("audit.review.refused")
    assert actor == "operator" and reason == "role operator may not sign a shift review"

    # A range with no events in it: nothing to review.
    empty = real_site.run(
        "audit", "review", "--from", "2021-01-01", "--to", "2021-01-31",
        answers=real_site.reviewer("qa2"),
    )  # fmt: skip
    assert empty.returncode == 1
    assert "no audit events between 2021-01-01 00:00:00" in empty.stderr
    assert "there is nothing to review" in empty.stderr
    assert real_site.rows() == []


def test_declining_the_accountability_statement_signs_nothing(real_site: RealSite) -> None:
    answers = real_site.reviewer("qa2")
    answers[answers.index("I agree")] = "no"
    declined = real_site.run("audit", "review", "--from", SINCE, answers=answers)
    assert declined.returncode == 1
    assert "the statement was not accepted; nothing was signed" in declined.stderr
    assert "legally binding equivalent of my handwritten signature" in declined.stdout
    assert real_site.rows() == []
    assert real_site.events("audit.review.signed") == []
