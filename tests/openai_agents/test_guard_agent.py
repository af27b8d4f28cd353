"""`guard_agent` returns a guarded clone of the whole agent graph and leaves the caller's objects alone."""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
from agents import (
    Agent,
    FunctionTool,
    Handoff,
    RunState,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrailData,
    WebSearchTool,
    function_tool,
    handoff,
    tool_input_guardrail,
)

from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from headway import Guard, HeadwayError
from headway_openai_agents import check_sdk_version, guard_agent
from headway_openai_agents._gate import NeedsApproval


@tool_input_guardrail
def mine(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
    return ToolGuardrailFunctionOutput.allow()


@function_tool(tool_input_guardrails=[mine])
def lookup(order_id: str) -> str:
    """Look up an order."""
    return order_id


def _tools(agent: Agent[Any]) -> list[FunctionTool]:
    return [t for t in agent.tools if isinstance(t, FunctionTool)]


def test_clone_does_not_mutate_or_share(guard: Guard, desk: SupportDesk) -> None:
    triage = build_agents(desk)
    refunds = triage.handoffs[0]
    assert isinstance(refunds, Agent)
    before = [
        (id(t), t.tool_input_guardrails, t.tool_output_guardrails, t.needs_approval) for t in _tools(triage)
    ]
    lists = (id(triage.tools), id(triage.handoffs), id(refunds.tools))
    g1 = guard_agent(triage, guard)
    g2 = guard_agent(triage, guard)
    assert [
        (id(t), t.tool_input_guardrails, t.tool_output_guardrails, t.needs_approval) for t in _tools(triage)
    ] == before
    assert (id(triage.tools), id(triage.handoffs), id(refunds.tools)) == lists
    assert triage.hooks is None
    assert refunds.hooks is None
    assert g1 is not triage
    assert g1.name == "triage"
    originals = {id(t) for a in (triage, refunds) for t in a.tools}
    for clone in (g1, g2):
        assert not originals & {id(t) for t in clone.tools}
        for t in _tools(clone):
            assert isinstance(t.needs_approval, NeedsApproval)
            assert [g.get_name() for g in t.tool_input_guardrails or ()] == ["headway"]
    assert not {id(t) for t in g1.tools} & {id(t) for t in g2.tools}
    assert g1.tools[0].tool_input_guardrails is not g2.tools[0].tool_input_guardrails  # type: ignore[union-attr]
    # Handoff targets are guarded clones too, under the same names.
    [r1] = g1.handoffs
    assert isinstance(r1, Agent)
    assert r1 is not refunds
    assert r1.name == "refunds"
    assert all(isinstance(t.needs_approval, NeedsApproval) for t in _tools(r1))


def test_existing_guardrails_and_approval_are_kept(guard: Guard) -> None:
    agent = Agent[Any](name="a", tools=[lookup, WebSearchTool()])
    guarded = guard_agent(agent, guard)
    tool, web = guarded.tools
    assert isinstance(tool, FunctionTool)
    assert isinstance(web, WebSearchTool)
    assert [g.get_name() for g in tool.tool_input_guardrails or ()] == ["mine", "headway"]
    assert [g.get_name() for g in lookup.tool_input_guardrails or ()] == ["mine"]
    assert lookup.tool_output_guardrails is None
    # Guarding a guarded agent keeps one layer of headway.
    again = guard_agent(guarded, guard)
    t2 = again.tools[0]
    assert isinstance(t2, FunctionTool)
    assert [g.get_name() for g in t2.tool_input_guardrails or ()] == [
        "mine",
        "headway",
    ]
    assert isinstance(t2.needs_approval, NeedsApproval)
    assert t2.needs_approval.original is False


async def test_handoff_agent_ref(guard: Guard, desk: SupportDesk) -> None:
    """Handoff objects point at the guarded clone, also for RunState's agent map (private `_agent_ref`)."""
    triage = build_agents(desk)
    refunds = triage.handoffs[0]
    assert isinstance(refunds, Agent)
    calls: list[str] = []
    triage = triage.clone(handoffs=[handoff(refunds, on_handoff=lambda ctx: calls.append("handoff"))])
    guarded = guard_agent(triage, guard)
    [h] = guarded.handoffs
    assert isinstance(h, Handoff)
    assert h is not triage.handoffs[0]
    target = h._agent_ref() if h._agent_ref is not None else None
    assert isinstance(target, Agent)
    assert target is not refunds
    assert target.name == "refunds"
    assert isinstance(target.tools[0].needs_approval, NeedsApproval)  # type: ignore[union-attr]
    got = await h.on_invoke_handoff(_ctx(), "")
    assert got is target
    assert calls == ["handoff"]
    original = triage.handoffs[0]
    assert isinstance(original, Handoff)
    assert original._agent_ref is not None
    assert original._agent_ref() is refunds
    # A RunState of the guarded graph serialises and loads against it.
    state: RunState[Any, Any] = RunState(
        context=_ctx(), original_input="hi", starting_agent=guarded, max_turns=3
    )
    loaded = await RunState.from_string(guarded, state.to_string())
    assert loaded is not None


def _ctx() -> Any:
    from agents import RunContextWrapper

    return RunContextWrapper(context={})


def test_cycles_between_agents(guard: Guard) -> None:
    a = Agent[Any](name="a", tools=[lookup])
    b = Agent[Any](name="b", handoffs=[a])
    a.handoffs = [b]
    ga = guard_agent(a, guard)
    [gb] = ga.handoffs
    assert isinstance(gb, Agent)
    assert gb.name == "b"
    assert gb.handoffs == [ga]
    assert a.handoffs == [b]
    assert b.handoffs == [a]


def test_unsupported_sdk_version_names_both(monkeypatch: pytest.MonkeyPatch, guard: Guard) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.22.3")
    check_sdk_version.cache_clear()
    try:
        with pytest.raises(HeadwayError, match=r"openai-agents>=0\.23\.1,<1.*0\.22\.3 is installed"):
            guard_agent(Agent[Any](name="a"), guard)
    finally:
        monkeypatch.undo()
        check_sdk_version.cache_clear()
    assert check_sdk_version() == importlib.metadata.version("openai-agents")


def test_wrong_arguments(guard: Guard) -> None:
    with pytest.raises(TypeError, match=r"needs an agents\.Agent"):
        guard_agent("triage", guard)  # type: ignore[type-var]
    with pytest.raises(TypeError, match=r"needs a headway\.Guard"):
        guard_agent(Agent[Any](name="a"), object())  # type: ignore[arg-type]
