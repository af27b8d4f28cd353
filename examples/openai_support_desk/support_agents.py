"""The agents: triage (identify the customer, look things up, open tickets) and refunds.

The tools are built from the shared `TOOL_SPECS` JSON schemas, so the Agents SDK example runs exactly
the same domain code as the core and LangGraph examples.
"""

from __future__ import annotations

import json
from typing import Any

from agents import Agent, FunctionTool, Model, RunContextWrapper

from examples.support_desk import TOOL_SPECS, SupportDesk, ToolError

TRIAGE_TOOLS = ("find_user", "list_orders", "lookup_order", "create_ticket")
REFUND_TOOLS = ("find_user", "list_orders", "lookup_order", "refund_order")

TRIAGE_INSTRUCTIONS = (
    "You are the first line of a customer-support desk. Identify the customer by email (find_user), "
    "look up orders, and open a ticket when a person must follow up. Hand refund requests to the "
    "refunds agent."
)
REFUND_INSTRUCTIONS = (
    "You handle refunds. Always look the order up first, tell the customer the amount and ask for an "
    "explicit yes before refund_order. If the customer has several orders and did not say which, ask."
)


def desk_tool(desk: SupportDesk, name: str) -> FunctionTool:
    """One desk operation as an Agents SDK function tool (JSON in, JSON out; domain errors as data)."""
    spec = TOOL_SPECS[name]
    params: dict[str, Any] = dict(spec["parameters"])
    schema = {"type": "object", "properties": params, "required": list(params), "additionalProperties": False}

    async def invoke(ctx: RunContextWrapper[Any], raw: str) -> str:
        args = json.loads(raw) if raw else {}
        try:
            return json.dumps(desk.call(name, args))
        except ToolError as e:
            return json.dumps({"error": str(e)})

    return FunctionTool(
        name=name, description=str(spec["description"]), params_json_schema=schema, on_invoke_tool=invoke
    )


def build_agents(desk: SupportDesk, model: str | Model | None = None) -> Agent[Any]:
    """The unguarded triage agent (with its refunds handoff); guard it with `guard_agent`."""
    refunds = Agent[Any](
        name="refunds",
        instructions=REFUND_INSTRUCTIONS,
        handoff_description="Refunds for delivered orders.",
        tools=[desk_tool(desk, n) for n in REFUND_TOOLS],
        model=model,
    )
    return Agent[Any](
        name="triage",
        instructions=TRIAGE_INSTRUCTIONS,
        tools=[desk_tool(desk, n) for n in TRIAGE_TOOLS],
        handoffs=[refunds],
        model=model,
    )
