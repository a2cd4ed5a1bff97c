"""``hmi demo batches``: complete batches of the shipped recipes on a new demo site, run through
the real engine and the bundled simulator, with realistic deviations, corrections and
signatures, and QA's release of some. For training, QA practice, inspectors and benchmarks.

The history is generated, so its time is simulated: the site is created back-dated by the
time the batches need, and a manual clock moves on as each step, each run and each
authenticator code would take (a code is never accepted twice, so every code moves the clock
to the next 30-second step); the last event is still before the real time now, so the kiosk
goes on from there. The trail says so in its last generated event (``demo.batches.generated``,
with the simulated span), and the site is a demo site (``mode = "demo"``) like any other.

Every person's action goes through the services with that person's own credentials, exactly as
at the kiosk: nothing is written behind the engine's back, and the generated site verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from hmi.audit.chain import SYSTEM
from hmi.auth.roles import Meaning
from hmi.auth.sessions import Session, SessionState
from hmi.auth.signatures import RecordRef, Signature
from hmi.auth.totp import code_at
from hmi.batch import step_kinds
from hmi.batch.errors import BatchHeld, DeviationOpen, StepNotReady, StepOutOfOrder
from hmi.batch.model import BatchStatus, DeviationStatus
from hmi.batch.review import DISPOSITION_MEANINGS
from hmi.clock import ManualClock
from hmi.demo import STEP, DemoUser
from hmi.plc.gateway import PlcGateway
from hmi.recipe.model import (
    ChargeStep,
    CheckStep,
    DischargeStep,
    Recipe,
    RunStep,
    SampleStep,
    SetParametersStep,
    SignatureStep,
    WaitStep,
)
from hmi.services import Services

T = TypeVar("T")

#: Simulated time one batch needs at most (steps, signatures, runs): the site is back-dated by
#: this much per batch.
BATCH_SPAN = timedelta(minutes=90)
#: How long a person takes over one step of the procedure, in simulated time.
STEP_TIME = timedelta(minutes=2)
#: How long, in real time, a step that waits on the equipment may take before giving up.
EQUIPMENT_WAIT_S = 120.0


#: What a person at the blender does to make a signal read a value.
_BY_HAND = {("lid_closed", True): "close_lid", ("discharge_valve_open", False): "close_valve"}


class GenerationFailed(Exception):
    """A generated batch could not be completed (the message says where and why)."""


@dataclass
class Summary:
    batch_id: str
    recipe: str
    status: BatchStatus
    deviations: int
    corrections: int


@dataclass
class People:
    """The demo accounts, each logging in and signing with their own credentials."""

    services: Services
    clock: ManualClock
    users: dict[str, DemoUser]
    sessions: dict[str, Session] = field(default_factory=dict)

    def code(self, user: DemoUser) -> str | None:
        if user.totp_secret is None:
            return None
        self.clock.advance(STEP)  # the next code: one is never accepted twice
        return code_at(user.totp_secret, self.clock.now())

    def session(self, role: str) -> Session:
        """The person's session at the kiosk: unlocked with their password if the kiosk locked
        while they were away (a blend), a new login if somebody else has logged in since."""
        user = self.users[role]
        sessions = self.services.auth.sessions
        current = self.sessions.get(role)
        if current is not None:
            state = sessions.check_idle(current)
            if state is SessionState.ACTIVE:
                return current
            if state is SessionState.LOCKED:
                return sessions.unlock(current, user.password)
        session = sessions.login(user.user_id, user.password, self.code(user))
        self.sessions[role] = session
        return session

    def sign(self, role: str, ref: RecordRef, meaning: Meaning) -> Signature:
        session = self.session(role)
        user = self.users[role]
        signatures = self.services.auth.signatures
        needs = signatures.components_needed(session, meaning)
        return signatures.sign(
            session, ref, meaning, password=user.password, user_id=user.user_id,
            totp=self.code(user) if "totp" in needs else None, accept_statement=True,
        )  # fmt: skip

    def cosign(self, role: str, request: Signature, by: str, meaning: Meaning) -> Signature:
        cosigner = self.users[by]
        return self.services.auth.signatures.cosign(
            self.session(role), request, cosigner_id=cosigner.user_id,
            password=cosigner.password, totp=self.code(cosigner) or "000000",
            meaning=meaning, accept_statement=True,
        )  # fmt: skip

    def logout_all(self) -> None:
        for session in self.sessions.values():
            if session.is_active:
                self.services.auth.sessions.logout(session)
        self.sessions.clear()


@dataclass
class Generator:
    """Runs batches of approved recipes one after another (see the module description)."""

    services: Services
    gateway: PlcGateway
    people: People
    rng: random.Random
    clock: ManualClock

    @property
    def engine(self) -> Any:
        return self.services.batches

    async def run(self, recipe: Recipe, version: int, batch_id: str) -> Summary:
        engine, rng = self.engine, self.rng
        engine.start_batch(self.people.session("operator"), recipe.id, version, batch_id)
        hold_at = rng.randrange(len(recipe.steps)) if rng.random() < 0.15 else None
        corrections = 0
        for index, step in enumerate(recipe.steps):
            self.clock.advance(STEP_TIME)
            current = engine.current_step(batch_id)
            if current is None:
                break
            if current.step_id != step.id:
                continue  # done by the engine itself (a wait step) meanwhile
            if index == hold_at:
                await engine.hold(self.people.session("operator"), batch_id)
                await self.handle(batch_id, "OPERATOR", "material spill cleaned up first")
            await self.step(recipe, batch_id, step)
            corrections += await self.maybe_correct(batch_id, step)
        deviations = engine.deviations(batch_id)
        if engine.get(batch_id).status is BatchStatus.AWAITING_REVIEW and rng.random() < 0.6:
            self.release(batch_id)
        self.people.logout_all()
        return Summary(
            batch_id, f"{recipe.id} v{version}", engine.get(batch_id).status,
            len(deviations), corrections,
        )  # fmt: skip

    # -- one step, as the operator does it ------------------------------------------------

    async def step(self, recipe: Recipe, batch_id: str, step: Any) -> None:
        engine, rng, people, plc = self.engine, self.rng, self.people, self.gateway
        operator = people.session("operator")
        if isinstance(step, CheckStep):
            if step.plc_signal is not None:  # the operator puts it right, then confirms
                await self.make(step.plc_signal.tag, step.plc_signal.value)
            await self.complete(batch_id, step, {"confirmed": True})
        elif isinstance(step, ChargeStep):
            lot = f"{(step.material_code or 'LOT').replace(' ', '')}-{rng.randrange(100, 999)}"
            low, high = step.acceptance_range()
            target = Decimal(str(step.target))
            if step.weighing == "manual":
                off = rng.random() < 0.2  # a weighing a little outside the tolerance
                amount = high + (high - low) / 4 if off else target
                data: dict[str, Any] = {"lot": lot, "quantity": _plain(amount, 3)}
                await self.complete(batch_id, step, data)
            else:
                await engine.start_step(operator, batch_id, step.id)
                if (await plc.read("lid_closed")).value is True:
                    await plc.call("open_lid")
                spread = (high - low) / 4
                amount = target + spread * Decimal(str(rng.uniform(-1, 1)))
                await plc.call("charge", float(amount))
                await self.complete(batch_id, step, {"lot": lot})
        elif isinstance(step, SetParametersStep):
            if rng.random() < 0.2:
                name = rng.choice(list(step.parameters))
                parameter = recipe.parameter(name)
                nudge = (parameter.high - parameter.setpoint) / 2
                if nudge > 0:
                    await engine.change_parameter(
                        people.session("supervisor"), batch_id, name,
                        _plain(parameter.setpoint + nudge, 2), "granulate coarser than usual",
                    )  # fmt: skip
                    await self.handle(batch_id)
            await self.complete(batch_id, step, {})
        elif isinstance(step, RunStep):
            await engine.start_step(operator, batch_id, step.id)
            await self.complete(batch_id, step, {})
            run = step.duration or step.revolutions
            self.clock.advance(timedelta(minutes=20) if run else STEP_TIME)
        elif isinstance(step, WaitStep):
            wanted = step.target_for_plc()
            if isinstance(wanted, bool):
                await self.make(step.tag, wanted)
            await self.complete(batch_id, step, {}, wait=True)
        elif isinstance(step, SampleStep):
            out = rng.random() < 0.12  # one result out of specification
            middle = (step.low + step.high) / 2
            results = {
                sample: _plain(
                    step.high + (step.high - step.low) / 10 if out and n == 0
                    else middle + (step.high - middle) * Decimal(str(rng.uniform(-0.5, 0.5))),
                    1,
                )
                for n, sample in enumerate(step.sample_ids)
            }  # fmt: skip
            await self.complete(batch_id, step, {"results": results})
        elif isinstance(step, DischargeStep):
            container = f"IBC-{rng.randrange(1000, 9999)}"
            await self.complete(batch_id, step, {"container_id": container})
        elif isinstance(step, SignatureStep):
            plan = step_kinds.signatures(step)
            assert plan.meaning is not None and plan.signer_role is not None
            role = plan.signer_role
            ref = engine.step_record(batch_id, step.id, {})
            signature = people.sign(role, ref, plan.meaning)
            await self.repeat(
                batch_id,
                lambda: engine.complete_step(
                    people.session(role), batch_id, step.id, {}, signatures=[signature]
                ),
            )
        else:  # pragma: no cover - every step kind of the recipe model is handled above
            raise GenerationFailed(f"step kind {type(step).__name__} is not generated")

    async def make(self, tag: str, value: bool) -> None:
        """What a person does at the blender so that a signal reads ``value``: close the lid,
        close the discharge valve (the others are not in a person's hands)."""
        action = _BY_HAND.get((tag, value))
        if action is not None and (await self.gateway.read(tag)).value is not value:
            await self.gateway.call(action)

    async def complete(
        self,
        batch_id: str,
        step: Any,
        data: dict[str, Any],
        *,
        wait: bool = False,
    ) -> None:
        engine, people = self.engine, self.people
        verified = step_kinds.signatures(step).verifier_role

        async def once() -> Any:
            session = people.session("operator")
            signatures: list[Signature] = []
            if verified is not None:
                ref = engine.step_record(batch_id, step.id, data)
                performed = people.sign("operator", ref, Meaning.PERFORMED)
                signatures = [people.cosign("operator", performed, verified, Meaning.VERIFIED)]
                signatures.insert(0, performed)
            try:
                return await engine.complete_step(
                    session, batch_id, step.id, data, signatures=signatures
                )
            except StepOutOfOrder:
                if not wait:
                    raise
                done = [s for s in engine.record(batch_id).steps if s.step_id == step.id]
                if not done or done[-1].performed_by != "system":
                    raise
                return None  # the engine completed the wait itself

        await self.repeat(batch_id, once)

    async def repeat(self, batch_id: str, action: Callable[[], Awaitable[T]]) -> T | None:
        """Do an action until the equipment is ready (a blend running, a scale settling), with
        every deviation it meets handled on the way (reasons, co-signatures, a resume)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EQUIPMENT_WAIT_S
        while True:
            try:
                result = await action()
            except StepNotReady as exc:
                if loop.time() > deadline:
                    raise GenerationFailed(f"batch {batch_id}: {exc}") from exc
                await asyncio.sleep(0.05)
                continue
            except (DeviationOpen, BatchHeld):
                await self.handle(batch_id)
                continue
            if self.engine.get(batch_id).status is BatchStatus.HELD:
                await self.handle(batch_id)  # the step held the batch as it completed
            return result

    async def handle(
        self, batch_id: str, code: str = "EQUIPMENT", reason: str = "cause found and put right"
    ) -> None:
        """The operator gives the reason of every open deviation; a supervisor co-signs those
        the policy sends for a co-signature; a held batch is resumed by a supervisor."""
        engine, people = self.engine, self.people
        for item in engine.deviations(batch_id):
            if item.status is DeviationStatus.OPEN:
                engine.give_reason(people.session("operator"), item.deviation_id, code, reason)
        for item in engine.deviations(batch_id):
            if item.status is DeviationStatus.AWAITING_COSIGN:
                ref = engine.deviation_record(item.deviation_id)
                request = people.sign("operator", ref, Meaning.REQUESTED)
                cosigned = people.cosign("operator", request, "supervisor", Meaning.COSIGNED)
                await engine.cosign_deviation(
                    people.session("operator"), item.deviation_id, request, cosigned
                )
        if engine.get(batch_id).status is BatchStatus.HELD:
            await engine.resume(
                people.session("supervisor"), batch_id, "checked at the blender, safe to go on"
            )

    async def maybe_correct(self, batch_id: str, step: Any) -> int:
        """Now and then a lot number entered at this step was read off the wrong bag."""
        if not isinstance(step, ChargeStep) or self.rng.random() >= 0.15:
            return 0
        lots = [v for v in self.engine.correctable_values(batch_id) if v.name == "lot"]
        if not lots or lots[-1].step_id != step.id:
            return 0
        self.engine.correct_value(
            self.people.session("operator"), batch_id, lots[-1].value_id,
            lots[-1].value + "A", "lot number read off the wrong bag",
        )  # fmt: skip
        await self.handle(batch_id)
        return 1

    def release(self, batch_id: str) -> None:
        """QA dispositions every deviation, signs the audit trail review, and releases."""
        engine, people = self.engine, self.people
        session = people.session("qa")
        for item in engine.deviations(batch_id):
            if item.disposition is None:
                ref = engine.disposition_record(
                    item.deviation_id, "accepted", "assessed: no impact on quality"
                )
                signature = people.sign("qa", ref, DISPOSITION_MEANINGS["accepted"])
                engine.qa_disposition(
                    session,
                    item.deviation_id,
                    "accepted",
                    "assessed: no impact on quality",
                    signature,
                )
        ref = engine.batch_record_ref(batch_id)
        engine.review_audit_trail(
            session, batch_id, people.sign("qa", ref, Meaning.AUDIT_TRAIL_REVIEWED)
        )
        engine.release(session, batch_id, people.sign("qa", ref, Meaning.RELEASED))


@contextlib.asynccontextmanager
async def supervising(services: Services, gateway: PlcGateway) -> AsyncIterator[None]:
    """The engine's monitor and the alarm service's subscription, as the kiosk runs them."""
    loop = asyncio.get_running_loop()
    tasks = [
        loop.create_task(services.batches.monitor()),
        loop.create_task(services.alarms.run(gateway)),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def generate(
    services: Services,
    gateway: PlcGateway,
    users: list[DemoUser],
    clock: ManualClock,
    *,
    count: int,
    seed: int,
    report: Callable[[Summary], None] = lambda _s: None,
) -> list[Summary]:
    """Run ``count`` batches, taking the approved recipes in turn."""
    by_role = {u.role: u for u in users}
    people = People(services, clock, by_role)
    generator = Generator(services, gateway, people, random.Random(seed), clock)
    recipes = [
        info for info in services.recipes.list_versions() if info.status.value == "effective"
    ]
    if not recipes:
        raise GenerationFailed("the site has no approved recipe to run")
    started = clock.now()
    done: list[Summary] = []
    async with supervising(services, gateway):
        for n in range(count):
            info = recipes[n % len(recipes)]
            stored = services.recipes.get(info.recipe_id, info.version)
            batch_id = f"DEMO-{started:%Y%m%d}-{n + 1:03d}"
            summary = await generator.run(stored.recipe, info.version, batch_id)
            done.append(summary)
            report(summary)
    services.site.audit.record_now(
        "demo.batches.generated",
        SYSTEM,
        details={
            "count": len(done),
            "seed": seed,
            "simulated_from": started.isoformat(),
            "simulated_to": clock.now().isoformat(),
            "batches": [s.batch_id for s in done],
        },
    )
    return done


def back_dated_start(count: int, now: datetime) -> datetime:
    """When the generated history begins, so that it ends before ``now``."""
    return now - BATCH_SPAN * count - timedelta(hours=1)


def _plain(value: Decimal, places: int) -> str:
    return f"{value:.{places}f}"
