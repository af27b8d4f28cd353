"""guarded_tool_node: block answers the model, clarify/escalate pause with interrupt() and resume with a
person's resolution (approve, reject, edit, answer), stop raises; sync and async; pull and Send tasks."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import ValidationError

from examples.langgraph_support_desk.agent import desk_tools
from examples.langgraph_support_desk.scripted import turn
from examples.support_desk import SupportDesk
from headway import Guard, HeadwayError, Policy, Tool
from headway.traces import MemoryStore
from headway_langgraph import INTERRUPT_TYPE, GraphRunStopped, resume_from_store
from headway_langgraph._gate import ToolGate

from ._graphs import ALICE, IDENTIFY, build, config, user

REFUND_A3 = turn("", ("refund_order", "c3", {"order_id": "A3", "amount": 250, "reason": "cracked top"}))
DONE = turn("Done.")


def _paused(guard: Guard, desk: SupportDesk, thread: str = "t", **kw: Any) -> Any:
    graph = build([*IDENTIFY, REFUND_A3, DONE], desk_tools(desk), guard, InMemorySaver(), **kw)
    cfg = config(thread, guard)
    graph.invoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
    out = graph.invoke(user("Yes, go ahead."), cfg)
    return graph, cfg, out


def _tool_messages(out: dict[str, Any]) -> list[ToolMessage]:
    return [m for m in out["messages"] if isinstance(m, ToolMessage)]


def _refund_reasons(path: Path) -> list[tuple[str, float, str]]:
    with sqlite3.connect(path) as db:
        return [tuple(r) for r in db.execute("SELECT order_id, amount, reason FROM refunds")]


def test_block_answers_the_model_and_the_tool_does_not_run(guard: Guard, desk: SupportDesk) -> None:
    script = [turn("", ("refund_order", "c1", {"order_id": "A1", "amount": 40})), DONE]
    graph = build(script, desk_tools(desk), guard, InMemorySaver())
    out = graph.invoke(user(f"{ALICE} refund A1"), config("t", guard))
    (msg,) = _tool_messages(out)
    assert msg.status == "error"
    assert msg.tool_call_id == "c1"
    assert str(msg.content).startswith("[headway] refund_order: not done.")
    assert "lookup_order" in msg.content
    assert desk.count("refunds") == 0


def test_escalation_pauses_with_a_structured_json_payload(guard: Guard, desk: SupportDesk) -> None:
    graph, cfg, out = _paused(guard, desk)
    (intr,) = out["__interrupt__"]
    p = intr.value
    assert p["type"] == INTERRUPT_TYPE
    esc = guard.start_run("t").escalation("c3")
    assert esc is not None
    assert (p["escalation_id"], p["run_id"], p["call_id"], p["tool"], p["kind"]) == (
        esc.id,
        "t",
        "c3",
        "refund_order",
        "escalate",
    )
    assert p["args"] == {"order_id": "A3", "amount": 250, "reason": "cracked top"}
    assert "approval" in p["reason"]
    assert isinstance(p["findings"], list)
    assert [c["call_id"] for c in p["calls"]] == ["c3"]
    json.dumps(p)  # plain JSON: checkpointed without custom types
    assert intr.response_schema is not None
    assert "action" in intr.response_schema["properties"]
    assert graph.get_state(cfg).next == ("tools",)
    assert desk.count("refunds") == 0
    assert [c.call_id for c in guard.start_run("t").pending] == ["c3"]


def test_approve_runs_the_call_once_and_records_who(guard: Guard, desk: SupportDesk) -> None:
    graph, cfg, _ = _paused(guard, desk)
    out = graph.invoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    assert desk.count("refunds") == 1
    assert out["messages"][-1].content == "Done."
    human = [e for e in guard.store.events("t") if e.type == "human"]
    assert len(human) == 1
    assert human[0].data["by"] == "maria@support"
    assert human[0].data["decision"]["action"] == "allow"
    assert human[0].ts > 0


def test_reject_tells_the_model_and_the_tool_does_not_run(guard: Guard, desk: SupportDesk) -> None:
    graph, cfg, _ = _paused(guard, desk)
    msg = "Refunds over $200 need a manager; open a ticket instead."
    out = graph.invoke(Command(resume={"action": "reject", "by": "maria@support", "message": msg}), cfg)
    refund = next(m for m in _tool_messages(out) if m.tool_call_id == "c3")
    assert refund.status == "error"
    assert msg in refund.content
    assert desk.count("refunds") == 0


def test_edit_is_checked_again_before_it_runs(guard: Guard, desk: SupportDesk, tmp_path: Path) -> None:
    graph, cfg, _ = _paused(guard, desk)
    out = graph.invoke(
        Command(resume={"action": "edit", "by": "maria@support", "args": {"order_id": "A3", "amount": 900}}),
        cfg,
    )
    refund = next(m for m in _tool_messages(out) if m.tool_call_id == "c3")
    assert refund.status == "error"
    assert "amount" in refund.content
    assert desk.count("refunds") == 0


def test_an_approved_edit_runs_with_the_edited_arguments(
    guard: Guard, desk: SupportDesk, tmp_path: Path
) -> None:
    graph, cfg, _ = _paused(guard, desk)
    edited = {"order_id": "A3", "amount": 250, "reason": "cracked top (approved)"}
    graph.invoke(Command(resume={"action": "edit", "by": "maria@support", "args": edited}), cfg)
    assert _refund_reasons(tmp_path / "desk.db") == [("A3", 250.0, "cracked top (approved)")]


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"action": "approve"}, "by"),
        ({"action": "yes", "by": "maria"}, "action"),
        ({"action": "edit", "by": "maria"}, "args"),
        ({"action": "answer", "by": "maria"}, "text"),
        ("approve", "HeadwayResume"),
        ({"decisions": {"c9": {"action": "approve", "by": "maria"}}}, "c3"),
    ],
)
def test_a_bad_resume_payload_gets_a_clear_error_and_can_be_answered_again(
    guard: Guard, desk: SupportDesk, bad: Any, says: str
) -> None:
    graph, cfg, _ = _paused(guard, desk)
    with pytest.raises(ValidationError, match=says):
        graph.invoke(Command(resume=bad), cfg)
    assert graph.get_state(cfg).next == ("tools",)  # still paused, nothing saved
    assert desk.count("refunds") == 0
    graph.invoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    assert desk.count("refunds") == 1


def test_stop_raises_a_typed_exception_before_the_tool_runs(guard: Guard, desk: SupportDesk) -> None:
    ran: Counter[str] = Counter()

    @tool
    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look up an order."""
        ran[order_id] += 1
        return desk.lookup_order(order_id)

    script = [turn("", ("lookup_order", f"c{i}", {"order_id": "A1"})) for i in range(6)]
    graph = build(script, [lookup_order], guard, InMemorySaver(), handle_tool_errors=True)
    with pytest.raises(GraphRunStopped) as stopped:
        graph.invoke(user(f"{ALICE} where is A1?"), config("t"))
    assert stopped.value.decision.action == "stop"
    assert stopped.value.run_id == "t"
    assert stopped.value.decision.call_id == "c3"
    assert ran["A1"] == 2  # two ran, the third was blocked, the fourth stopped the run


def test_without_a_thread_id_the_error_says_what_to_pass(guard: Guard, desk: SupportDesk) -> None:
    graph = build([turn("", ("lookup_order", "c1", {"order_id": "A1"})), DONE], desk_tools(desk), guard, None)
    with pytest.raises(HeadwayError, match="thread_id"):
        graph.invoke(user("where is A1?"))


def test_an_unknown_tool_gets_the_toolnode_error_message(guard: Guard, desk: SupportDesk) -> None:
    graph = build(
        [turn("", ("teleport", "c1", {"to": "mars"})), DONE], desk_tools(desk), guard, InMemorySaver()
    )
    out = graph.invoke(user("go"), config("t"))
    (msg,) = _tool_messages(out)
    assert msg.status == "error"


# ---- several paused calls ---------------------------------------------------------------------------


def _pay_tools(ran: Counter[str]) -> list[BaseTool]:
    @tool
    def pay(to: str, amount: float) -> str:
        """Pay someone."""
        ran[to] += 1
        return f"paid {amount} to {to}"

    return [pay]


@pytest.fixture
def pay_guard() -> Guard:
    policy = Policy(
        tools=[Tool("pay", risk="irreversible", approve_when=lambda call: True)], detect_ambiguity=False
    )
    return Guard(policy, store=MemoryStore())


TWO_PAYMENTS = turn("", ("pay", "p1", {"to": "ann", "amount": 5}), ("pay", "p2", {"to": "bob", "amount": 7}))


def test_two_paused_calls_in_one_task_are_asked_together(pay_guard: Guard) -> None:
    ran: Counter[str] = Counter()
    graph = build([TWO_PAYMENTS, DONE], _pay_tools(ran), pay_guard, InMemorySaver())
    cfg = config("t", pay_guard)
    out = graph.invoke(user("pay ann 5 and bob 7"), cfg)
    (intr,) = out["__interrupt__"]
    assert [c["call_id"] for c in intr.value["calls"]] == ["p1", "p2"]
    with pytest.raises(ValidationError, match="missing"):
        graph.invoke(Command(resume={"decisions": {"p1": {"action": "approve", "by": "m"}}}), cfg)
    out = graph.invoke(
        Command(
            resume={
                "decisions": {
                    "p1": {"action": "approve", "by": "m"},
                    "p2": {"action": "reject", "by": "m", "message": "not bob"},
                }
            }
        ),
        cfg,
    )
    assert ran == Counter({"ann": 1})
    assert "not bob" in next(m for m in _tool_messages(out) if m.tool_call_id == "p2").content


def test_one_resolution_answers_every_paused_call(pay_guard: Guard) -> None:
    ran: Counter[str] = Counter()
    graph = build([TWO_PAYMENTS, DONE], _pay_tools(ran), pay_guard, InMemorySaver())
    cfg = config("t", pay_guard)
    graph.invoke(user("pay ann 5 and bob 7"), cfg)
    graph.invoke(Command(resume={"action": "approve", "by": "m"}), cfg)
    assert ran == Counter({"ann": 1, "bob": 1})


def test_a_paused_sibling_that_starts_after_the_first_has_interrupted_does_not_hang(
    pay_guard: Guard, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On a loaded machine p1's thread can decide, interrupt and leave before p2's thread starts; p2
    # must then find p1's outcome, not a fresh attempt in which nobody will ever ask (a hang in CI).
    first_left = threading.Event()
    enter, leave = ToolGate._enter, ToolGate._leave

    def late_enter(self: ToolGate, run_id: str, request: Any) -> Any:
        if request.tool_call["id"] == "p2":
            assert first_left.wait(5)
        return enter(self, run_id, request)

    def leave_and_tell(self: ToolGate, run_id: str, attempt: Any) -> None:
        leave(self, run_id, attempt)
        first_left.set()

    monkeypatch.setattr(ToolGate, "_enter", late_enter)
    monkeypatch.setattr(ToolGate, "_leave", leave_and_tell)
    ran: Counter[str] = Counter()
    graph = build([TWO_PAYMENTS, DONE], _pay_tools(ran), pay_guard, InMemorySaver())
    cfg = config("t", pay_guard)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(graph.invoke(user("pay ann 5 and bob 7"), cfg)))
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the late sibling hangs"
    (intr,) = outcome[0]["__interrupt__"]
    assert [c["call_id"] for c in intr.value["calls"]] == ["p1", "p2"]
    graph.invoke(Command(resume={"action": "approve", "by": "m"}), cfg)
    assert ran == Counter({"ann": 1, "bob": 1})


def test_send_fan_out_pauses_each_call_and_resumes_by_interrupt_id(pay_guard: Guard) -> None:
    ran: Counter[str] = Counter()
    graph = build([TWO_PAYMENTS, DONE], _pay_tools(ran), pay_guard, InMemorySaver(), send=True)
    cfg = config("t", pay_guard)
    out = graph.invoke(user("pay ann 5 and bob 7"), cfg)
    by_call = {i.value["call_id"]: i for i in out["__interrupt__"]}
    assert sorted(by_call) == ["p1", "p2"]
    resume = {
        by_call["p1"].id: {"action": "reject", "by": "m", "message": "no"},
        by_call["p2"].id: {"action": "approve", "by": "m"},
    }
    out = graph.invoke(Command(resume=resume), cfg)
    assert ran == Counter({"bob": 1})
    assert isinstance(out["messages"][-1], AIMessage)


# ---- async ------------------------------------------------------------------------------------------


async def test_async_escalate_bad_payload_then_approve(guard: Guard, desk: SupportDesk) -> None:
    graph = build([*IDENTIFY, REFUND_A3, DONE], desk_tools(desk), guard, InMemorySaver())
    cfg = config("t", guard)
    await graph.ainvoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
    out = await graph.ainvoke(user("Yes, go ahead."), cfg)
    assert out["__interrupt__"][0].value["call_id"] == "c3"
    with pytest.raises(ValidationError, match="by"):
        await graph.ainvoke(Command(resume={"action": "approve"}), cfg)
    await graph.ainvoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    assert desk.count("refunds") == 1


async def test_async_block_and_two_paused_calls(pay_guard: Guard) -> None:
    ran: Counter[str] = Counter()
    graph = build([TWO_PAYMENTS, DONE], _pay_tools(ran), pay_guard, InMemorySaver())
    cfg = config("t", pay_guard)
    out = await graph.ainvoke(user("pay ann 5 and bob 7"), cfg)
    assert [c["call_id"] for c in out["__interrupt__"][0].value["calls"]] == ["p1", "p2"]
    await graph.ainvoke(Command(resume={"action": "approve", "by": "m"}), cfg)
    assert ran == Counter({"ann": 1, "bob": 1})


async def test_async_stop_raises(guard: Guard, desk: SupportDesk) -> None:
    script = [turn("", ("lookup_order", f"c{i}", {"order_id": "A1"})) for i in range(6)]
    graph = build(script, desk_tools(desk), guard, InMemorySaver())
    with pytest.raises(GraphRunStopped):
        await graph.ainvoke(user(f"{ALICE} where is A1?"), config("t"))


def test_the_tool_nodes_decisions_say_where_in_the_graph_they_were_made(
    guard: Guard, desk: SupportDesk
) -> None:
    graph = build([*IDENTIFY, DONE], desk_tools(desk), guard, InMemorySaver())
    graph.invoke(user(f"{ALICE} who am I?"), config("where"))  # no callback handler: only the node records
    guard.flush()
    calls = [e for e in guard.store.events("where") if e.type == "tool_call"]
    assert calls
    assert all(e.data["meta"]["langgraph_node"] == "tools" for e in calls)
    assert all(isinstance(e.data["meta"]["langgraph_step"], int) for e in calls)


# ---- decisions from the escalation store ------------------------------------------------------------


def test_resume_from_store_applies_the_decision_made_in_the_inbox(guard: Guard, desk: SupportDesk) -> None:
    graph, cfg, out = _paused(guard, desk)
    eid = out["__interrupt__"][0].value["escalation_id"]
    with pytest.raises(HeadwayError, match=f"still waiting for a person's decision: {eid}"):
        resume_from_store(graph, cfg, guard)
    guard.escalations.decide(eid, "approve", by="ops@inbox")
    graph.invoke(resume_from_store(graph, cfg, guard), cfg)
    assert desk.count("refunds") == 1
    run = guard.start_run("t")
    assert run.decision("c3") is not None
    esc = guard.escalations.get(eid)
    assert esc is not None
    assert (esc.status, esc.decided_by) == ("approved", "ops@inbox")


def test_a_resume_that_contradicts_the_store_is_refused_and_nothing_runs(
    guard: Guard, desk: SupportDesk
) -> None:
    graph, cfg, out = _paused(guard, desk)
    eid = out["__interrupt__"][0].value["escalation_id"]
    guard.escalations.decide(eid, "reject", by="ops@inbox", message="no refunds over $200 today")
    with pytest.raises(ValidationError, match="was rejected by ops@inbox"):
        graph.invoke(Command(resume={"action": "approve", "by": "mallory"}), cfg)
    assert desk.count("refunds") == 0
    assert graph.get_state(cfg).interrupts  # still paused: it can be resumed properly
    out = graph.invoke(resume_from_store(graph, cfg, guard), cfg)
    assert desk.count("refunds") == 0
    assert (
        "no refunds over $200 today" in next(m for m in _tool_messages(out) if m.tool_call_id == "c3").content
    )
