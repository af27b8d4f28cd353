"""Small graphs for the adapter tests: the example agent, and a Send fan-out variant (one task per call)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from examples.langgraph_support_desk.agent import State, tool_error
from examples.langgraph_support_desk.scripted import ScriptedChatModel, turn
from headway import Guard
from headway_langgraph import HeadwayCallbackHandler, guarded_tool_node

ALICE = "Hi, I'm alice@example.com."
IDENTIFY = [
    turn("", ("find_user", "c1", {"email": "alice@example.com"})),
    turn("", ("lookup_order", "c2", {"order_id": "A3"})),
    turn("Order A3 (standing desk, $250). Shall I refund $250 for order A3?"),
]


def config(thread: str, guard: Guard | None = None) -> RunnableConfig:
    cfg: RunnableConfig = {"configurable": {"thread_id": thread}}
    if guard is not None:
        cfg["callbacks"] = [HeadwayCallbackHandler(guard)]
    return cfg


def user(text: str) -> State:
    return {"messages": [HumanMessage(text)]}


def fan_out(state: State) -> list[Send] | str:
    last = state["messages"][-1]
    if isinstance(last, AIMessage) and last.tool_calls:
        return [Send("tools", [c]) for c in last.tool_calls]
    return END


def build(
    script: list[AIMessage],
    tools: Sequence[BaseTool],
    guard: Guard,
    checkpointer: BaseCheckpointSaver[Any] | None,
    *,
    send: bool = False,
    **toolnode: Any,
) -> CompiledStateGraph[State, None, State, State]:
    """model -> tools -> model; `send=True` fans calls out one task each, as create_agent does."""
    model = ScriptedChatModel(script=script)

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    async def aagent(state: State) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    from langchain_core.runnables import RunnableLambda
    from langgraph.prebuilt import tools_condition

    toolnode.setdefault("handle_tool_errors", tool_error)
    b = StateGraph(State)
    b.add_node("agent", RunnableLambda(agent, afunc=aagent))
    b.add_node("tools", guarded_tool_node(tools, guard, **toolnode))
    b.add_edge(START, "agent")
    if send:
        b.add_conditional_edges("agent", fan_out, ["tools", END])
    else:
        b.add_conditional_edges("agent", tools_condition)
    b.add_edge("tools", "agent")
    return b.compile(checkpointer=checkpointer)
