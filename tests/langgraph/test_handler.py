"""HeadwayCallbackHandler: records the trajectory, stops a run before the offending tool runs, ignores
interrupts, reaches into subgraphs, keeps concurrent threads apart; version checks at attach time."""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError
from typing import Any

import pytest
from langchain_core.messages import AIMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command, interrupt

from examples.langgraph_support_desk.agent import State, build_graph, desk_tools
from examples.langgraph_support_desk.scripted import ScriptedChatModel, turn
from examples.support_desk import SupportDesk
from headway import Guard
from headway_langgraph import GraphRunStopped, HeadwayCallbackHandler, IncompatibleVersionError, _version

from ._graphs import ALICE, config, user

LOOKUPS = [
    turn("", ("find_user", "c1", {"email": "alice@example.com"})),
    turn("", ("lookup_order", "c2", {"order_id": "A1"})),
    turn("Order A1 is a desk lamp, delivered."),
]


def _plain_graph(script: list[AIMessage], tools: list[Any], checkpointer: Any = None) -> Any:
    """A graph without headway's tool node: the handler is the only thing headway sees."""
    model = ScriptedChatModel(script=script)
    b = StateGraph(State)
    b.add_node("agent", lambda s: {"messages": [model.invoke(s["messages"])]})
    b.add_node("tools", ToolNode(tools))
    b.add_edge(START, "agent")
    b.add_conditional_edges("agent", tools_condition)
    b.add_edge("tools", "agent")
    return b.compile(checkpointer=checkpointer)


def test_records_the_whole_trajectory(guard: Guard, desk: SupportDesk) -> None:
    graph = _plain_graph(LOOKUPS, desk_tools(desk))
    graph.invoke(user(f"{ALICE} Where is A1?"), config("t", guard))
    guard.flush()
    events = guard.store.events("t")
    assert [e.type for e in events] == [
        "start", "user", "model", "tool_call", "tool_result", "model", "tool_call", "tool_result", "model",
    ]  # fmt: skip
    assert events[1].data["text"] == f"{ALICE} Where is A1?"
    assert events[2].data["tool_calls"] == [
        {"name": "find_user", "args": {"email": "alice@example.com"}, "id": "c1"}
    ]
    assert events[6].data["args"] == {"order_id": "A1"}
    assert events[7].data["output"]["status"] == "delivered"
    assert events[8].data["text"] == "Order A1 is a desk lamp, delivered."
    run = guard.start_run("t")
    assert run.view.milestones == ["identified", "order_found"]
    # every event says where in the graph it happened
    assert events[2].data["meta"]["langgraph_node"] == "agent"
    assert events[3].data["meta"]["langgraph_node"] == "tools"
    steps = [e.data["meta"]["langgraph_step"] for e in events[1:]]
    assert steps == sorted(steps)
    assert steps[0] < steps[-1]


def test_a_second_turn_records_only_the_new_user_message(guard: Guard, desk: SupportDesk) -> None:
    graph = _plain_graph([*LOOKUPS, turn("You're welcome.")], desk_tools(desk), InMemorySaver())
    cfg = config("t", guard)
    graph.invoke(user(f"{ALICE} Where is A1?"), cfg)
    graph.invoke(user("Thanks!"), cfg)
    assert guard.start_run("t").view.user_messages == [f"{ALICE} Where is A1?", "Thanks!"]


def test_stop_raises_before_the_tool_runs(guard: Guard, desk: SupportDesk) -> None:
    ran: Counter[str] = Counter()

    @tool
    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look up an order."""
        ran[order_id] += 1
        return desk.lookup_order(order_id)

    script = [turn("", ("lookup_order", f"c{i}", {"order_id": "A1"})) for i in range(6)]
    graph = _plain_graph(script, [lookup_order], InMemorySaver())
    cfg = config("t", guard)
    with pytest.raises(GraphRunStopped) as stopped:
        graph.invoke(user(f"{ALICE} where is A1?"), cfg)
    assert stopped.value.decision.action == "stop"
    assert stopped.value.decision.call_id == "c3"
    assert ran["A1"] == 3  # the handler alone does not enforce `block` (that is the tool node's job)
    assert graph.get_state(cfg).next == ("tools",)


def test_stop_on_more_actions(guard: Guard, desk: SupportDesk) -> None:
    script = [turn("", ("refund_order", "c1", {"order_id": "A1", "amount": 40})), turn("done")]
    graph = _plain_graph(script, desk_tools(desk))
    handler = HeadwayCallbackHandler(guard, stop_on=("stop", "block", "escalate", "clarify"))
    cfg: RunnableConfig = {"configurable": {"thread_id": "t"}, "callbacks": [handler]}
    with pytest.raises(GraphRunStopped) as stopped:
        graph.invoke(user("refund A1"), cfg)
    assert stopped.value.decision.action == "block"
    assert desk.count("refunds") == 0


def test_an_interrupt_inside_a_tool_is_not_a_failure(guard: Guard) -> None:
    @tool
    def ask_manager(question: str) -> str:
        """Ask the manager."""
        answer = interrupt({"question": question})
        return f"manager says {answer}"

    script = [turn("", ("ask_manager", "c1", {"question": "ok?"})), turn("done")]
    graph = _plain_graph(script, [ask_manager], InMemorySaver())
    cfg = config("t", guard)
    graph.invoke(user("ask"), cfg)
    graph.invoke(Command(resume="yes"), cfg)
    guard.flush()
    results = [e.data for e in guard.store.events("t") if e.type == "tool_result"]
    assert [(r["call_id"], r["error"], r["output"]) for r in results] == [("c1", None, "manager says yes")]


def test_callbacks_reach_into_subgraphs(guard: Guard, desk: SupportDesk) -> None:
    inner = build_graph(ScriptedChatModel(script=LOOKUPS), desk_tools(desk), guard)
    outer = StateGraph(State)
    outer.add_node("support", inner)
    outer.add_edge(START, "support")
    graph = outer.compile(checkpointer=InMemorySaver())
    graph.invoke(user(f"{ALICE} Where is A1?"), config("outer", guard))
    guard.flush()
    types = [e.type for e in guard.store.events("outer")]
    assert types.count("model") == 3
    assert types.count("tool_result") == 2
    assert guard.start_run("outer").view.milestones == ["identified", "order_found"]


def test_many_threads_one_guard_no_cross_talk(guard: Guard, desk: SupportDesk) -> None:
    graph = build_graph(ScriptedChatModel(script=LOOKUPS), desk_tools(desk), guard, InMemorySaver())
    handler = HeadwayCallbackHandler(guard)

    def one(i: int) -> None:
        cfg: RunnableConfig = {"configurable": {"thread_id": f"t{i}"}, "callbacks": [handler]}
        graph.invoke(user(f"{ALICE} Where is A1? (conversation {i})"), cfg)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(48)))
    guard.flush()
    for i in range(48):
        events = guard.store.events(f"t{i}")
        assert [e.type for e in events].count("tool_call") == 2, i
        users = [e.data["text"] for e in events if e.type == "user"]
        assert users == [f"{ALICE} Where is A1? (conversation {i})"]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        decisions = [e.data["decision"]["action"] for e in events if e.type == "tool_call"]
        assert decisions == ["allow", "allow"]  # no loop detected: nobody else's lookups were counted


def test_version_check_names_installed_and_required(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version

    def fake(dist: str) -> str:
        if dist == "langgraph":
            return "1.1.3"
        if dist == "langchain":
            raise PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(_version, "version", fake)
    with pytest.raises(
        IncompatibleVersionError, match=r"langgraph 1\.1\.3 is installed; .* needs langgraph>=1\.2,<2"
    ):
        HeadwayCallbackHandler(guard)
    with pytest.raises(ImportError, match=r"langchain is not installed .*headway-langgraph\[agents\]"):
        _version.check_versions(_version.REQUIRED_AGENTS)


def test_a_final_answer_claiming_an_outcome_no_result_backs_is_recorded_as_such(
    guard: Guard, desk: SupportDesk
) -> None:
    script = [*LOOKUPS[:2], turn("I have refunded $40 for order A1.")]
    graph = _plain_graph(script, desk_tools(desk))
    graph.invoke(user(f"{ALICE} Refund A1 please."), config("claims", guard))
    guard.flush()
    last = [e for e in guard.store.events("claims") if e.type == "model"][-1]
    assert last.data["decision"]["action"] == "block"
    assert [f["kind"] for f in last.data["decision"]["findings"]] == ["unsupported_claim"]


def test_the_handler_keeps_nothing_per_thread_itself() -> None:
    # A handler lives as long as the app; what it remembers per thread lives on the run and ends with it.
    from langchain_core.messages import HumanMessage

    from headway import Guard, Policy
    from headway_langgraph import HeadwayCallbackHandler

    with Guard(Policy(), store=":memory:") as guard:
        handler = HeadwayCallbackHandler(guard)
        state = dict(vars(handler))
        for i in range(20):
            run = guard.start_run(f"t{i}")
            message = HumanMessage("hi", id=f"m{i}")
            assert handler._new_users(run, [message]) == ["hi"]
            assert handler._new_users(run, [message]) == []  # recorded once per run
            assert HeadwayCallbackHandler(guard)._new_users(run, [message]) == []  # by any handler
            guard.end_run(f"t{i}", "bye")
        assert vars(handler) == state  # no per-thread entries: the same (empty) maps as before
        assert handler._models == {}
        assert handler._tools == {}
        # A new run under an ended run's id starts afresh: its first prompt is recorded again.
        assert handler._new_users(guard.start_run("t0"), [HumanMessage("hi", id="m0")]) == ["hi"]


def test_withhold_answers_raises_before_a_false_claim_reaches_the_state(
    guard: Guard, desk: SupportDesk
) -> None:
    from headway_langgraph import AnswerWithheld

    graph = _plain_graph([turn("I have refunded $40 for order A1.")], desk_tools(desk), InMemorySaver())
    cfg: RunnableConfig = {
        "configurable": {"thread_id": "t"},
        "callbacks": [HeadwayCallbackHandler(guard, withhold_answers=True)],
    }
    with pytest.raises(AnswerWithheld) as info:
        graph.invoke(user(f"{ALICE} Refund A1, it arrived broken."), cfg)
    assert isinstance(info.value, GraphRunStopped)
    assert info.value.decision.stage == "end"
    assert "refund_order" in info.value.decision.reason
    messages = graph.get_state(cfg).values.get("messages", [])
    assert not any(isinstance(m, AIMessage) and "refunded" in str(m.content) for m in messages)


def test_by_default_the_handler_records_a_false_claim_and_lets_it_through(
    guard: Guard, desk: SupportDesk
) -> None:
    graph = _plain_graph([turn("I have refunded $40 for order A1.")], desk_tools(desk))
    out = graph.invoke(user(f"{ALICE} Refund A1, it arrived broken."), config("t", guard))
    assert out["messages"][-1].content == "I have refunded $40 for order A1."
    guard.flush()
    [last] = [e for e in guard.store.events("t") if e.type == "model"]
    assert last.data["decision"]["stage"] == "end"
    assert last.data["decision"]["action"] != "allow"
