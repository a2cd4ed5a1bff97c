"""Helpers for batch tests: people with real accounts, the services of one kiosk, signing, and
driving the shipped recipe step by step against the simulator (used by the tests and by the
driver subprocess of the crash tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from hmi.alarms.service import AlarmService
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.store import trusted_keys, verify_database
from hmi.auth.passwords import Argon2Parameters
from hmi.auth.roles import Meaning
from hmi.auth.services import AuthServices, build_auth_services
from hmi.auth.sessions import Session
from hmi.auth.signatures import RecordRef, Signature
from hmi.auth.totp import code_at, new_secret
from hmi.auth.users import IdentityVerification
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import StepNotReady, StepOutOfOrder
from hmi.batch.model import DeviationInfo
from hmi.batch.review import DISPOSITION_MEANINGS
from hmi.batch.settings import BatchSettings
from hmi.config import SessionSettings
from hmi.plc import PlcSettings
from hmi.plc.asyncua_gateway import AsyncuaGateway
from hmi.recipe.service import RecipeService
from hmi.services import Services, build_services
from hmi.site import Site

REPO_ROOT = Path(__file__).resolve().parents[3]
RECIPE_FILE = REPO_ROOT / "recipes" / "paracetamol-final-blend.toml"
RECIPE_ID = "PARA500-FB"
RECIPE_VERSION = 4
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=1024, parallelism=1)
IDENTITY = IdentityVerification("HR desk", "ID card checked against the HR file")
TIME_SCALE = 300.0
"""Simulated seconds per second: the 15-minute blend takes 3 s."""

T = TypeVar("T")


@dataclass
class Person:
    user_id: str
    name: str
    role: str
    password: str
    totp_secret: str | None


class SteppingClock:
    """Real elapsed time from a given start, plus explicit jumps (one per TOTP code used)."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._t0 = time.monotonic()
        self._extra = timedelta(0)

    def now(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0) + self._extra

    def advance(self, seconds: float) -> datetime:
        self._extra += timedelta(seconds=seconds)
        return self.now()


class People:
    """The site's accounts; every authenticator code is taken one 30 s step after the last."""

    def __init__(self, auth: AuthServices, clock: Any, persons: dict[str, Person]) -> None:
        self.auth = auth
        self.clock = clock
        self.persons = persons

    def __getitem__(self, user_id: str) -> Person:
        return self.persons[user_id]

    @classmethod
    def create(cls, auth: AuthServices, clock: Any) -> People:
        secret = new_secret()
        admin = Person("admin1", "Ada Admin", "admin", "Adm1n-staple-orbit-77", secret)
        auth.users.create_first_admin(
            user_id=admin.user_id,
            full_name=admin.name,
            password=admin.password,
            identity=IDENTITY,
            totp_secret=secret,
            totp_code=code_at(secret, clock.now()),
        )
        people = cls(auth, clock, {"admin1": admin})
        session = people.login(admin)
        for user_id, name, role, password in (
            ("op1", "Olga Operator", "operator", "operator-long-walnut-harbour-19"),
            ("op2", "Otto Operator", "operator", "operator-quiet-copper-meadow-44"),
            ("sup1", "Sam Supervisor", "supervisor", "Sup-violet-anchor-62"),
            ("sup2", "Sue Supervisor", "supervisor", "Sup-amber-willow-85"),
            ("qa1", "Quinn Quality", "qa", "Qa-lantern-pebble-58"),
        ):
            people.persons[user_id] = people._create(session, user_id, name, role, password)
        auth.sessions.logout(session)
        return people

    def _create(self, session: Session, user_id: str, name: str, role: str, pw: str) -> Person:
        self.auth.users.create_user(
            session,
            user_id=user_id,
            full_name=name,
            roles=[role],
            password=pw,
            identity=IDENTITY,
            reason="new starter",
            temporary=False,
        )
        secret: str | None = None
        if role != "operator":
            pending = self.auth.users.begin_totp_enrolment(session, user_id, reason="new starter")
            secret = pending.secret
            self.auth.users.confirm_totp_enrolment(
                session, pending.enrolment_id, code_at(secret, self.clock.now())
            )
        return Person(user_id, name, role, pw, secret)

    def code(self, person: Person) -> str:
        assert person.totp_secret is not None
        self.clock.advance(30)
        return code_at(person.totp_secret, self.clock.now())

    def login(self, person: Person | str) -> Session:
        who = self.persons[person] if isinstance(person, str) else person
        code = self.code(who) if who.totp_secret else None
        return self.auth.sessions.login(who.user_id, who.password, code)

    def sign(self, session: Session, ref: RecordRef, meaning: Meaning) -> Signature:
        """The session's user signs (user ID + password, and a code where the meaning needs it)."""
        who = self.persons[session.user_id]
        needs = self.auth.signatures.components_needed(session, meaning)
        totp = self.code(who) if "totp" in needs else None
        return self.auth.signatures.sign(
            session,
            ref,
            meaning,
            password=who.password,
            user_id=who.user_id,
            totp=totp,
            accept_statement=True,
        )

    def cosign(
        self, session: Session, request: Signature, cosigner: str, meaning: Meaning
    ) -> Signature:
        who = self.persons[cosigner]
        return self.auth.signatures.cosign(
            session,
            request,
            cosigner_id=who.user_id,
            password=who.password,
            totp=self.code(who) if who.totp_secret else "000000",
            meaning=meaning,
            accept_statement=True,
        )

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps({k: asdict(v) for k, v in self.persons.items()}))

    @classmethod
    def load(cls, auth: AuthServices, clock: Any, path: Path) -> People:
        data = json.loads(path.read_text())
        return cls(auth, clock, {k: Person(**v) for k, v in data.items()})


def auth_services(site: Site) -> AuthServices:
    """Auth services with cheap hashing and a long idle lock (tests jump the clock by codes)."""
    settings = site.settings.model_copy(
        update={"session": SessionSettings(idle_lock_minutes=60, absolute_limit_hours=24)}
    )
    return build_auth_services(settings, site.engine, site.audit, site.clock, argon2=CHEAP_ARGON2)


def record_training(auth: AuthServices, trainer: Session, user_id: str, recipe_id: str) -> None:
    """``trainer`` (supervisor or QA, never the trainee) records that ``user_id`` is trained on
    ``recipe_id`` (all versions), through the training service."""
    auth.training.record(
        trainer,
        user_id,
        recipe_id,
        evidence="SOP-BLD-001 read and understood; practical check passed",
    )


def import_and_approve(site: Site, auth: AuthServices, people: People) -> RecipeService:
    recipes = kiosk_services(site, auth).recipes
    importer = people.login("sup1")
    recipes.import_file(importer, RECIPE_FILE)
    auth.sessions.logout(importer)
    qa = people["qa1"]
    session = people.login(qa)
    recipes.approve(
        session,
        RECIPE_ID,
        RECIPE_VERSION,
        password=qa.password,
        user_id=qa.user_id,
        totp=people.code(qa),
        accept_statement=True,
    )
    auth.sessions.logout(session)
    return recipes


def kiosk_services(site: Site, auth: AuthServices, gateway: Any = None) -> Services:
    """The services of one kiosk as the product wires them (:func:`hmi.services.build_services`),
    with the tests' cheap password hashing (``auth``) and the default batch settings."""
    return build_services(site, gateway, auth=auth, batch_settings=BatchSettings())


def build_engine(site: Site, auth: AuthServices, gateway: Any) -> BatchEngine:
    """The batch engine of a kiosk (started again: a new engine on the same site)."""
    return kiosk_services(site, auth, gateway).batches


def build_alarms(site: Site, auth: AuthServices) -> AlarmService:
    return kiosk_services(site, auth).alarms


def gateway_for(
    client_root: Path,
    endpoint: str,
    server_cert: Path,
    password_file: Path,
    heartbeat_timeout_s: float = 3.0,
) -> Any:
    """A gateway on the test's simulator. The batch tests are not about link loss timing
    (tests/integration/plc is): on a busy CI machine a 1 s pause of the simulator's thread is
    load, not a PLC fault, so the heartbeat may pause 3 s unless a caller asks otherwise."""
    settings = PlcSettings.model_validate(
        {
            "endpoint": endpoint,
            "server_certificate": str(server_cert),
            "password_file": str(password_file),
            "client_certificate": str(client_root / "plc" / "pki" / "own" / "client-cert.der"),
            "client_private_key": str(client_root / "plc" / "pki" / "own" / "client-key.pem"),
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
            "heartbeat_timeout_s": heartbeat_timeout_s,
        }
    )
    return AsyncuaGateway(settings, base_dir=client_root)


def verify_chain(site: Site) -> Any:
    return verify_database(
        site.engine,
        trusted=trusted_keys([site.settings.public_key_path]),
        witness=WitnessFile(site.settings.witness_path),
        workers=1,
    )


async def retry(
    action: Callable[[], Awaitable[T]], *, timeout: float = 20.0, interval: float = 0.05
) -> T:
    """Repeat an action refused with StepNotReady (scale settling, blend running) until done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await action()
        except StepNotReady:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(interval)


@contextlib.contextmanager
def monitoring(engine: BatchEngine) -> Iterator[asyncio.Task[None]]:
    task = asyncio.get_running_loop().create_task(engine.monitor())
    try:
        yield task
    finally:
        task.cancel()


STEP_IDS = (
    "line-clearance",
    "charge-granulate",
    "charge-mgst",
    "close-lid",
    "lid-interlock",
    "set-blend",
    "blend",
    "stopped",
    "bu-samples",
    "discharge",
    "sign-performed",
    "sign-verified",
)


class Driver:
    """Plays the operator (and the supervisor where the recipe asks) through the shipped recipe.

    ``ack`` is told of every action the engine acknowledged, in order.
    """

    def __init__(
        self,
        engine: BatchEngine,
        people: People,
        gateway: Any,
        *,
        ack: Callable[[str], None] = lambda _text: None,
    ) -> None:
        self.engine = engine
        self.people = people
        self.gateway = gateway
        self.ack = ack
        self.session: Session | None = None

    @property
    def auth(self) -> AuthServices:
        return self.people.auth

    def operator(self) -> Session:
        if self.session is None or not self.session.is_active or self.session.user_id != "op1":
            self.session = self.people.login("op1")
        return self.session

    def start(self, batch_id: str) -> None:
        self.engine.start_batch(self.operator(), RECIPE_ID, RECIPE_VERSION, batch_id)
        self.ack(f"started {batch_id}")

    async def run(self, batch_id: str, *, stop_after: str | None = None) -> None:
        """Complete the steps from the current one to the end (or up to ``stop_after``)."""
        while True:
            current = self.engine.current_step(batch_id)
            if current is None:
                return
            await self.step(batch_id, current.step_id)
            if current.step_id == stop_after:
                return

    async def step(self, batch_id: str, step_id: str) -> None:
        engine = self.engine
        current = engine.current_step(batch_id)
        assert current is not None and current.step_id == step_id
        if step_id in ("line-clearance", "charge-mgst"):
            data: dict[str, Any] = (
                {"confirmed": True}
                if step_id == "line-clearance"
                else {"lot": "MG-2026-117", "quantity": "0.90"}
            )
            session = self.operator()
            ref = engine.step_record(batch_id, step_id, data)
            performed = self.people.sign(session, ref, Meaning.PERFORMED)
            verified = self.people.cosign(session, performed, "sup1", Meaning.VERIFIED)
            await engine.complete_step(
                session, batch_id, step_id, data, signatures=[performed, verified]
            )
        elif step_id == "charge-granulate":
            session = self.operator()
            if current.status.value == "pending":
                await engine.start_step(session, batch_id, step_id)
                self.ack(f"started step {step_id}")
            if (await self.gateway.read("weight")).value < 100:
                await self.gateway.call("open_lid")
                await self.gateway.call("charge", 180.0)
            await retry(
                lambda: engine.complete_step(
                    self.operator(), batch_id, step_id, {"lot": "IG-2026-0042"}
                )
            )
        elif step_id == "close-lid":
            await self.gateway.call("close_lid")
            await engine.complete_step(self.operator(), batch_id, step_id, {"confirmed": True})
        elif step_id == "set-blend":
            await retry(lambda: engine.complete_step(self.operator(), batch_id, step_id, {}))
        elif step_id in ("lid-interlock", "stopped"):
            await retry(lambda: self._wait_step(batch_id, step_id))
        elif step_id == "blend":
            if current.status.value == "pending":
                await engine.start_step(self.operator(), batch_id, step_id)
                self.ack(f"started step {step_id}")
            await retry(
                lambda: engine.complete_step(self.operator(), batch_id, step_id, {}), timeout=60
            )
        elif step_id == "bu-samples":
            results = {"TOP": "99.4", "MIDDLE": "100.3", "BOTTOM": "98.8"}
            await engine.complete_step(self.operator(), batch_id, step_id, {"results": results})
        elif step_id == "discharge":
            await engine.complete_step(
                self.operator(), batch_id, step_id, {"container_id": "IBC-0042"}
            )
        elif step_id == "sign-performed":
            session = self.operator()
            ref = engine.step_record(batch_id, step_id, {})
            signature = self.people.sign(session, ref, Meaning.PERFORMED)
            await engine.complete_step(session, batch_id, step_id, {}, signatures=[signature])
        elif step_id == "sign-verified":
            session = self.people.login("sup1")
            self.session = session
            ref = engine.step_record(batch_id, step_id, {})
            signature = self.people.sign(session, ref, Meaning.VERIFIED)
            await engine.complete_step(session, batch_id, step_id, {}, signatures=[signature])
        else:  # pragma: no cover - the recipe is fixed
            raise AssertionError(step_id)
        self.ack(f"completed step {step_id}")

    async def _wait_step(self, batch_id: str, step_id: str) -> None:
        """A wait step completes by itself under the engine's monitor once the PLC meets its
        condition; without a monitor (or before it saw the condition) the operator completes
        it. Whichever comes first does it; the step is done once."""
        try:
            await self.engine.complete_step(self.operator(), batch_id, step_id, {})
        except StepOutOfOrder:
            done = [s for s in self.engine.record(batch_id).steps if s.step_id == step_id]
            if not done or done[-1].performed_by != "system":
                raise

    async def handle_deviations(
        self, batch_id: str, code: str = "EQUIPMENT", reason: str = "cause found and removed"
    ) -> None:
        """The operator gives the reason of every open deviation; those the policy sends for a
        co-signature are requested by the operator and co-signed by a supervisor."""
        engine, session = self.engine, self.operator()
        for item in engine.deviations(batch_id):
            if item.status.value == "open":
                engine.give_reason(session, item.deviation_id, code, reason)
        for item in engine.deviations(batch_id):
            if item.status.value == "awaiting_cosign":
                ref = engine.deviation_record(item.deviation_id)
                request = self.people.sign(session, ref, Meaning.REQUESTED)
                cosigned = self.people.cosign(session, request, "sup1", Meaning.COSIGNED)
                await engine.cosign_deviation(session, item.deviation_id, request, cosigned)

    def disposition(
        self, session: Session, deviation_id: str, decision: str, comment: str
    ) -> DeviationInfo:
        """QA signs a deviation's disposition with the meaning its decision carries."""
        ref = self.engine.disposition_record(deviation_id, decision, comment)
        signature = self.people.sign(session, ref, DISPOSITION_MEANINGS[decision])
        return self.engine.qa_disposition(session, deviation_id, decision, comment, signature)

    def qa_release(self, batch_id: str) -> None:
        """QA dispositions every deviation, signs the audit trail review and releases."""
        session = self.people.login("qa1")
        for item in self.engine.deviations(batch_id):
            if item.disposition is None:
                self.disposition(
                    session, item.deviation_id, "accepted", "assessed: no impact on quality"
                )
        ref = self.engine.batch_record_ref(batch_id)
        review = self.people.sign(session, ref, Meaning.AUDIT_TRAIL_REVIEWED)
        self.engine.review_audit_trail(session, batch_id, review)
        release = self.people.sign(session, ref, Meaning.RELEASED)
        self.engine.release(session, batch_id, release)


async def eventually(check: Callable[[], Any], *, timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


def audit_actions(site: Site, prefix: str = "") -> list[tuple[str, str | None, str | None]]:
    """(action, entity_id, reason) of every audit event whose action starts with ``prefix``."""
    from sqlalchemy import select

    from hmi.audit.tables import audit_event

    with site.engine.connect() as conn:
        rows = conn.execute(
            select(audit_event.c.action, audit_event.c.entity_id, audit_event.c.reason)
            .where(audit_event.c.action.startswith(prefix))
            .order_by(audit_event.c.id)
        ).all()
    return [(str(a), e, r) for a, e, r in rows]


async def set_model(sim: Any, **values: Any) -> None:
    """Change the simulated blender behind the HMI's back (a person at the PLC panel)."""

    async def apply(server: Any) -> None:
        for name, value in values.items():
            setattr(server.model, name, value)

    await sim.acall(apply)
