"""Login and signature benchmark: service time against one bare argon2id verification.

    python bench/auth_bench.py [--dir DIR] [--runs 30] [--params 3,65536,1 --params 2,19456,1]

For each argon2id parameter set (time cost, memory KiB, parallelism; default: the product's
defaults and the OWASP floor) it prints the hash time, one bare ``argon2`` verification, and the
full service time of: a password login (operator), a password + TOTP login (supervisor), a
refused login (wrong password; unknown user ID), and an e-signature, as median / p95 and as a
ratio of the medians to the bare verification. Target: login <= 1.3x the bare hash.

Measurements are interleaved (bare, login, bare, login...) so drift on a shared machine hits
both sides alike. The database is a real SQLite file (WAL, synchronous=FULL) with the signed
audit chain, as on a kiosk.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from argon2 import PasswordHasher as Argon2
from argon2 import Type

from hmi.auth.errors import AuthenticationFailed
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.signatures import RecordRef
from hmi.auth.totp import code_at, new_secret
from hmi.auth.users import IdentityVerification
from hmi.clock import ManualClock
from hmi.site import Site, init_site

ADMIN_PW = "violet tractor seventeen"
OPERATOR_PW = "granite penguin umbrella seven"
SUPERVISOR_PW = "quiet harbour 42 melon"
IDENTITY = IdentityVerification("bench", "benchmark account")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} / {percentile(values, 0.95) * 1000:7.1f} ms"


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


class Bench:
    def __init__(self, root: Path, params: Argon2Parameters) -> None:
        self.clock = ManualClock(datetime.now(UTC))
        self.site: Site = init_site(root, clock=self.clock)
        self.auth: AuthServices = build_auth_services(
            self.site.settings, self.site.engine, self.site.audit, self.clock, argon2=params
        )
        self.secrets = {"ada": new_secret(), "sam": ""}
        self.auth.users.create_first_admin(
            user_id="ada",
            full_name="Ada Admin",
            password=ADMIN_PW,
            identity=IDENTITY,
            totp_secret=self.secrets["ada"],
            totp_code=code_at(self.secrets["ada"], self.clock.now()),
        )
        admin = self.login("ada", ADMIN_PW)
        users = self.auth.users
        users.create_user(
            admin,
            user_id="olga",
            full_name="Olga Operator",
            roles=["operator"],
            password=OPERATOR_PW,
            identity=IDENTITY,
            reason="bench",
            temporary=False,
        )
        users.create_user(
            admin,
            user_id="sam",
            full_name="Sam Supervisor",
            roles=["supervisor"],
            password=SUPERVISOR_PW,
            identity=IDENTITY,
            reason="bench",
            temporary=False,
        )
        pending = users.begin_totp_enrolment(admin, "sam", reason="bench")
        self.secrets["sam"] = pending.secret
        users.confirm_totp_enrolment(admin, pending.enrolment_id, self.code("sam"))
        self.auth.sessions.logout(admin)

    def code(self, user_id: str) -> str:
        self.clock.advance(30)
        return code_at(self.secrets[user_id], self.clock.now())

    def login(self, user_id: str, password: str) -> object:
        code = self.code(user_id) if self.auth.sessions.totp_needed(user_id) else None
        return self.auth.sessions.login(user_id, password, code)


def run_set(root: Path, params: Argon2Parameters, runs: int) -> None:
    bench = Bench(root, params)
    sessions, signatures = bench.auth.sessions, bench.auth.signatures
    bare = Argon2(
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        type=Type.ID,
    )
    stored = bare.hash(OPERATOR_PW)
    results: dict[str, list[float]] = {
        k: []
        for k in (
            "hash",
            "bare verify",
            "login (password)",
            "login (password + TOTP)",
            "refused: wrong password",
            "refused: unknown user ID",
            "e-signature (password)",
        )
    }

    def refuse(user_id: str, password: str) -> None:
        try:
            sessions.login(user_id, password)
        except AuthenticationFailed:
            return
        raise AssertionError("the login should have been refused")

    olga = sessions.login("olga", OPERATOR_PW)
    signatures.accept_statement(olga, password=OPERATOR_PW)
    sessions.logout(olga)
    for i in range(runs):
        results["bare verify"].append(timed(partial(bare.verify, stored, OPERATOR_PW)))
        started = time.perf_counter()
        olga = sessions.login("olga", OPERATOR_PW)
        results["login (password)"].append(time.perf_counter() - started)
        record = RecordRef.of("bench", f"R-{i}", {"i": i})
        sign = partial(
            signatures.sign, olga, record, "performed", password=OPERATOR_PW, user_id="olga"
        )
        results["e-signature (password)"].append(timed(sign))
        sessions.logout(olga)
        results["bare verify"].append(timed(partial(bare.verify, stored, OPERATOR_PW)))
        code = bench.code("sam")
        started = time.perf_counter()
        sam = sessions.login("sam", SUPERVISOR_PW, code)
        results["login (password + TOTP)"].append(time.perf_counter() - started)
        sessions.logout(sam)
        results["hash"].append(timed(partial(bare.hash, OPERATOR_PW)))
        # one failure per round: the next successful login resets the count (no lockout)
        results["refused: wrong password"].append(timed(partial(refuse, "olga", "wrong pw 123")))
        results["refused: unknown user ID"].append(timed(partial(refuse, "nobody", OPERATOR_PW)))
        results["bare verify"].append(timed(partial(bare.verify, stored, OPERATOR_PW)))
    base = statistics.median(results["bare verify"])
    print(
        f"\n{params.describe()}  ({runs} runs; median / p95; ratio = median / bare verify median)"
    )
    for name, values in results.items():
        ratio = statistics.median(values) / base
        print(f"  {name:28} {ms(values)}   {ratio:5.2f}x")
    bench.site.close()


def parse_params(text: str) -> Argon2Parameters:
    t, m, p = (int(part) for part in text.split(","))
    return Argon2Parameters(time_cost=t, memory_kib=m, parallelism=p)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to create the sites")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--params", action="append", type=parse_params, metavar="T,MKIB,P")
    args = parser.parse_args()
    param_sets = args.params or [parse_params("3,65536,1"), parse_params("2,19456,1")]
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for index, params in enumerate(param_sets):
            run_set(Path(tmp) / f"site{index}", params, args.runs)


if __name__ == "__main__":
    main()
