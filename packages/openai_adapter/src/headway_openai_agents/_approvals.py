"""Approvals through the SDK's RunState: interruptions become headway escalation records; a person's
approve / reject / edit / answer is recorded by headway and applied to the RunState; `resume` continues.

The SDK cannot change the arguments of an interrupted call, so an edit is applied as a rejection whose
message gives the model the corrected arguments; the model's new call with exactly those arguments is
the edited call (already re-checked by the policy and approved by the editor) and runs once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agents import (
    Agent,
    FunctionTool,
    RunContextWrapper,
    Runner,
    RunResult,
    RunResultStreaming,
    RunState,
    ToolApprovalItem,
)
from agents.result import RunResultBase

from headway import Decision, Finding, Guard, HeadwayError, HumanAction, Run
from headway.escalations import HUMAN_ACTIONS

from ._errors import HeadwayStopped
from ._gate import PAUSING, NeedsApproval, decide
from ._runs import canonical, explicit_run_id, extras, headway_run


@dataclass(frozen=True)
class Escalation:
    """One call waiting for a person: what the reviewer sees, and what `resolve` takes (`call_id`).

    `action` is headway's decision (`escalate`: approve, reject or edit; `clarify`: answer `question`),
    or `approval` when the tool itself requires approval (its own `needs_approval`) and headway's policy
    allowed it.
    """

    run_id: str
    call_id: str
    tool: str
    args: Any
    agent: str
    action: Literal["escalate", "clarify", "approval"]
    reason: str
    question: str | None
    findings: tuple[Finding, ...]
    decision: Decision

    @property
    def escalation_id(self) -> str | None:
        """The record in the guard's escalation store (decided in the inbox or with the CLI)."""
        return self.decision.escalation_id

    def to_dict(self) -> dict[str, Any]:
        return {
            "escalation_id": self.escalation_id,
            "run_id": self.run_id,
            "call_id": self.call_id,
            "tool": self.tool,
            "args": self.args,
            "agent": self.agent,
            "action": self.action,
            "reason": self.reason,
            "question": self.question,
            "findings": [f.to_dict() for f in self.findings],
            "decision": self.decision.to_dict(),
        }


Source = RunResult | RunResultStreaming | RunState[Any, Any]


def _wrapper(state: RunState[Any, Any]) -> RunContextWrapper[Any] | None:
    # Private, and the only way to it: a RunState keeps the run's context wrapper (the user's context,
    # with the headway run id, and the SDK's approvals) in `_context`. If the SDK renames it, the
    # approvals tests fail on the first resolve (tests/openai_agents/test_approvals.py).
    wrapper = getattr(state, "_context", None)
    return wrapper if isinstance(wrapper, RunContextWrapper) else None


def _user_context(source: Source) -> Any:
    if isinstance(source, RunResultBase):
        return source.context_wrapper.context
    wrapper = _wrapper(source)
    return None if wrapper is None else wrapper.context


def _already_decided(state: RunState[Any, Any], item: ToolApprovalItem) -> bool:
    wrapper = _wrapper(state)
    return (
        wrapper is not None and wrapper.is_tool_approved(str(item.tool_name), str(item.call_id)) is not None
    )


def _run_id(source: Source, run_id: str | None) -> str:
    rid = run_id or explicit_run_id(_user_context(source))
    if rid is None:
        raise HeadwayError(
            "this run has no headway run id, so its approvals cannot be matched to headway's record: "
            'pass context={"headway_run_id": "..."} to Runner.run, or run it inside `with headway_run("...")`'
        )
    return rid


def _items(source: Source) -> list[ToolApprovalItem]:
    if isinstance(source, RunState):
        return list(source.get_interruptions())
    return list(source.interruptions)


def _own_approval(item: ToolApprovalItem) -> Any:
    """The tool's own needs_approval setting (False when only headway can ask for a person)."""
    agent = item.agent
    name = item.tool_name or item.raw_item.name  # type: ignore[union-attr]
    for tool in getattr(agent, "tools", ()):
        if isinstance(tool, FunctionTool) and tool.name == name:
            na = tool.needs_approval
            return na.original if isinstance(na, NeedsApproval) else na
    return True  # a tool headway does not guard: its interruption is the SDK's own


def _args(item: ToolApprovalItem) -> Any:
    raw = item.arguments
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return raw


def _decide(run: Run, item: ToolApprovalItem) -> tuple[str, Decision]:
    name = str(item.tool_name or item.name)
    return decide(run, name, item.arguments or "", str(item.call_id))


def escalations(source: Source, guard: Guard, *, run_id: str | None = None) -> list[Escalation]:
    """The interrupted calls that wait for a person, as headway escalation records.

    `source` is a run result or a RunState. Interruptions that need no person (the SDK interrupts
    without asking headway when validation would change a call's arguments) are not listed: `resume`
    settles them by the policy.
    """
    rid = _run_id(source, run_id)
    run = guard.start_run(rid)
    out = []
    for item in _items(source):
        _, d = _decide(run, item)
        if d.action in PAUSING:
            kind: Literal["escalate", "clarify", "approval"] = (
                "clarify" if d.action == "clarify" else "escalate"
            )
            reason = d.reason
        elif d.action == "allow" and _own_approval(item) is not False:
            kind, reason = "approval", f"{item.tool_name} requires approval (the tool's own needs_approval)"
        else:
            continue
        out.append(
            Escalation(
                rid,
                str(item.call_id),
                str(item.tool_name),
                _args(item),
                item.agent.name,
                kind,
                reason,
                d.question,
                d.findings,
                d,
            )
        )
    return out


def resolve(
    state: RunState[Any, Any],
    guard: Guard,
    call_id: str,
    action: HumanAction,
    *,
    by: str,
    message: str | None = None,
    args: Mapping[str, Any] | None = None,
    text: str | None = None,
    run_id: str | None = None,
) -> Decision:
    """Record a person's decision on an interrupted call and apply it to `state`; returns headway's
    new decision. Then continue with `resume`.

    approve: the call runs. reject: it does not; `message` goes to the model. edit: `args` are checked
    by the policy again; if allowed, the model is told to call again with exactly those arguments, and
    that call runs as the approved one. answer: `text` is the user's answer to a clarifying question;
    the call is decided again with it. Raises HeadwayError, leaving `state` untouched, for a call that
    is not pending, an unknown action, a missing `by`, edit without `args` or answer without `text`.
    """
    if action not in HUMAN_ACTIONS:
        raise HeadwayError(f"action must be one of {HUMAN_ACTIONS}, got {action!r}")
    if not isinstance(by, str) or not by.strip():
        raise HeadwayError("`by` must name who decided")
    items = {str(i.call_id): i for i in state.get_interruptions()}
    item = items.get(str(call_id))
    if item is None:
        raise HeadwayError(
            f"no interrupted call {call_id!r} in this run state; pending: {sorted(items) or 'none'}"
        )
    if action == "edit" and not isinstance(args, Mapping):
        raise HeadwayError("an edit needs the new `args` (a mapping of argument names to values)")
    if action == "answer" and not (isinstance(text, str) and text.strip()):
        raise HeadwayError("an answer needs the user's `text`")
    run = guard.start_run(_run_id(state, run_id))
    cid, d = _decide(run, item)
    tool = str(item.tool_name)
    if d.action not in PAUSING:
        if d.action == "allow" and _own_approval(item) is not False:
            # The tool's own approval, not headway's: the SDK decision is all there is to apply.
            if action == "approve":
                state.approve(item)
                return d
            if action == "reject":
                state.reject(item, rejection_message=message or f"{tool} was not approved by {by}")
                return Decision.block(message or f"rejected by {by}", tool=tool, call_id=cid)
            raise HeadwayError(f"{tool} waits for the tool's own approval: only approve or reject apply")
        raise HeadwayError(f"call {call_id!r} is not waiting for a person (headway decided {d.action!r})")
    new = run.resolve(
        cid, action, by=by, message=message, args=dict(args) if args is not None else None, text=text
    )
    if action == "edit" and args is not None and new.action in ("allow", *PAUSING):
        extras(run).edits[(tool, canonical(dict(args)))] = cid
        state.reject(
            item,
            rejection_message=(
                f"[headway] {by} edited this call. It did not run as proposed: call {tool} again with exactly "
                f"these arguments: {json.dumps(dict(args), sort_keys=True, default=str)}"
            ),
        )
    elif new.action == "allow":
        state.approve(item)
    elif new.action in PAUSING:
        pass  # still waiting for a person: the interruption stays pending
    else:
        answered = f"[headway] the user answered: {text!r}. " if action == "answer" else ""
        note = message if action == "reject" and message else new.for_model()
        state.reject(item, rejection_message=answered + note)
    return new


def resolve_from_store(
    state: RunState[Any, Any], guard: Guard, *, run_id: str | None = None
) -> list[Decision]:
    """Apply the decisions people recorded in the escalation store (the inbox, `headway escalations
    ...`, `guard.escalations.decide`) to `state`; then continue with `resume`.

    Raises HeadwayError, applying nothing, while any of the state's escalations is still pending.
    """
    pending = escalations(state, guard, run_id=run_id)
    stored = [(e, guard.escalations.get(e.escalation_id)) for e in pending if e.escalation_id]
    waiting = [e.escalation_id for e, rec in stored if rec is None or rec.pending]
    if waiting:
        raise HeadwayError(f"still waiting for a person's decision: {', '.join(map(str, waiting))}")
    out = []
    for e, rec in stored:
        assert rec is not None
        res = rec.resolution()
        out.append(
            resolve(
                state,
                guard,
                e.call_id,
                res["action"],
                by=res["by"],
                message=res.get("message"),
                args=res.get("args"),
                text=res.get("text"),
                run_id=e.run_id,
            )
        )
    return out


def settle(state: RunState[Any, Any], guard: Guard, *, run_id: str | None = None) -> list[Decision]:
    """Apply headway's decision to interruptions that need no person; returns those decisions."""
    run = guard.start_run(_run_id(state, run_id))
    out = []
    for item in state.get_interruptions():
        if _already_decided(state, item):
            continue  # a person's decision, applied by `resolve`
        _, d = _decide(run, item)
        if d.action in PAUSING or (d.action == "allow" and _own_approval(item) is not False):
            continue
        if d.action == "allow":
            state.approve(item)
        else:
            state.reject(item, rejection_message=d.for_model())
        out.append(d)
    return out


async def resume(
    agent: Agent[Any], state: RunState[Any, Any], guard: Guard, *, run_id: str | None = None, **kwargs: Any
) -> RunResult:
    """Settle what needs no person, then `Runner.run(agent, state, **kwargs)` under the run's id.

    Raises HeadwayStopped (without running) if headway stopped the run while it was paused.
    """
    rid = _run_id(state, run_id)
    for d in settle(state, guard, run_id=rid):
        if d.action == "stop":
            raise HeadwayStopped(d, rid)
    with headway_run(rid):
        return await Runner.run(agent, state, **kwargs)
