"""Batch execution: the step list, the current step's instructions and inputs (validated as
you type), live values and timers, and the operator's actions on function keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import AwaitMount
from textual.widgets import Input, Label, Static

from hmi.auth.roles import Meaning
from hmi.batch import step_kinds
from hmi.batch.by_hand import HandAction, do_by_hand, hand_actions
from hmi.batch.errors import StepDataInvalid
from hmi.batch.model import (
    FINAL_STATUSES,
    BatchInfo,
    BatchStatus,
    CurrentStep,
    DeviationInfo,
    RecordedValue,
    StepRecord,
)
from hmi.batch.rows import entered_number, plc_to_parameter
from hmi.recipe.model import (
    Parameter,
)
from hmi.screens.base import HmiScreen
from hmi.screens.context import format_local
from hmi.screens.errors import describe_error
from hmi.screens.messages import DeviationsRequested
from hmi.screens.modals.choice import Choice, ChoiceDialog
from hmi.screens.modals.cosign import CosignDialog
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import Field, FormDialog
from hmi.widgets.step_list import StepLine, StepList


def _number(text: str, *, negative: bool = False) -> Decimal | None:
    """The number typed, by the engine's own rule (``entered_number``), or None."""
    try:
        return entered_number(text, "value", negative=negative)
    except StepDataInvalid:
        return None


def _why_not_number(text: str, what: str, *, negative: bool = False) -> str | None:
    """What is wrong with a typed number, in the engine's words, or None."""
    try:
        entered_number(text, what, negative=negative)
    except StepDataInvalid as exc:
        return str(exc)
    return None


_LIST_ITEM = re.compile(r"\s*(?:[-*•]|\d+[.)])\s")


def reflow(text: str) -> str:
    """Recipe text as the screen's width wraps it: a recipe file breaks its lines where its
    author's editor did, so the lines of a paragraph are joined; blank lines and list items
    (``-``, ``*``, ``1.``) still start a new line."""
    out: list[str] = []
    for line in text.strip().splitlines():
        stripped = line.strip()
        if not stripped:
            out.append("")
        elif out and out[-1] and not _LIST_ITEM.match(line):
            out[-1] += " " + stripped
        else:
            out.append(stripped)
    return "\n".join(out)


class BatchRunScreen(HmiScreen):
    """The batch in progress on this terminal (or the last one)."""

    REQUIRES = "batch.view"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "start_step", "Start", id="start-step", tooltip="Start the current step"),
        Binding(
            "f3",
            "complete_step",
            "Complete",
            id="complete-step",
            tooltip="Complete the current step with what was entered",
        ),
        Binding(
            "f4",
            "change_parameter",
            "Param.",
            id="change-parameter",
            tooltip="Change a process parameter's setpoint (with a reason)",
        ),
        Binding("f5", "hold", "Hold", id="hold", tooltip="Hold the batch (with a reason)"),
        Binding("f6", "resume", "Resume", id="resume", tooltip="Resume the held batch"),
        Binding("f7", "abort", "Abort", id="abort", tooltip="Abort the batch (with a reason)"),
        Binding(
            "f8",
            "override",
            "Override",
            id="override",
            tooltip="Override the step's condition (a supervisor co-signs)",
        ),
        Binding(
            "f9",
            "deviations",
            "Deviat.",
            id="deviations",
            tooltip="Give the reason for the open deviations",
        ),
        Binding(
            "f10",
            "skip_step",
            "Skip",
            id="skip-step",
            tooltip="Request to skip the current step (a supervisor co-signs)",
        ),
        Binding(
            "f11",
            "correct_value",
            "Correct",
            id="correct-value",
            tooltip="Correct an entered value (old value kept, reason recorded)",
        ),
        Binding(
            "ctrl+b",
            "by_hand",
            "By hand",
            id="by-hand",
            tooltip="Demo site: what the operator does by hand at the blender (lid, charge)",
        ),
    ]
    #: At 80 columns the footer keeps these; parameter change, abort, override, skip and
    #: correction are then named in the F1 menu.
    FOOTER_FIRST: ClassVar[tuple[str, ...]] = (
        "start-step",
        "complete-step",
        "hold",
        "resume",
        "deviations",
        "change-parameter",
    )
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "start_step": "batch.step.complete",
        "complete_step": "batch.step.complete",
        "hold": "batch.hold",
        "resume": "batch.resume",
        "abort": "batch.abort",
        "override": "override.request",
        "deviations": "deviation.reason",
        "change_parameter": "parameter.change",
        "skip_step": "override.request",
        "correct_value": "batch.step.complete",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.info: BatchInfo | None = None
        self.current: CurrentStep | None = None
        self.steps: list[StepRecord] = []
        self.busy = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="batch-body"):
            yield StepList("", id="steps")
            with Vertical(id="step-panel"):
                yield Static("", id="batch-title", classes="form-title")
                with VerticalScroll(id="step-detail"):
                    yield Static("", id="step-text")
                    yield Static("", id="step-waiting", classes="message error")
                    yield Vertical(id="step-inputs")
                yield Static("", id="live", classes="live")
                yield Static("", id="batch-message", classes="message")

    def on_mount(self) -> None:
        self.reload()

    def on_batch_changed(self) -> None:
        # The batch moved without this screen (a wait step met by the PLC, the monitor holding
        # it, another kiosk): show where it stands; what is typed into the same step is kept.
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "by_hand":  # demo sites only: the simulator has no hands
            if not self.ctx.demo or not self.ctx.may("batch.step.complete"):
                return False
            return None if self.info is None or not self.info.active else True
        needed = self.ACTION_PERMISSIONS.get(action)
        if action == "complete_step" and self.current is not None:
            needed = step_kinds.completion_permission(self.current.step)
        if needed is None:
            return True
        if not self.ctx.may(needed):
            return False
        if self.ctx.service_mode and action != "deviations":
            return False  # production is unavailable in service mode
        if action == "correct_value":  # also after the run, until QA closes the record
            return None if self.info is None or self.info.status in FINAL_STATUSES else True
        if self.info is None or not self.info.active:
            return None
        if action == "skip_step" and self.current is None:
            return None
        held = self.info.status is BatchStatus.HELD
        if (action == "hold" and held) or (action == "resume" and not held):
            return None  # greyed out: hold a running batch, resume a held one
        return True

    # -- loading ----------------------------------------------------------------------------

    def reload(self) -> None:
        batches = self.ctx.batches
        if batches is None:
            self.query_one("#batch-title", Static).update("Batch execution is not available.")
            return

        def load() -> tuple[BatchInfo | None, CurrentStep | None, list[StepRecord]]:
            info = batches.active_batch()
            if info is None:
                listed = batches.list_batches()
                info = listed[0] if listed else None
            if info is None:
                return None, None, []
            record = batches.record(info.batch_id)
            current = batches.current_step(info.batch_id) if info.active else None
            return info, current, list(record.steps)

        self.run_blocking(load, self._show)

    def _show(self, loaded: tuple[BatchInfo | None, CurrentStep | None, list[StepRecord]]) -> None:
        info, current, steps = loaded
        changed = (
            current is None
            or self.current is None
            or ((current.step_id, current.status) != (self.current.step_id, self.current.status))
        )
        self.info, self.current, self.steps = info, current, steps
        title = self.query_one("#batch-title", Static)
        if info is None:
            title.update("No batch yet. Start one from Recipes (F1, 2).")
            self.query_one(StepList).show([])
            self.refresh_bindings()
            return
        title.update(
            f"Batch {info.batch_id} - {info.recipe_name} (v{info.recipe_version}) - "
            f"{info.status.label.upper()}"
            + (
                f" ({info.hold_reason})"
                if info.status is BatchStatus.HELD and info.hold_reason
                else ""
            )
        )
        self._show_steps()
        if changed:
            self._show_current()
        self._show_waiting()
        self.on_plc_values()
        self.refresh_bindings()

    def _show_steps(self) -> None:
        info = self.info
        if info is None or self.ctx.batches is None:
            return
        recipe = self.ctx.batches.recipe_of(info)
        done = {s.index: s.status.value for s in self.steps}
        lines = []
        for index, step in enumerate(recipe.steps):
            status = done.get(index, "pending")
            if self.current is not None and index == self.current.index and status == "pending":
                status = "current"
            lines.append(StepLine(index + 1, step.title, status))
        self.query_one(StepList).show(lines)

    def _show_current(self) -> None:
        inputs = self.query_one("#step-inputs", Vertical)
        focused = self.focused
        if focused is not None and inputs in focused.ancestors:
            self.set_focus(None)  # or its removal hands the focus on, after the new field's
        inputs.remove_children()
        text = self.query_one("#step-text", Static)
        current = self.current
        if current is None:
            text.update("All steps are done." if self.info else "")
            return
        step = current.step
        lines = [f"Step {current.index + 1}: {step.title}  [{current.status.value}]"]
        if step.instructions:
            lines.append(reflow(step.instructions))
        lines += step_kinds.description(step)
        rows = [(entry.name, entry.label, "") for entry in step_kinds.entries(step)]
        text.update("\n".join(lines))
        mounted = inputs.mount_all(
            Horizontal(
                Label(label, classes="field-label"),
                Input(compact=True, value=value, id=f"in-{name}"),
                Static("", id=f"hint-{name}", classes="hint"),
                classes="field-row",
            )
            for name, label, value in rows
        )
        if rows:  # the first entry field takes the keys, not the step list
            self.call_later(self._focus_when_mounted, mounted)

    async def _focus_when_mounted(self, mounted: AwaitMount) -> None:
        # a field is given the focus once it is mounted: asked earlier (a busy kiosk mounts
        # slowly) the focus is refused without a word and the operator's keys go nowhere
        await mounted
        self.call_after_refresh(self._focus_first_entry)

    def on_screen_resume(self) -> None:
        if self.focused is None:  # a dialog closed over fields that had no focus yet
            self.call_after_refresh(self._focus_first_entry)

    def _focus_first_entry(self) -> None:
        fields = self.query("#step-inputs Input")
        if fields and not isinstance(self.app.screen, ModalScreen):
            fields.first().focus()

    def _show_waiting(self) -> None:
        """What blocks the step, shown afresh on every reload (a reason given, a co-signature
        done) without redrawing the step's entry fields and what is typed in them."""
        blocking = self.current.blocking if self.current is not None else ()
        waiting = self.query_one("#step-waiting", Static)
        waiting.update(
            f"Waiting for deviation {', '.join(blocking)} (F9: deviations)" if blocking else ""
        )
        waiting.display = bool(blocking)

    def on_plc_values(self) -> None:
        values = self.ctx.values

        def show(tag: str, digits: int = 1) -> str:
            update = values.get(tag)
            if update is None or not update.good or not isinstance(update.value, float | int):
                return "--"
            return f"{float(update.value):.{digits}f} {update.unit}".strip()

        state = values.get("state")
        line = (
            f"PLC {state.value if state and state.good else '--'}  "
            f"Weight {show('weight', 2)}  Speed {show('speed')}  "
            f"Time {show('elapsed_time', 0)} / {show('blend_time_setpoint', 0)}  "
            f"Rev {show('revolutions', 0)}"
        )
        self.query_one("#live", Static).update(line, layout=False)

    # -- validation as you type -------------------------------------------------------------

    @on(Input.Changed)
    def _validate(self, event: Input.Changed) -> None:
        current = self.current
        if current is None or event.input.id is None:
            return
        name = event.input.id.removeprefix("in-")
        hint = self.query(f"#hint-{name}")
        if not hint:
            return
        step = current.step
        message = ""
        value = event.value.strip()
        entry = {e.name: e for e in step_kinds.entries(step)}.get(name)
        if value and entry is not None and entry.number:
            number = _number(value)
            if number is None:
                why = _why_not_number(value, "quantity" if name == "quantity" else "result")
                message = (why or "not a number").split(": ", 1)[-1]
            elif entry.low is None or entry.high is None:
                return
            else:
                inside = entry.low <= number <= entry.high
                message = "in limits" if inside else "OUT OF LIMITS: reason needed"
        hint.first(Static).update(message)
        hint.first(Static).set_class(message not in ("", "in limits"), "error")

    def _data(self) -> dict[str, Any] | None:
        current = self.current
        if current is None:
            return None
        step = current.step

        def value(name: str) -> str:
            found = self.query(f"#in-{name}")
            return found.first(Input).value.strip() if found else ""

        typed = {entry.name: value(entry.name) for entry in step_kinds.entries(step)}
        missing = step_kinds.missing(step, typed)
        if missing:
            self.say(f"Fill in: {', '.join(missing)}.", error=True)
            return None
        return step_kinds.step_data(step, typed)

    def say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#batch-message", Static)
        message.set_class(error, "error")
        message.update(text)

    # -- actions ----------------------------------------------------------------------------

    def action_start_step(self) -> None:
        self._start_step()

    def action_by_hand(self) -> None:
        update = self.ctx.values.get("lid_closed")
        lid = update.value if update is not None and update.good else None
        actions = {
            a.key: a for a in hand_actions(self.current, lid if isinstance(lid, bool) else None)
        }

        def picked(key: str | None) -> None:
            if key is not None:
                self._by_hand(actions[key])

        self.app.push_screen(
            ChoiceDialog(
                "By hand at the blender (demo site)",
                [Choice(a.key, a.label) for a in actions.values()],
                note="At a real line you do this yourself; here the simulator does it. It is"
                " recorded as a PLC command of this batch, by you.",
            ),
            picked,
        )

    @work(group="batch", exclusive=True, exit_on_error=False)
    async def _by_hand(self, action: HandAction) -> None:
        session, batches, info = self.ctx.session, self.ctx.batches, self.info
        if session is None or batches is None or info is None:
            return
        index = self.current.index if self.current is not None else None
        try:
            self.say(await do_by_hand(batches.link, session.actor, info.batch_id, index, action))
        except Exception as exc:
            self.say(describe_error(exc), error=True)

    @work(group="batch", exclusive=True, exit_on_error=False)
    async def _start_step(self) -> None:
        session, batches, current = self.ctx.session, self.ctx.batches, self.current
        if session is None or batches is None or current is None or self.info is None:
            return
        try:
            await batches.start_step(session, self.info.batch_id, current.step_id)
            self.say(f"Step '{current.step.title}' started.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self.reload()

    def action_complete_step(self) -> None:
        self._complete_step()

    @work(group="batch", exclusive=True, exit_on_error=False)
    async def _complete_step(self) -> None:
        session, batches, current, info = (
            self.ctx.session,
            self.ctx.batches,
            self.current,
            self.info,
        )
        if session is None or batches is None or current is None or info is None:
            return
        data = self._data()
        if data is None:
            return
        step = current.step
        signatures = []
        try:
            ref = batches.step_record(info.batch_id, step.id, data)
            plan = step_kinds.signatures(step)
            if plan.meaning is not None and plan.signer_role is not None:
                mine = await self.app.push_screen_wait(
                    ESignatureDialog(self.ctx, ref, plan.meaning, f"Step '{step.title}'")
                )
                if mine is None:
                    self.say("Not signed; the step is not completed.")
                    return
                signatures.append(mine)
            elif plan.verifier_role is not None:
                performed = await self.app.push_screen_wait(
                    ESignatureDialog(
                        self.ctx, ref, Meaning.PERFORMED, f"Step '{step.title}': {_entered(data)}"
                    )
                )
                if performed is None:
                    self.say("Not signed; the step is not completed.")
                    return
                verified = await self.app.push_screen_wait(
                    CosignDialog(
                        self.ctx,
                        performed,
                        f"Verify step '{step.title}': {_entered(data)}",
                        Meaning.VERIFIED,
                        plan.verifier_role,
                    )
                )
                if verified is None:
                    self.say("Not verified; the step is not completed.")
                    return
                signatures += [performed, verified]
            await batches.complete_step(
                session, info.batch_id, step.id, data, signatures=signatures
            )
            self.say(f"Step '{step.title}' completed.")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self.reload()
        self.post_message(DeviationsRequested())

    def _ask_reason(self, title: str, then: Any, *, code: bool = True) -> None:
        """Reason code and text, checked in the dialog as typed: a short reason is said
        there and keeps what was written, instead of closing the dialog."""
        note = self._codes_note().strip() if code else ""
        self.app.push_screen(FormDialog(title, self._reason_fields(code=code), note=note), then)

    def action_hold(self) -> None:
        # One key: the blender and the batch are held at once; the reason is asked right
        # after (the hold's deviation blocks everything until it has one).
        self._batch_call("hold", {})

    def action_resume(self) -> None:
        self._ask_reason(
            "Resume the batch", lambda v: v and self._batch_call("resume", v), code=False
        )

    def action_abort(self) -> None:
        self._ask_reason("ABORT the batch", lambda v: v and self._batch_call("abort", v))

    def action_override(self) -> None:
        current, batches, session, info = (
            self.current,
            self.ctx.batches,
            self.ctx.session,
            self.info,
        )
        if current is None or batches is None or session is None or info is None:
            return

        def asked(values: dict[str, str] | None) -> None:
            if not values:
                return
            self.run_blocking(
                lambda: batches.request_override(
                    session, info.batch_id, current.step_id, values["code"], values["text"]
                ),
                lambda _d: self.post_message(DeviationsRequested()),
            )

        self._ask_reason(f"Request override of '{current.step.title}'", asked)

    # -- parameter change, skip request, value correction -----------------------------------

    def _reason_fields(self, label: str = "Reason", *, code: bool = True) -> list[Field]:
        """Reason code and text, checked as typed against the site's list and length (the
        engine checks them again)."""
        settings = self.ctx.batches.settings if self.ctx.batches is not None else None

        def check_code(text: str) -> str | None:
            if settings is None or text.strip().upper() in settings.reason_codes:
                return None
            return f"Reason code: one of {', '.join(settings.reason_codes)}."

        def check_text(text: str) -> str | None:
            if settings is None:
                return None
            low, high = settings.min_reason_length, settings.max_reason_length
            length = len(" ".join(text.split()))
            if low <= length <= high:
                return None
            return f"Explain the reason in {low} to {high} characters (now {length})."

        fields = [Field("text", label, check=check_text)]
        if code:
            fields.insert(0, Field("code", "Reason code", value="PROCESS", check=check_code))
        return fields

    def _codes_note(self) -> str:
        codes = self.ctx.batches.settings.reason_codes if self.ctx.batches is not None else {}
        return "\nReason codes: " + ", ".join(codes) if codes else ""

    def _setpoint_now(self, parameter: Parameter) -> str:
        """The setpoint the PLC holds now, in the parameter's unit (display only)."""
        update = self.ctx.values.get(parameter.write_tag or "")
        if update is None or not update.good:
            return "--"
        value = plc_to_parameter(parameter, update.value)
        return "--" if value is None else f"{value.normalize():f}"

    def action_change_parameter(self) -> None:
        info, batches = self.info, self.ctx.batches
        if info is None or batches is None:
            return
        settable = {n: p for n, p in batches.recipe_of(info).parameters.items() if p.write_tag}
        if not settable:
            self.say("This recipe has no parameter that can be set during the batch.", error=True)
            return
        choices = [
            Choice(
                name,
                f"{name}: now {self._setpoint_now(p)} {p.unit}, limits {p.low}..{p.high}"
                f" {p.unit}" + (" (critical)" if p.critical else ""),
            )
            for name, p in settable.items()
        ]

        def picked(name: str | None) -> None:
            if name:
                self._ask_parameter_value(name, settable[name])

        self.app.push_screen(ChoiceDialog("Change a parameter", choices), picked)

    def _ask_parameter_value(self, name: str, parameter: Parameter) -> None:
        def check_number(text: str) -> str | None:
            return _why_not_number(text, name, negative=True)

        note = (
            f"{name}: setpoint now {self._setpoint_now(parameter)} {parameter.unit};"
            f" limits {parameter.low}..{parameter.high} {parameter.unit}.\n"
            "Within the limits the new value is written to the PLC at once. Outside them it"
            " becomes a deviation: you sign the request, a supervisor co-signs, and only then"
            " is it written." + self._codes_note()
        )
        fields = [
            Field("value", f"New value ({parameter.unit})", check=check_number),
            *self._reason_fields("Reason for the change"),
        ]

        def answered(values: dict[str, str] | None) -> None:
            if values:
                self._change_parameter(name, parameter.unit, values)

        self.app.push_screen(FormDialog(f"Change {name}", fields, note=note), answered)

    @work(group="batch", exclusive=True, exit_on_error=False)
    async def _change_parameter(self, name: str, unit: str, values: dict[str, str]) -> None:
        session, batches, info = self.ctx.session, self.ctx.batches, self.info
        if session is None or batches is None or info is None:
            return
        wanted = values["value"].strip()
        try:
            change = await batches.change_parameter(
                session,
                info.batch_id,
                name,
                wanted.replace(",", "."),
                values["text"],
                reason_code=values["code"],
            )
        except Exception as exc:
            self.say(describe_error(exc), error=True)
            self.reload()
            return
        if change.applied:
            self.say(f"{name} changed to {wanted} {unit}: written to the PLC and read back.")
        else:
            self.say(
                f"{name} {wanted} {unit} is outside its limits (deviation"
                f" {change.deviation_id}): it is written to the PLC once a supervisor has"
                " co-signed your request."
            )
        self.reload()
        self.post_message(DeviationsRequested())

    def action_skip_step(self) -> None:
        current, batches, session, info = (
            self.current,
            self.ctx.batches,
            self.ctx.session,
            self.info,
        )
        if current is None or batches is None or session is None or info is None:
            return
        title = current.step.title

        def requested(found: DeviationInfo) -> None:
            self.say(
                f"Skip of step '{title}' requested (deviation {found.deviation_id}); the step is"
                " skipped once a supervisor co-signs."
            )
            self.post_message(DeviationsRequested())

        def asked(values: dict[str, str] | None) -> None:
            if not values:
                return
            self.run_blocking(
                lambda: batches.request_skip(
                    session, info.batch_id, current.step_id, values["code"], values["text"]
                ),
                requested,
                lambda text, _exc: self.say(text, error=True),
            )

        self.app.push_screen(
            FormDialog(
                f"Request to skip step {current.index + 1}: '{title}'",
                self._reason_fields("Why the step must be skipped"),
                note="You sign the request; a supervisor co-signs at this kiosk. The step is"
                " skipped only then, and the skip stays in the record as a deviation."
                + self._codes_note(),
            ),
            asked,
        )

    def action_correct_value(self) -> None:
        info, batches = self.info, self.ctx.batches
        if info is None or batches is None:
            return
        self.run_blocking(
            lambda: batches.correctable_values(info.batch_id),
            lambda values: self._pick_value(info, values),
            lambda text, _exc: self.say(text, error=True),
        )

    def _value_line(self, value: RecordedValue, titles: list[str]) -> str:
        unit = f" {value.unit}" if value.unit else ""
        step = value.step_index + 1
        title = titles[value.step_index] if value.step_index < len(titles) else value.step_id
        return (
            f"Step {step} {title}: {value.name.replace('_', ' ')} = {value.value}{unit}"
            f" ({value.recorded_by}, {format_local(value.recorded_at, self.ctx.tz)})"
            + (" - corrected" if value.is_correction else "")
        )

    def _pick_value(self, info: BatchInfo, values: list[RecordedValue]) -> None:
        batches = self.ctx.batches
        if batches is None:
            return
        entered = {v.value_id: v for v in values}
        if not entered:
            self.say(
                "No entered value to correct: PLC readings and parameter setpoints cannot be"
                " corrected."
            )
            return
        titles = [step.title for step in batches.recipe_of(info).steps]
        choices = [Choice(str(k), self._value_line(v, titles)) for k, v in entered.items()]

        def picked(key: str | None) -> None:
            if key:
                self._ask_correction(info, entered[int(key)], titles)

        self.app.push_screen(
            ChoiceDialog(
                "Correct an entered value",
                choices,
                note="The original is never overwritten: the record keeps it with the new"
                " value, who corrected it, when and why.",
            ),
            picked,
        )

    def _ask_correction(self, info: BatchInfo, old: RecordedValue, titles: list[str]) -> None:
        batches, session = self.ctx.batches, self.ctx.session
        if batches is None or session is None:
            return
        unit = f" {old.unit}" if old.unit else ""
        limits = old.low is not None and old.high is not None
        note = (
            "Old value: "
            + self._value_line(old, titles)
            + (
                f"\nAccepted {old.low}..{old.high}{unit}; outside them a deviation is opened."
                if limits
                else ""
            )
        )

        def check_number(text: str) -> str | None:
            return _why_not_number(text, old.name) if limits else None

        fields = [
            Field("value", f"New value{f' ({old.unit})' if old.unit else ''}", check=check_number),
            *self._reason_fields("Reason for the correction", code=False),
        ]

        def corrected(new: RecordedValue) -> None:
            outside = new.in_limits is False
            self.say(
                f"{old.name.replace('_', ' ')} corrected from {old.value} to {new.value}{unit}"
                f" (value {new.value_id} replaces {old.value_id}); the original stays in the"
                " record."
                + (" It is outside its limits: a deviation was opened." if outside else ""),
                error=outside,
            )
            self.reload()
            if outside:
                self.post_message(DeviationsRequested())

        def answered(values: dict[str, str] | None) -> None:
            if not values:
                return
            new_value = values["value"].strip()
            if limits:
                new_value = new_value.replace(",", ".")
            self.run_blocking(
                lambda: batches.correct_value(
                    session, info.batch_id, old.value_id, new_value, values["text"]
                ),
                corrected,
                lambda text, _exc: self.say(text, error=True),
            )

        self.app.push_screen(
            FormDialog(f"Correct {old.name.replace('_', ' ')}", fields, note=note), answered
        )

    @work(group="batch", exclusive=True, exit_on_error=False)
    async def _batch_call(self, what: str, values: dict[str, str]) -> None:
        session, batches, info = self.ctx.session, self.ctx.batches, self.info
        if session is None or batches is None or info is None:
            return
        try:
            if what == "hold":
                await batches.hold(session, info.batch_id)
            elif what == "resume":
                await batches.resume(session, info.batch_id, values["text"])
            else:
                await batches.abort(session, info.batch_id, values["code"], values["text"])
            done = {"hold": "is held", "resume": "is running again"}.get(what, "is aborted")
            then = ""
            if what == "hold":
                then = (
                    " Resume: F6."
                    if self.ctx.may("batch.resume")
                    else (" A supervisor resumes it (F6 when logged in).")
                )
            self.say(f"Batch {info.batch_id} {done}.{then}")
        except Exception as exc:
            self.say(describe_error(exc), error=True)
        self.reload()
        self.post_message(DeviationsRequested())

    def action_deviations(self) -> None:
        self.post_message(DeviationsRequested())


def _entered(data: Mapping[str, Any]) -> str:
    """What was entered, as a person reads it (not a Python dict)."""

    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        return "-" if value is None else str(value)

    if not data:
        return "nothing entered"
    return ", ".join(f"{name.replace('_', ' ')}: {shown(value)}" for name, value in data.items())
