"""Per-call enforcement: a `needs_approval` bound to the policy and the tool input/output guardrails.

The policy is consulted in `needs_approval` (escalate and clarify become the SDK's interruption) and
again in the input guardrail, which runs for every call the SDK executes, including calls that
`always_approve` or a direct `RunState.approve` let through: headway's record of the call decides, so a
call still waiting for a person never runs. Re-delivering a call id to headway returns its recorded
decision, so asking twice costs a dictionary lookup and is not counted as a repeat.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from agents import (
    Agent,
    GuardrailFunctionOutput,
    OutputGuardrail,
    RunContextWrapper,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrail,
    ToolInputGuardrailData,
    ToolOutputGuardrail,
    ToolOutputGuardrailData,
)

from headway import Decision, Guard, Run, ToolCall

from ._errors import HeadwayStopped
from ._runs import canonical, extras, parse_args, run_for

GUARDRAIL_NAME = "headway"
ANSWER_GUARDRAIL = "headway_final_answer"
PAUSING = ("escalate", "clarify")
# Allowed calls carry no output_info: the decision is in headway's trace store, and the hot path stays cheap.
_ALLOW = ToolGuardrailFunctionOutput.allow()
# The text the SDK's default `failure_error_function` returns when a function tool raises.
_SDK_TOOL_ERROR = "An error occurred while running the tool"


def as_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    try:
        return json.dumps(output, default=str)
    except (TypeError, ValueError):
        return str(output)


def result_message(d: Decision) -> str:
    """What the model sees instead of a tool result headway does not trust."""
    tool = d.tool or "the tool"
    if d.action == "escalate":
        return (
            f"[headway] {tool} ran, but its result needs a person's review before anyone relies on it; "
            f"do not tell the user it succeeded. {d.reason}"
        )
    if d.action == "block":
        return f"[headway] the result of {tool} looks wrong; do not rely on it. {d.reason}"
    return d.for_model()


def decide(run: Run, tool: str, raw_args: Any, sdk_call_id: str) -> tuple[str, Decision]:
    """headway's call id for this SDK call, and the decision on it (recorded once per call id)."""
    args = parse_args(raw_args)
    ex = extras(run)
    cid = ex.alias.get(sdk_call_id)
    if cid is None and ex.edits and isinstance(args, dict) and run.view.call(sdk_call_id) is None:
        # The model re-issued a call a person edited: it is that call, with the approved arguments.
        with ex.lock:
            cid = ex.edits.pop((tool, canonical(args)), None)
            if cid is not None:
                ex.alias[sdk_call_id] = cid
    cid = cid or sdk_call_id
    return cid, run.tool_call(tool, args, cid)


def _replayed(call: ToolCall) -> ToolGuardrailFunctionOutput:
    """A call that already ran: its recorded result goes to the model, and the tool does not run again."""
    out = f"[headway] error: {call.error}" if call.error is not None else as_text(call.output)
    return ToolGuardrailFunctionOutput.reject_content(
        out, output_info={"headway": "replayed", "call_id": call.call_id}
    )


def answer_verdict(d: Decision) -> GuardrailFunctionOutput:
    """headway's answer guardrail output for a decision on a final answer: the decision as `output_info`,
    tripped unless allowed. One form for the output guardrail and the agent hooks that stand in for it."""
    return GuardrailFunctionOutput(output_info=d.to_dict(), tripwire_triggered=d.action != "allow")


class Gate:
    """headway's decisions for the function tools of one guarded agent graph."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.input_guardrail: ToolInputGuardrail[Any] = ToolInputGuardrail(
            self._check_input, name=GUARDRAIL_NAME
        )
        self.output_guardrail: ToolOutputGuardrail[Any] = ToolOutputGuardrail(
            self._check_output, name=GUARDRAIL_NAME
        )
        self.answer_guardrail: OutputGuardrail[Any] = OutputGuardrail(
            self._check_answer, name=ANSWER_GUARDRAIL
        )

    def decide(self, run: Run, tool: str, raw_args: Any, sdk_call_id: str) -> tuple[str, Decision]:
        return decide(run, tool, raw_args, sdk_call_id)

    def needs_approval(self, tool: str, original: Any) -> NeedsApproval:
        return NeedsApproval(self, tool, original)

    def _check_answer(
        self, ctx: RunContextWrapper[Any], agent: Agent[Any], output: Any
    ) -> GuardrailFunctionOutput:
        """The final answer: one that claims an outcome no result backs trips the SDK's output guardrail
        (`OutputGuardrailTripwireTriggered`, whose `guardrail_result.output.output_info` is the decision),
        so it is not handed to the user as it is."""
        run = run_for(self.guard, ctx)
        ex = extras(run)
        d, ex.answer = ex.answer, None
        if d is None:  # no hooks recorded this turn (guard_agent(hooks=False) without HeadwayRunHooks)
            d = run.model(as_text(output), final=True)
        return answer_verdict(d)

    def _check_input(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        run = run_for(self.guard, ctx)
        cid = extras(run).alias.get(ctx.tool_call_id, ctx.tool_call_id)
        prior = run.view.call(cid)
        if prior is not None and prior.done:
            # Exactly once: this call already ran and its result is recorded (a resumed or replayed
            # state): give the model the recorded result instead of running the side effect again.
            return _replayed(prior)
        # Decided in needs_approval or approved by a person: asking again returns the recorded decision
        # (a dictionary lookup), except for a write a crash left with an unknown outcome, which headway
        # escalates instead of letting it run a second time.
        cid, d = self.decide(run, ctx.tool_name, ctx.tool_arguments, ctx.tool_call_id)
        if d.action == "allow":
            # The ledger's word last: run it now, or it ran in another process (replay its result), or
            # it is executing elsewhere / its outcome is unknown (a person is asked; it does not run).
            start = run.begin(cid)
            if start == "run":
                return _ALLOW
            done = run.view.call(cid)
            if start == "done" and done is not None:
                return _replayed(done)
            d = run.decision(cid) or d
        if d.action == "allow":
            return _ALLOW
        if d.action == "stop":
            raise HeadwayStopped(d, run.run_id)
        if d.action in PAUSING:
            # Only reachable when the SDK's approval was given outside headway (always_approve, or a
            # direct RunState.approve): the call is still waiting for a person, so it does not run.
            msg = (
                f"[headway] {d.tool} did not run: it needs a person's decision through headway "
                f"({d.action}). {d.question or d.reason}"
            )
            return ToolGuardrailFunctionOutput.reject_content(msg, output_info=d.to_dict())
        return ToolGuardrailFunctionOutput.reject_content(d.for_model(), output_info=d.to_dict())

    def _check_output(self, data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        run = run_for(self.guard, ctx)
        cid = extras(run).alias.get(ctx.tool_call_id, ctx.tool_call_id)
        output: Any = data.output
        error: str | None = None
        if isinstance(output, str) and output.startswith(_SDK_TOOL_ERROR):
            # The SDK turned the tool's exception into this text (its default failure_error_function):
            # for headway it is a failed call, so a later claim of success is caught as such.
            output, error = None, data.output
        d = run.tool_result(cid, output=output, error=error, tool=ctx.tool_name)
        if d.action == "allow":
            return _ALLOW
        if d.action == "stop":
            raise HeadwayStopped(d, run.run_id)
        return ToolGuardrailFunctionOutput.reject_content(result_message(d), output_info=d.to_dict())


class NeedsApproval:
    """A tool's `needs_approval`: the policy's escalate/clarify, or the tool's own setting."""

    def __init__(self, gate: Gate, tool: str, original: Any) -> None:
        self.gate = gate
        self.tool = tool
        self.original = original

    async def __call__(self, ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        run = run_for(self.gate.guard, ctx)
        _, d = self.gate.decide(run, self.tool, params, call_id)
        if d.action in PAUSING:
            return True
        if d.action != "allow":
            return False  # block and stop are enforced by the input guardrail, without a person
        if callable(self.original):
            verdict = self.original(ctx, params, call_id)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            return bool(verdict)
        return bool(self.original)
