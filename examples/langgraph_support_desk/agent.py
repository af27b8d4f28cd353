"""The support-desk agent as a LangGraph StateGraph: a model node and a guarded ToolNode, looping until
the model answers without tool calls. Copy this file to start your own agent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, SystemMessage
from langchain_core.tools import BaseTool, StructuredTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import tools_condition
from pydantic import create_model
from typing_extensions import TypedDict

from examples.support_desk import TOOL_SPECS, SupportDesk, ToolError
from headway import Guard, Policy
from headway_langgraph import guarded_tool_node

POLICY_FILE = __file__.rsplit("/", 1)[0] + "/policy.toml"
SYSTEM = (
    "You are a support agent for an online shop. Identify the customer, look orders up before acting, "
    "describe a refund and wait for the customer's explicit yes before making it."
)
_TYPES: dict[str, type] = {"string": str, "number": float, "integer": int, "boolean": bool}


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def load_policy() -> Policy:
    return Policy.load(POLICY_FILE)


def desk_tools(desk: SupportDesk) -> list[BaseTool]:
    """The desk's tools as LangChain tools (schemas from the shared TOOL_SPECS)."""
    tools: list[BaseTool] = []
    for name, spec in TOOL_SPECS.items():
        fields: dict[str, Any] = {arg: (_TYPES[p["type"]], ...) for arg, p in spec["parameters"].items()}
        if name == "refund_order":
            fields["reason"] = (str, "")

        def run(_name: str = name, **args: Any) -> Any:
            return desk.call(_name, args)

        tools.append(
            StructuredTool.from_function(
                func=run,
                name=name,
                description=spec["description"],
                args_schema=create_model(f"{name}_args", **fields),
            )
        )
    return tools


def tool_error(e: ToolError) -> str:
    """A tool's own failure (unknown order, already refunded) goes back to the model as an error message."""
    return f"Error: {e}"


def build_graph(
    model: BaseChatModel,
    tools: Sequence[BaseTool],
    guard: Guard,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[State, None, State, State]:
    bound = model.bind_tools(list(tools))

    def agent(state: State) -> dict[str, Any]:
        return {"messages": [bound.invoke([SystemMessage(SYSTEM), *state["messages"]])]}

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tools", guarded_tool_node(tools, guard, handle_tool_errors=tool_error))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer)
