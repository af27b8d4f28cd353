"""One side of the cross-process resume test: `python -m tests.langgraph._xproc start|resume DIR`.

Both processes build the same graph over files in DIR (SQLite checkpoints, trace store and desk), so
the second one resumes what the first left paused, with nothing shared but the files.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from examples.langgraph_support_desk.agent import desk_tools, load_policy
from examples.support_desk import SupportDesk
from headway import Guard

from ._graphs import ALICE, build, config, user
from .test_exactly_once import SCRIPT


def main(mode: str, where: Path) -> None:
    desk = SupportDesk(where / "desk.db")
    conn = sqlite3.connect(where / "checkpoints.db", check_same_thread=False)
    with Guard(load_policy(), store=where / "traces.db") as guard:
        graph = build(SCRIPT, desk_tools(desk), guard, SqliteSaver(conn))
        cfg = config("thread-x", guard)
        if mode == "start":
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
