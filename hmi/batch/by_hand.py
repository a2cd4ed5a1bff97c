"""On a demo site, what an operator does with their hands at the blender.

At a real line the operator opens the lid, tips the material in and closes the lid; the HMI
only sees the load cell and the lid switch. The bundled simulator has no hands, so a demo
site offers these as commands to the simulator. Each goes through the batch's PLC link, so
the batch record and the audit trail show it as a PLC command by the person logged in:
nothing done in a demo is hidden from its record. Production sites never offer them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hmi.audit.chain import Actor
from hmi.batch.model import CurrentStep
from hmi.batch.plc_link import PlcLink
from hmi.recipe.model import ChargeStep
from hmi.recipe.units import convert


@dataclass(frozen=True)
class HandAction:
    """One thing the operator's hands would do: a simulator method and its arguments."""

    key: str
    label: str
    method: str
    quantity_kg: Decimal | None = None


def hand_actions(current: CurrentStep | None, lid_closed: bool | None) -> list[HandAction]:
    """What makes sense now: the lid as it is not, and tipping in the current charge."""
    actions: list[HandAction] = []
    if lid_closed is not False:
        actions.append(HandAction("open-lid", "Open the lid", "open_lid"))
    step = current.step if current is not None else None
    if isinstance(step, ChargeStep) and step.weighing == "load_cell":
        target = convert(Decimal(str(step.target)), step.unit, "kg")
        extra = max(target / 100, Decimal("0.01"))
        actions += [
            HandAction(
                "charge",
                f"Tip in {target} kg of {step.material} (the step's target)",
                "charge",
                target,
            ),
            HandAction("charge-more", f"Tip in {extra} kg more", "charge", extra),
        ]
    if lid_closed is not True:
        actions.append(HandAction("close-lid", "Close and latch the lid", "close_lid"))
    return actions


async def do_by_hand(
    link: PlcLink, actor: Actor, batch_id: str, step_index: int | None, action: HandAction
) -> str:
    """Send ``action`` to the simulator as a recorded PLC command; a sentence for the screen."""
    args = () if action.quantity_kg is None else (float(action.quantity_kg),)
    await link.command(actor, batch_id, step_index, action.method, *args)
    if action.quantity_kg is not None:
        return f"{action.quantity_kg} kg tipped in; it settles on the load cell in a few seconds."
    return "Lid opened." if action.method == "open_lid" else "Lid closed and latched."
