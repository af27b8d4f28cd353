"""`guard_agent`: a guarded clone of an agent graph, leaving the caller's agents and tools untouched."""

from __future__ import annotations

import copy
import dataclasses
import weakref
from typing import Any, TypeVar

from agents import Agent, FunctionTool, Handoff, RunContextWrapper

from headway import Guard

from ._compat import check_sdk_version
from ._gate import Gate, NeedsApproval
from ._hooks import GuardedAgentHooks, Observer

A = TypeVar("A", bound=Agent[Any])


def guard_agent(agent: A, guard: Guard, *, hooks: bool = True) -> A:
    """A clone of `agent` (and of every agent it can hand off to) enforcing `guard`'s policy.

    Each function tool is copied with headway's tool input and output guardrails and a
    `needs_approval` bound to the policy (escalate and clarify become the SDK's interruptions). A final
    answer claiming an outcome no tool result backs is withheld: the SDK raises
    `OutputGuardrailTripwireTriggered` (from headway's `headway_final_answer` guardrail) instead of
    returning it. With `hooks=True` the clones also record the conversation (model turns, user
    messages) into the run, so no `HeadwayRunHooks` is needed, and the answer is checked as the model
    gives it; an agent whose final output may not be a model's answer (see `_answer_needs_guardrail`)
    gets `headway_final_answer` as an output guardrail instead. Agent names are kept, so a RunState
    saved from a guarded graph resumes against a guarded graph rebuilt the same way in another process.
    """
    check_sdk_version()
    if not isinstance(agent, Agent):
        raise TypeError(f"guard_agent needs an agents.Agent, got {type(agent).__name__}")
    if not isinstance(guard, Guard):
        raise TypeError(f"guard_agent needs a headway.Guard, got {type(guard).__name__}")
    gate = Gate(guard)
    observer = Observer(guard) if hooks else None
    clones: dict[int, Agent[Any]] = {}
    return _clone(agent, gate, observer, clones)  # type: ignore[return-value]


def _clone(
    agent: Agent[Any], gate: Gate, observer: Observer | None, clones: dict[int, Agent[Any]]
) -> Agent[Any]:
    hit = clones.get(id(agent))
    if hit is not None:
        return hit
    agent_hooks = agent.hooks
    as_guardrail = observer is None or _answer_needs_guardrail(agent)
    if observer is not None:
        withhold = None if as_guardrail else gate.answer_guardrail
        agent_hooks = GuardedAgentHooks(observer, agent.hooks, withhold)
    # Fresh lists everywhere: Agent.clone is shallow and would share them with the caller's agent.
    clone = agent.clone(
        tools=[_guard_tool(t, gate) for t in agent.tools],
        handoffs=[],
        hooks=agent_hooks,
        input_guardrails=list(agent.input_guardrails),
        output_guardrails=[
            *(g for g in agent.output_guardrails if g.name != gate.answer_guardrail.name),
            *((gate.answer_guardrail,) if as_guardrail else ()),
        ],
        mcp_servers=list(agent.mcp_servers),
    )
    clones[id(agent)] = clone  # before the handoffs: agents may hand back to each other
    clone.handoffs = [_guard_handoff(h, gate, observer, clones) for h in agent.handoffs]
    return clone


def _answer_needs_guardrail(agent: Agent[Any]) -> bool:
    """Whether the agent's final output may be something other than the text of a model turn without
    function calls, which is what the agent hooks judge: a tool's result (`tool_use_behavior`), a
    structured `output_type`, or a turn of a hosted tool the SDK runs itself. Such an agent gets the
    output guardrail, which judges whatever the final output is."""
    return (
        agent.tool_use_behavior != "run_llm_again"
        or agent.output_type not in (None, str)
        or any(not isinstance(t, FunctionTool) for t in agent.tools)
    )


def _guard_tool(tool: Any, gate: Gate) -> Any:
    if not isinstance(tool, FunctionTool):
        return tool  # hosted, shell and MCP-hosted tools have no guardrails to attach to
    # copy.copy re-binds the tool's invoker to the copy; the lists are new, the caller's stay as they were.
    guarded = copy.copy(tool)
    original = tool.needs_approval
    if isinstance(original, NeedsApproval):  # guarding an already guarded agent: keep one layer
        original = original.original
    guarded.needs_approval = gate.needs_approval(tool.name, original)
    # Ours last among input guardrails (a call someone else rejects never reaches headway's ledger as
    # run), first among output guardrails (headway judges the raw result, before any rewrite).
    guarded.tool_input_guardrails = [
        *(g for g in tool.tool_input_guardrails or () if g.name != gate.input_guardrail.name),
        gate.input_guardrail,
    ]
    guarded.tool_output_guardrails = [
        gate.output_guardrail,
        *(g for g in tool.tool_output_guardrails or () if g.name != gate.output_guardrail.name),
    ]
    return guarded


def _guard_handoff(
    h: Agent[Any] | Handoff[Any, Any], gate: Gate, observer: Observer | None, clones: dict[int, Agent[Any]]
) -> Agent[Any] | Handoff[Any, Any]:
    if isinstance(h, Agent):
        return _clone(h, gate, observer, clones)
    target = h._agent_ref() if h._agent_ref is not None else None
    if not isinstance(target, Agent):
        return h  # a custom handoff that builds its own agent: nothing we can guard ahead of time
    guarded_target = _clone(target, gate, observer, clones)
    invoke = h.on_invoke_handoff

    async def on_invoke_handoff(ctx: RunContextWrapper[Any], args: str) -> Agent[Any]:
        # The original closure runs the user's on_handoff and returns the original agent.
        got = await invoke(ctx, args)
        return guarded_target if got is target else got

    new = dataclasses.replace(h, on_invoke_handoff=on_invoke_handoff)
    # Private: replace() resets this init=False weakref, and RunState builds its agent map from it
    # (without it, RunState.from_string cannot find the handoff target). The closure above keeps the
    # clone alive. Checked by tests/openai_agents/test_guard_agent.py::test_handoff_agent_ref.
    new._agent_ref = weakref.ref(guarded_target)
    return new
