"""headway's overhead on a LangGraph agent: the support-desk graph with a scripted model (3 model calls,
2 tool calls), bare versus guarded (callback handler + guarded ToolNode + the support-desk policy + the
SQLite trace store), interleaved in one process, median of many invokes each.

A third graph, the floor, has the same hooks doing nothing: a callback handler listening to the events
headway's does (model and tool events, not chain events) and a pass-through tool wrapper. Its ratio is
what LangChain and LangGraph charge for delivering those events, before headway does any work.

Run with `python -m bench.langgraph_overhead`. Not a test: it prints the ratios and µs per headway event.
"""

from __future__ import annotations

import argparse
import gc
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from bench import build
from examples.langgraph_support_desk.agent import SYSTEM, State, desk_tools, load_policy, tool_error
from examples.langgraph_support_desk.scripted import ScriptedChatModel, turn
from examples.support_desk import SupportDesk
from headway import Guard
from headway_langgraph import HeadwayCallbackHandler, guarded_tool_node

SCRIPT = [
    turn("", ("find_user", "c1", {"email": "alice@example.com"})),
    turn("", ("lookup_order", "c2", {"order_id": "A1"})),
    turn("Your desk lamp (order A1) was delivered on Monday."),
]
QUESTION = "Hi, I'm alice@example.com. Where is my order A1?"


class _NoopHandler(BaseCallbackHandler):
    """The floor's handler: HeadwayCallbackHandler's event flags (so LangChain delivers it the same
    events, through the same dispatch) and methods that do nothing."""

    raise_error = HeadwayCallbackHandler.raise_error
    run_inline = HeadwayCallbackHandler.run_inline
    ignore_chain = HeadwayCallbackHandler.ignore_chain
    ignore_retriever = HeadwayCallbackHandler.ignore_retriever
    ignore_retry = HeadwayCallbackHandler.ignore_retry
    ignore_custom_event = HeadwayCallbackHandler.ignore_custom_event
    ignore_llm = HeadwayCallbackHandler.ignore_llm
    ignore_chat_model = HeadwayCallbackHandler.ignore_chat_model
    ignore_agent = HeadwayCallbackHandler.ignore_agent

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[Any], **kwargs: Any) -> None:
        # Implemented, as headway's is: the inherited one raises NotImplementedError, and LangChain then
        # renders the prompt as text for on_llm_start, about 20 µs per model call the floor must not pay.
        return None


def _pass_through(request: Any, execute: Callable[[Any], Any]) -> Any:
    return execute(request)


def _graph(tools: ToolNode, checkpointer: Any) -> Any:
    """The example's graph shape (agent with a system prompt, tools_condition) around either tool node."""
    model = ScriptedChatModel(script=SCRIPT).bind_tools(list(tools.tools_by_name.values()))

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke([SystemMessage(SYSTEM), *state["messages"]])]}

    b = StateGraph(State)
    b.add_node("agent", agent)
    b.add_node("tools", tools)
    b.add_edge(START, "agent")
    b.add_conditional_edges("agent", tools_condition)
    b.add_edge("tools", "agent")
    return b.compile(checkpointer=checkpointer)


def _timer(graph: Any, config: Callable[[int], RunnableConfig]) -> Callable[[int], float]:
    def once(i: int) -> float:
        t0 = time.perf_counter()
        graph.invoke({"messages": [HumanMessage(QUESTION)]}, config(i))
        return time.perf_counter() - t0

    return once


def _core_only(guard: Guard, desk: SupportDesk, i: int) -> float:
    """The same trajectory straight through the core (no LangGraph): what the decisions themselves cost."""
    t0 = time.perf_counter()
    run = guard.start_run(f"core-{i}")
    run.user(QUESTION)
    for msg in SCRIPT:
        calls = [(c["name"], c["args"], str(c["id"])) for c in msg.tool_calls]
        run.model(str(msg.content), [{"name": n, "args": a, "id": cid} for n, a, cid in calls])
        for name, args, cid in calls:
            run.tool_call(name, args, cid)
            run.tool_result(cid, output=desk.call(name, args))
    return time.perf_counter() - t0


CHECKPOINTERS = ("none", "InMemorySaver", "SqliteSaver")  # SqliteSaver: what the example itself uses


def measure(n: int, *, checkpointer: str = "none", sqlite: bool = True) -> dict[str, float]:
    if checkpointer not in CHECKPOINTERS:
        raise ValueError(f"checkpointer must be one of {CHECKPOINTERS}, got {checkpointer!r}")
    with tempfile.TemporaryDirectory() as tmp:
        guard = Guard(load_policy(), store=Path(tmp) / "traces.db" if sqlite else ":memory:")
        desk = SupportDesk(Path(tmp) / "desk.db")
        connections: list[sqlite3.Connection] = []

        def saver() -> Any:
            if checkpointer == "InMemorySaver":
                return InMemorySaver()
            if checkpointer == "SqliteSaver":  # one file per graph, as three separate apps would have
                conn = sqlite3.connect(
                    Path(tmp) / f"checkpoints-{len(connections)}.db", check_same_thread=False
                )
                connections.append(conn)
                return SqliteSaver(conn)
            return None

        bare = _graph(ToolNode(desk_tools(desk), handle_tool_errors=tool_error), saver())
        floor = _graph(
            ToolNode(desk_tools(desk), handle_tool_errors=tool_error, wrap_tool_call=_pass_through), saver()
        )
        guarded = _graph(guarded_tool_node(desk_tools(desk), guard, handle_tool_errors=tool_error), saver())
        handler, noop = HeadwayCallbackHandler(guard), _NoopHandler()

        def bare_cfg(i: int) -> RunnableConfig:
            return {"configurable": {"thread_id": f"bare-{i}"}}

        def floor_cfg(i: int) -> RunnableConfig:
            return {"configurable": {"thread_id": f"floor-{i}"}, "callbacks": [noop]}

        def guarded_cfg(i: int) -> RunnableConfig:
            return {"configurable": {"thread_id": f"hw-{i}"}, "callbacks": [handler]}

        arms = [_timer(bare, bare_cfg), _timer(floor, floor_cfg), _timer(guarded, guarded_cfg)]
        for i in range(50):  # warm-up: imports, caches, SQLite pages
            for arm in arms:
                arm(-i - 1)
        times: list[list[float]] = [[], [], []]
        core_t = [_core_only(guard, desk, i) for i in range(n)]
        tool_t = []
        for _ in range(n):  # the tools' own work, which the core-only loop includes
            t0 = time.perf_counter()
            desk.call("find_user", {"email": "alice@example.com"})
            desk.call("lookup_order", {"order_id": "A1"})
            tool_t.append(time.perf_counter() - t0)
        gc.collect()
        for i in range(n):  # interleaved, alternating the order
            for k in (0, 1, 2) if i % 2 else (2, 1, 0):
                times[k].append(arms[k](i))
        guard.flush()
        events = len(guard.store.events("hw-0"))
        decisions = [
            e.data["decision"]["action"] for e in guard.store.events("hw-0") if e.type == "tool_call"
        ]
        assert decisions == ["allow", "allow"], decisions
        desk.close()
        guard.close()
        for conn in connections:
            conn.close()
    b, f, g = (statistics.median(t) for t in times)
    core = statistics.median(core_t) - statistics.median(tool_t)
    return {
        "bare_ms": b * 1e3,
        "floor": f / b,
        "guarded_ms": g * 1e3,
        "ratio": g / b,
        "events": events,
        "us_per_event": (g - b) / events * 1e6,
        "core_us_per_event": core / events * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.langgraph_overhead")
    parser.add_argument("-n", type=int, default=600, help="invokes of each graph (default 600)")
    args = parser.parse_args(argv)
    print(
        f"LangGraph support-desk graph, 3 model calls + 2 tool calls, median of {args.n} interleaved invokes"
    )
    print(f"headway build: {build()}")
    print(
        f"{'checkpointer':<14}{'trace store':<13}{'bare ms':>10}{'floor':>8}{'headway ms':>12}{'ratio':>8}"
        f"{'events':>8}{'µs/event':>10}"
        f"{'(core alone)':>14}"
    )
    for checkpointer, sqlite in (
        ("none", True),
        ("InMemorySaver", True),
        ("SqliteSaver", True),
        ("none", False),
    ):
        r = measure(args.n, checkpointer=checkpointer, sqlite=sqlite)
        print(
            f"{checkpointer:<14}{'SQLite' if sqlite else 'memory':<13}"
            f"{r['bare_ms']:>10.3f}{r['floor']:>8.3f}{r['guarded_ms']:>12.3f}"
            f"{r['ratio']:>8.3f}{r['events']:>8.0f}{r['us_per_event']:>10.1f}{r['core_us_per_event']:>14.1f}"
        )
    print("floor: bare graph + a do-nothing handler on the same events + a pass-through tool wrapper")
    print("µs/event: (headway - bare) / headway events per invoke; core alone: the same events through Run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
