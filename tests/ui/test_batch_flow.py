"""A batch driven through the screens against the real simulator: start with the training
gate, a second-person check (same user refused), an out-of-tolerance charge whose reason is
demanded, the blend, the signatures, then QA review and release; and hold/abort."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Select, Static

from hmi.app import HmiApp
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.modals.cosign import CosignDialog
from hmi.screens.modals.deviation import DeviationDialog
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import FormDialog
from hmi.screens.qa_review import QaReviewScreen
from plc_sim.server import SimulatorThread
from tests.ui.conftest import Kiosk, PlcClient
from tests.ui.helpers import idle_group, login, settle, text_of

BATCH = "B-UI-0001"


async def wait_until(pilot: Pilot[None], check: Any, what: str, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; screen {pilot.app.screen}")
        await pilot.pause(0.05)
    # A screen is current before its widgets have finished mounting: let them.
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def fill(pilot: Pilot[None], values: dict[str, str]) -> None:
    for name, value in values.items():
        field = pilot.app.screen.query_one(f"#in-{name}", Input)
        # wide enough for the operator to read what they type, beside its label and hint
        assert field.region.width >= 12, f"field {name} is {field.region.width} columns wide"
        field.value = value
    await pilot.pause()


async def sign(pilot: Pilot[None], kiosk: Kiosk, user: str, *, first: bool = False) -> None:
    """Fill the e-signature dialog as ``user`` and close it after the manifestation."""
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, ESignatureDialog), "e-signature")
    await settle(pilot)
    dialog = app.screen
    assert text_of(pilot, "#sign-signer").startswith(f"{user} ("), "the signer's ID is fixed"
    dialog.query_one("#sign-password", Input).value = kiosk.users[user].password
    if dialog.query("#sign-totp"):
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]  # a fresh authenticator code
        dialog.query_one("#sign-totp", Input).value = kiosk.code(user)
    if first or dialog.query_one("#accept", Checkbox).display:
        dialog.query_one("#accept", Checkbox).value = True
    await pilot.press("f2")
    await settle(pilot)
    assert "Signed:" in text_of(pilot, "#sign-message"), text_of(pilot, "#sign-message")
    await pilot.press("f2")
    await settle(pilot)


async def cosign(pilot: Pilot[None], kiosk: Kiosk, user: str) -> str:
    """Fill the co-sign dialog as ``user``; return the refusal text (empty when accepted)."""
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, CosignDialog), "co-sign dialog")
    dialog = app.screen
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]  # a fresh authenticator code
    dialog.query_one("#cosign-user", Input).value = user
    dialog.query_one("#cosign-password", Input).value = kiosk.users[user].password
    dialog.query_one("#cosign-totp", Input).value = (
        kiosk.code(user) if kiosk.users[user].totp_secret else ""
    )
    dialog.query_one("#cosign-accept", Checkbox).value = True
    await pilot.press("f2")
    await settle(pilot)
    if isinstance(app.screen, CosignDialog):
        return text_of(pilot, "#cosign-message")
    return ""


async def complete(pilot: Pilot[None], app: HmiApp, step_id: str, timeout: float = 20) -> None:
    """F3 until the engine takes the step (it refuses while the scale settles or the blend runs)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    screen = app.screen
    assert isinstance(screen, BatchRunScreen)
    while True:
        await pilot.press("f3")
        await pilot.pause()
        await idle_group(pilot, "batch")
        screen.reload()
        await settle(pilot)
        if screen.current is None or screen.current.step_id != step_id:
            return
        if loop.time() > deadline:
            raise AssertionError(
                f"step {step_id} not completed: {text_of(pilot, '#batch-message')}"
            )
        await pilot.pause(0.2)


async def moves_on(pilot: Pilot[None], screen: BatchRunScreen, step_id: str) -> None:
    """A wait step completes by itself once the PLC meets its condition: the screen moves on
    to the next step without a key."""
    await wait_until(
        pilot,
        lambda: screen.current is not None and screen.current.step_id != step_id
        and any(s.step_id == step_id and s.performed_by == "system" for s in screen.steps),
        f"wait step {step_id} completed by itself",
        timeout=30,
    )  # fmt: skip


async def start_batch(pilot: Pilot[None], app: HmiApp) -> None:
    await app.run_action("menu")
    await pilot.pause()
    await pilot.press("2")  # Recipes
    await settle(pilot)
    table = app.screen.query_one("#recipes-table")
    rows = app.screen.rows  # type: ignore[attr-defined]
    table.move_cursor(row=[r.recipe_id for r in rows].index("PARA500-FB"))  # type: ignore[attr-defined]
    await pilot.press("f2")
    await pilot.pause()
    assert isinstance(app.screen, FormDialog)
    app.screen.query_one("#field-batch", Input).value = BATCH
    await pilot.press("f2")
    await settle(pilot)
    await wait_until(pilot, lambda: isinstance(app.screen, BatchRunScreen), "batch screen")
    await settle(pilot)


async def test_batch_with_deviation_to_qa_release(
    kiosk: Kiosk, sim: SimulatorThread, plc_client: PlcClient
) -> None:
    gateway = plc_client.gateway(sim.endpoint)
    app = kiosk.app(gateway=gateway)
    batches = app.ctx.batches
    assert batches is not None
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await wait_until(pilot, lambda: app.ctx.plc_state.value == "connected", "PLC")
        await start_batch(pilot, app)
        assert batches.get(BATCH).status is BatchStatus.RUNNING
        assert not app.ctx.demo
        assert app.screen.check_action("by_hand", ()) is False  # production: no simulated hands
        assert app.check_action("demo_codes", ()) is False  # nor demo codes
        # 1. line clearance: performed by the operator, verified by a supervisor
        await pilot.press("f3")
        await sign(pilot, kiosk, "operator", first=True)
        refusal = await cosign(pilot, kiosk, "operator")
        assert refusal.startswith("Refused:"), refusal
        refusal = await cosign(pilot, kiosk, "supervisor")
        assert refusal == ""
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, BatchRunScreen)
        await wait_until(
            pilot,
            lambda: screen.current is not None and screen.current.step_id == "charge-granulate",
            "charge step",
        )
        # 2. charge on the load cell: start (tare), the operator charges, then completes
        await pilot.press("f2")
        await pilot.pause()
        await idle_group(pilot, "batch")
        await gateway.call("open_lid")
        await gateway.call("charge", 180.0)
        await fill(pilot, {"lot": "IG-2026-0042"})
        await complete(pilot, app, "charge-granulate")
        # 3. manual charge out of tolerance: validated as typed, then a reason is demanded
        await wait_until(  # typing goes into the step's first field
            pilot, lambda: app.focused is screen.query_one("#in-lot"), "focus on the lot field"
        )
        await fill(pilot, {"lot": "MG-2026-117", "quantity": "0.95"})
        assert "OUT OF LIMITS" in text_of(pilot, "#hint-quantity")
        await pilot.press("f3")
        await sign(pilot, kiosk, "operator")
        assert await cosign(pilot, kiosk, "supervisor") == ""
        await wait_until(pilot, lambda: isinstance(app.screen, DeviationDialog), "deviation")
        assert "expected" in text_of(pilot, "#deviation-what")
        await pilot.press("f2")  # no reason yet: refused with a sentence
        await pilot.pause()
        assert text_of(pilot, "#deviation-message") == "Choose a reason code."
        app.screen.query_one("#reason-code", Select).value = "MATERIAL"
        app.screen.query_one("#reason-text", Input).value = "bench scale reading, sieve residue"
        await pilot.press("f2")
        await settle(pilot)
        await wait_until(pilot, lambda: isinstance(app.screen, BatchRunScreen), "back to batch")
        [deviation] = batches.deviations(BATCH)
        assert deviation.kind is DeviationKind.OUT_OF_TOLERANCE
        assert deviation.reason_code == "MATERIAL"
        await settle(pilot)
        waiting = screen.query_one("#step-waiting", Static)
        assert not waiting.display, f"reason given, still shown: {waiting.render()}"
        # 4-8: lid, interlock, parameters, blend, stopped
        await gateway.call("close_lid")
        screen.reload()
        await settle(pilot)
        await complete(pilot, app, "close-lid")
        await moves_on(pilot, screen, "lid-interlock")  # the PLC's condition: no key pressed
        await complete(pilot, app, "set-blend")
        await pilot.press("f2")  # start the blend
        await pilot.pause()
        await idle_group(pilot, "batch")
        await complete(pilot, app, "blend", timeout=30)
        await moves_on(pilot, screen, "stopped")
        await fill(pilot, {"sample-TOP": "99.4", "sample-MIDDLE": "100.3", "sample-BOTTOM": "98.8"})
        await complete(pilot, app, "bu-samples")
        await fill(pilot, {"container_id": "IBC-0042"})
        await complete(pilot, app, "discharge")
        await pilot.press("f3")
        await sign(pilot, kiosk, "operator")
        await idle_group(pilot, "batch")
        assert batches.get(BATCH).current_step == 11
        # the supervisor signs 'verified' at the same kiosk: switch user
        await switch_user(pilot, kiosk, "supervisor")
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("3")  # Batch execution
        await settle(pilot)
        await pilot.press("f3")
        await sign(pilot, kiosk, "supervisor", first=True)
        await idle_group(pilot, "batch")
        assert batches.get(BATCH).status is BatchStatus.AWAITING_REVIEW
        # QA: disposition of the deviation, audit trail reviewed, release
        await switch_user(pilot, kiosk, "qa")
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("5")  # QA review
        await settle(pilot)
        assert isinstance(app.screen, QaReviewScreen)
        assert text_of(pilot, "#qa-deviations") == "Deviations (1), 1 awaiting disposition"
        assert [d.kind for d in app.screen.deviations] == [DeviationKind.OUT_OF_TOLERANCE]
        await pilot.press("f2")
        await pilot.pause()
        app.screen.query_one("#field-decision", Input).value = "accepted"
        app.screen.query_one("#field-comment", Input).value = "no impact: within validated range"
        await pilot.press("f2")
        await sign(pilot, kiosk, "qa")
        await idle_group(pilot, "qa")
        assert batches.deviations(BATCH)[0].disposition == "accepted"
        await pilot.press("f3")
        await sign(pilot, kiosk, "qa")
        await idle_group(pilot, "qa")
        await pilot.press("f4")
        await sign(pilot, kiosk, "qa")
        await idle_group(pilot, "qa")
        assert "released" in text_of(pilot, "#qa-message")
    assert batches.get(BATCH).status is BatchStatus.RELEASED


async def switch_user(pilot: Pilot[None], kiosk: Kiosk, user: str) -> None:
    await pilot.press("f12")
    await settle(pilot)
    await pilot.press("f3")
    await settle(pilot)
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    code = kiosk.code(user) if kiosk.users[user].totp_secret else ""
    await login(pilot, user, kiosk.users[user].password, code)
    assert f"{user} (" in str(pilot.app.screen.query_one("#header-text").render())
