"""HeadwayMiddleware on `langchain.agents.create_agent`: the same decisions as the core on the six
scenarios, pauses and resumes through the agent's checkpointer, a stop ends the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.agents.middleware.types import InputAgentState
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from examples.langgraph_support_desk.agent import desk_tools
from examples.langgraph_support_desk.play import play
from examples.langgraph_support_desk.scripted import ScriptedChatModel, script_for, turn
from examples.support_desk import SCENARIOS, Scenario, SupportDesk
from examples.support_desk.core_demo import play as core_play
from headway import Guard, Policy
from headway.traces import MemoryStore
from headway_langgraph import HeadwayMiddleware

from ._graphs import ALICE, config
from .test_exactly_once import SCRIPT


def user(text: str) -> InputAgentState:
    return {"messages": [HumanMessage(text)]}


def agent_for(guard: Guard, desk: SupportDesk, script: list[AIMessage]) -> Any:
    """The support desk as a create_agent agent: scripted model, the desk's tools, headway's middleware."""
    return create_agent(
        ScriptedChatModel(script=script),
        desk_tools(desk),
        middleware=[HeadwayMiddleware(guard)],
        checkpointer=InMemorySaver(),
    )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_same_decisions_as_the_core(scenario: Scenario, policy: Policy, tmp_path: Path) -> None:
    with Guard(policy, store=MemoryStore()) as guard:
        core_desk = SupportDesk(tmp_path / "core.db", faults=scenario.faults)
        expected = core_play(scenario, guard, core_desk, run_id="core")
        desk = SupportDesk(tmp_path / "agent.db", faults=scenario.faults)
        agent = agent_for(guard, desk, script_for(scenario))
        got = play(scenario, guard, desk, InMemorySaver(), thread_id="agent", graph=agent)
        assert {k: d.action for k, d in got.items()} == {k: d.action for k, d in expected.items()}
        assert desk.count("refunds") == core_desk.count("refunds")


def test_stop_ends_the_run_with_a_message_from_headway(guard: Guard, desk: SupportDesk) -> None:
    script = [turn("", ("lookup_order", f"c{i}", {"order_id": "A1"})) for i in range(8)]
    agent = agent_for(guard, desk, script)
    out = agent.invoke(user(f"{ALICE} where is A1?"), config("t"))
    last = out["messages"][-1]
    assert isinstance(last, AIMessage)
    assert last.name == "headway"
    assert "stopped" in str(last.content)
    assert sum(isinstance(m, AIMessage) and m.name != "headway" for m in out["messages"]) == 4


async def test_parallel_calls_pause_and_resume_once_async(guard: Guard, desk: SupportDesk) -> None:
    from langchain.agents.middleware import AgentMiddleware

    agent = agent_for(guard, desk, SCRIPT)
    assert isinstance(HeadwayMiddleware(guard), AgentMiddleware)
    cfg = config("t")
    await agent.ainvoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
    out = await agent.ainvoke(user("Yes, go ahead."), cfg)
    assert [i.value["call_id"] for i in out["__interrupt__"]] == ["c4"]
    await agent.ainvoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 1)


def test_an_unsupported_final_answer_goes_back_once_then_is_replaced(guard: Guard, desk: SupportDesk) -> None:
    # No refund ran, yet the model says it refunded: the user must never read that claim.
    claim = "I have refunded $40 for order A1."
    agent = agent_for(guard, desk, [turn(claim), turn(claim)])
    out = agent.invoke(user(f"{ALICE} my order A1 arrived broken, refund it"), config("t"))
    msgs = out["messages"]
    feedback = [m for m in msgs if isinstance(m, HumanMessage) and m.name == "headway"]
    assert len(feedback) == 1  # sent back once
    assert "answer the user again" in str(feedback[0].content).casefold()
    last = msgs[-1]
    assert isinstance(last, AIMessage)
    assert last.name == "headway"
    assert str(last.content).startswith("[headway] the final answer cannot be sent")  # the claim, withheld
    assert not any(isinstance(m, AIMessage) and m.content == claim for m in msgs)  # replaced, not kept
    # headway's note is not the user's word: "$40" and "A1" are not grounded by it
    assert guard.start_run("t").view.user_messages == [f"{ALICE} my order A1 arrived broken, refund it"]


def test_a_corrected_final_answer_is_delivered(guard: Guard, desk: SupportDesk) -> None:
    fixed = "I could not refund order A1 yet: I need to look it up first."
    agent = agent_for(guard, desk, [turn("I have refunded $40 for order A1."), turn(fixed)])
    out = agent.invoke(user(f"{ALICE} my order A1 arrived broken, refund it"), config("t"))
    last = out["messages"][-1]
    assert isinstance(last, AIMessage)
    assert last.content == fixed


def test_a_stop_on_a_model_turn_answers_its_calls_and_ends_the_run(desk: SupportDesk, tmp_path: Path) -> None:
    import dataclasses

    from examples.support_desk.policy import load_policy
    from headway import Budgets

    policy = dataclasses.replace(load_policy(), budgets=Budgets(steps=2))
    with Guard(policy, store=MemoryStore()) as guard:
        script = [
            turn("", ("find_user", "c1", {"email": "alice@example.com"})),
            turn("", ("lookup_order", "c2", {"order_id": "A1"})),
        ]
        out = agent_for(guard, desk, script).invoke(user(f"{ALICE} where is A1?"), config("t"))
        *_, proposed, answer, last = out["messages"]
        assert isinstance(proposed, AIMessage)
        assert [c["id"] for c in proposed.tool_calls] == ["c2"]
        # the proposed call is answered (the history stays valid) but never ran
        assert isinstance(answer, ToolMessage)
        assert (answer.tool_call_id, answer.status) == ("c2", "error")
        assert guard.start_run("t").view.call("c2") is None
        assert isinstance(last, AIMessage)
        assert last.name == "headway"
        assert "stopped" in str(last.content)


def test_the_middleware_adds_no_graph_nodes(guard: Guard, desk: SupportDesk) -> None:
    # before_model / after_model hooks would each be a node, run at every model turn (about 30% of a
    # short create_agent run); headway wraps the model and tool calls instead.
    nodes = set(agent_for(guard, desk, []).get_graph().nodes)
    assert nodes == set(create_agent(ScriptedChatModel(script=[]), desk_tools(desk)).get_graph().nodes)


async def test_an_unsupported_final_answer_goes_back_once_async(guard: Guard, desk: SupportDesk) -> None:
    fixed = "I could not refund order A1 yet: I need to look it up first."
    agent = agent_for(guard, desk, [turn("I have refunded $40 for order A1."), turn(fixed)])
    out = await agent.ainvoke(user(f"{ALICE} my order A1 arrived broken, refund it"), config("t"))
    names = [(type(m).__name__, m.name) for m in out["messages"]]
    assert names == [
        ("HumanMessage", None),
        ("AIMessage", "headway"),
        ("HumanMessage", "headway"),
        ("AIMessage", None),
    ]
    assert out["messages"][-1].content == fixed
