"""One process of the crash tests: `python -m tests.langgraph._crash MODE DIR [CRASH_AT]`.

It builds the example agent over files in DIR (SQLite checkpoints, the trace and escalation store, the
desk) and is killed with SIGKILL at CRASH_AT, a point on the escalation path:
- `filing`: after the escalation's trace event, before its record reaches the store;
- `escalated`: right after the escalation record is created (a notifier kills the process);
- `decided`: after a person's decision is applied, before the call starts;
- `running`: inside the tool, after its side effect;
- `ran`: after the result is recorded, before LangGraph writes its checkpoint.
Modes: `start` (the conversation up to the pause), `continue` (invoke from the last checkpoint), and
`resume` (apply the decisions recorded in the escalation store). Prints the pause as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.sqlite import SqliteSaver

from examples.langgraph_support_desk.agent import desk_tools, load_policy
from examples.langgraph_support_desk.scripted import turn
from examples.support_desk import SupportDesk
from headway import Decision, Escalation, Guard, Run
from headway.escalations import EscalationStore, SQLiteEscalations
from headway_langgraph import resume_from_store

from ._graphs import ALICE, IDENTIFY, build, config, user

SCRIPT = [
    *IDENTIFY,
    turn("", ("refund_order", "c4", {"order_id": "A3", "amount": 250, "reason": "cracked top"})),
    turn("Order A3 is refunded."),
]


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class _KillOnEscalation:
    def notify(self, escalation: Escalation, store: EscalationStore) -> None:
        _die()


def _tools(desk: SupportDesk, crash_at: str) -> list[BaseTool]:
    tools = desk_tools(desk)
    if crash_at != "running":
        return tools

    def refund_order(order_id: str, amount: float, reason: str) -> Any:
        desk.call("refund_order", {"order_id": order_id, "amount": amount, "reason": reason})
        _die()

    crash = StructuredTool.from_function(func=refund_order, name="refund_order", description="Refund.")
    return [crash if t.name == "refund_order" else t for t in tools]


def _arm(crash_at: str) -> None:
    """Kill points inside headway's own path, patched in this throwaway process only."""
    if crash_at == "filing":
        SQLiteEscalations.create = lambda self, escalation: _die()  # type: ignore[assignment,method-assign,return-value]
    elif crash_at == "decided":
        Run.begin = lambda self, call_id: _die()  # type: ignore[assignment,method-assign,return-value]
    elif crash_at == "ran":
        record = Run.tool_result

        def record_then_die(self: Run, *a: Any, **kw: Any) -> Decision:
            record(self, *a, **kw)
            self._store.flush()
            _die()
            raise AssertionError("unreachable")

        Run.tool_result = record_then_die  # type: ignore[method-assign]


def main(mode: str, where: Path, crash_at: str = "") -> None:
    desk = SupportDesk(where / "desk.db")
    conn = sqlite3.connect(where / "checkpoints.db", check_same_thread=False)
    notify = [_KillOnEscalation()] if crash_at == "escalated" else []
    _arm(crash_at)
    with Guard(load_policy(), store=where / "traces.db", notify=notify) as guard:
        graph = build(SCRIPT, _tools(desk, crash_at), guard, SqliteSaver(conn))
        cfg = config("thread-c", guard)
        if mode == "start":
            graph.invoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
            out = graph.invoke(user("Yes, go ahead."), cfg)
        elif mode == "continue":
            out = graph.invoke(None, cfg)
        else:
            out = graph.invoke(resume_from_store(graph, cfg, guard), cfg)
        paused = [c for i in out.get("__interrupt__", ()) for c in i.value["calls"]]
        print(json.dumps({"paused": paused, "last": str(out["messages"][-1].content)}))
    conn.close()
    desk.close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
