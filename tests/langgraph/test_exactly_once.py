"""A side effect runs at most once per tool call across pause and resume, in one process and across two.

LangGraph re-runs the whole tool node on resume, so a sibling call that already ran would run again:
two parallel calls, a ticket (runs) and a $250 refund (escalated), must give one ticket and one refund.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from examples.langgraph_support_desk.agent import desk_tools
from examples.langgraph_support_desk.scripted import turn
from examples.support_desk import SupportDesk
from headway import Guard
from headway.traces import SQLiteStore

from ._graphs import ALICE, IDENTIFY, build, config, user

ROOT = Path(__file__).resolve().parents[2]
TICKET_AND_REFUND = turn(
    "",
    ("create_ticket", "c3", {"subject": "Cracked desk A3", "body": "Customer reports a cracked top."}),
    ("refund_order", "c4", {"order_id": "A3", "amount": 250, "reason": "cracked top"}),
)
SCRIPT = [*IDENTIFY, TICKET_AND_REFUND, turn("Ticket opened and A3 refunded.")]


def _slow_tickets(desk: SupportDesk, seconds: float) -> list[BaseTool]:
    tools = desk_tools(desk)

    def create_ticket(subject: str, body: str) -> Any:
        time.sleep(seconds)
        return desk.call("create_ticket", {"subject": subject, "body": body})

    slow = StructuredTool.from_function(
        func=create_ticket, name="create_ticket", description="Open a ticket."
    )
    return [slow if t.name == "create_ticket" else t for t in tools]


def test_sibling_that_ran_is_not_run_again_on_resume(guard: Guard, desk: SupportDesk) -> None:
    graph = build(SCRIPT, desk_tools(desk), guard, InMemorySaver())
    cfg = config("t", guard)
    graph.invoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
    out = graph.invoke(user("Yes, go ahead."), cfg)
    assert out["__interrupt__"][0].value["call_id"] == "c4"
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 0)
    out = graph.invoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 1)
    ticket = next(m for m in out["messages"] if getattr(m, "tool_call_id", None) == "c3")
    assert "T-" in ticket.content  # the recorded result, handed back instead of a second ticket


async def test_async_sibling_still_running_at_the_interrupt_is_awaited_not_rerun(
    guard: Guard, desk: SupportDesk
) -> None:
    graph = build(SCRIPT, _slow_tickets(desk, 0.3), guard, InMemorySaver())
    cfg = config("t", guard)
    await graph.ainvoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
    out = await graph.ainvoke(user("Yes, go ahead."), cfg)
    assert out["__interrupt__"]
    # asyncio.gather does not cancel the slow sibling: it is still creating the ticket; resume at once
    await graph.ainvoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    await asyncio.sleep(0.4)
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 1)


def test_sync_slow_sibling_runs_once(guard: Guard, desk: SupportDesk) -> None:
    graph = build(SCRIPT, _slow_tickets(desk, 0.1), guard, InMemorySaver())
    cfg = config("t", guard)
    graph.invoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
    graph.invoke(user("Yes, go ahead."), cfg)
    graph.invoke(Command(resume={"action": "approve", "by": "maria@support"}), cfg)
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 1)


def _run_side(mode: str, where: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tests.langgraph._xproc", mode, str(where)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _side(mode: str, where: Path) -> Any:
    proc = _run_side(mode, where)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_resume_in_another_process_with_sqlite(tmp_path: Path) -> None:
    paused = _side("start", tmp_path)
    assert [p["value"]["call_id"] for p in paused] == ["c4"]
    desk = SupportDesk(tmp_path / "desk.db")
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 0)

    resumed = _side("resume", tmp_path)
    assert resumed["paused"] == [paused[0]["id"]]  # the same interrupt, found from the checkpoint alone
    assert resumed["last"] == "Ticket opened and A3 refunded."
    assert (desk.count("tickets"), desk.count("refunds")) == (1, 1)
    desk.close()

    # the escalation and its outcome are in the trace store: who decided, when, and what ran after
    with SQLiteStore(tmp_path / "traces.db") as store:
        events = store.events("thread-x")
    escalated = [e for e in events if e.type == "tool_call" and e.data["decision"]["action"] == "escalate"]
    human = [e for e in events if e.type == "human"]
    result = [e for e in events if e.type == "tool_result" and e.data["call_id"] == "c4"]
    assert [e.data["call_id"] for e in escalated] == ["c4"]
    assert [(h.data["by"], h.data["action"], h.data["decision"]["action"]) for h in human] == [
        ("ops@other-process", "approve", "allow")
    ]
    assert escalated[0].seq < human[0].seq < result[0].seq
    assert len([e for e in events if e.type == "tool_result" and e.data["call_id"] == "c3"]) == 1


def test_a_crash_mid_call_leaves_an_unknown_outcome_that_is_escalated_not_rerun(tmp_path: Path) -> None:
    crash = _run_side("crash", tmp_path)
    assert crash.returncode == 3, crash.stderr  # killed inside create_ticket, after its side effect
    desk = SupportDesk(tmp_path / "desk.db")
    assert desk.count("tickets") == 1

    paused = {p["call_id"]: p for p in _side("after-crash", tmp_path)}
    assert set(paused) == {"c3", "c4"}
    assert "may already have happened" in paused["c3"]["reason"]  # a person decides; no second ticket
    assert desk.count("tickets") == 1
    assert desk.count("refunds") == 0
    desk.close()
