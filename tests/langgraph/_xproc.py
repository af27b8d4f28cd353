"""One side of the cross-process resume test: `python -m tests.langgraph._xproc start|resume DIR`.

Both processes build the same graph over files in DIR (SQLite checkpoints, trace store and desk), so
the second one resumes what the first left paused, with nothing shared but the files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from examples.langgraph_support_desk.agent import desk_tools, load_policy
from examples.support_desk import SupportDesk
from headway import Guard

from ._graphs import ALICE, build, config, user
from .test_exactly_once import SCRIPT


def _crashing_tools(desk: SupportDesk) -> list[BaseTool]:
    """The desk's tools, except that opening a ticket kills the process right after the side effect."""

    def create_ticket(subject: str, body: str) -> Any:
        desk.call("create_ticket", {"subject": subject, "body": body})
        os._exit(3)  # the process dies mid-call: the ticket exists, its result is never recorded

    crash = StructuredTool.from_function(
        func=create_ticket, name="create_ticket", description="Open a ticket."
    )
    return [crash if t.name == "create_ticket" else t for t in desk_tools(desk)]


def main(mode: str, where: Path) -> None:
    desk = SupportDesk(where / "desk.db")
    conn = sqlite3.connect(where / "checkpoints.db", check_same_thread=False)
    with Guard(load_policy(), store=where / "traces.db") as guard:
        tools = _crashing_tools(desk) if mode == "crash" else desk_tools(desk)
        graph = build(SCRIPT, tools, guard, SqliteSaver(conn))
        cfg = config("thread-x", guard)
        if mode == "crash":
            graph.invoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
            graph.invoke(user("Yes, go ahead."), cfg)
        elif mode == "after-crash":
            out = graph.invoke(None, cfg)  # carry on from the last checkpoint: the tool node runs again
            values = [i.value for i in out.get("__interrupt__", ())]
            print(
                json.dumps(
                    [
                        {"call_id": c["call_id"], "kind": c["kind"], "reason": c["reason"]}
                        for v in values
                        for c in v["calls"]
                    ]
                )
            )
        elif mode == "start":
            graph.invoke(user(f"{ALICE} Order A3 has a cracked top, refund please."), cfg)
            out = graph.invoke(user("Yes, go ahead."), cfg)
            print(json.dumps([{"id": i.id, "value": i.value} for i in out["__interrupt__"]]))
        else:
            paused = graph.get_state(cfg).interrupts
            out = graph.invoke(Command(resume={"action": "approve", "by": "ops@other-process"}), cfg)
            print(json.dumps({"paused": [i.id for i in paused], "last": out["messages"][-1].content}))
    conn.close()
    desk.close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
