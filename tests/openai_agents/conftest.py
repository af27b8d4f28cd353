"""Fixtures for the Agents SDK adapter: the support-desk domain and policy, a guard on a temp store, and
`Convo`, a conversation with guarded agents, the real Runner and a scripted model."""

from __future__ import annotations

from typing import Any

from agents import Agent, RunConfig, Runner, RunResult, RunState
from agents.items import TResponseInputItem
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.testing.model import ModelScriptItem

from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from headway import Guard
from headway_openai_agents import RUN_ID_KEY, guard_agent, resume

ALICE = "Hi, I'm alice@example.com."


class Convo:
    """A conversation with the guarded support-desk agents: one Runner.run per user message."""

    def __init__(
        self, guard: Guard, desk: SupportDesk, run_id: str = "r1", steps: list[ModelScriptItem] | None = None
    ):
        self.guard = guard
        self.model = ScriptedModel(steps or [])
        self.config = RunConfig(model=self.model)
        self.context: dict[str, Any] = {RUN_ID_KEY: run_id}
        self.run_id = run_id
        self.agent: Agent[Any] = guard_agent(build_agents(desk), guard)
        self.result: RunResult | None = None
        self.started: Agent[Any] = self.agent

    def script(self, *steps: ModelScriptItem) -> None:
        self.model.extend(steps)

    async def say(self, text: str) -> RunResult:
        if self.result is None:
            self.started, given = self.agent, text
            self.result = await Runner.run(self.agent, given, context=self.context, run_config=self.config)
        else:
            self.started = self.result.last_agent
            history: list[TResponseInputItem] = [
                *self.result.to_input_list(),
                {"role": "user", "content": text},
            ]
            self.result = await Runner.run(
                self.started, history, context=self.context, run_config=self.config
            )
        return self.result

    async def resume(self, state: RunState[Any, Any]) -> RunResult:
        self.result = await resume(self.started, state, self.guard, run_config=self.config)
        return self.result

    def last_tool_output(self, call_id: str) -> str:
        """What the model was given for `call_id` (the latest model input that contains it)."""
        for call in reversed(self.model.calls):
            for item in call.input:
                if (
                    isinstance(item, dict)
                    and item.get("type") == "function_call_output"
                    and item.get("call_id") == call_id
                ):
                    return str(item.get("output"))
        raise AssertionError(f"the model never saw an output for {call_id}")


def call(tool: str, call_id: str, **args: Any) -> ModelScriptItem:
    return [function_call(tool, args, call_id=call_id)]


def handoff(n: int = 1) -> ModelScriptItem:
    return [function_call("transfer_to_refunds", {}, call_id=f"handoff-{n}")]


def text(message: str) -> ModelScriptItem:
    return [assistant_message(message)]


async def confirmed_refund_setup(
    convo: Convo, order: str = "A3", amount: float = 250, proposal: str = ""
) -> None:
    """The customer is identified, the order looked up and the refund proposed and confirmed; the next
    scripted step is the refund call (scripted by the caller)."""
    convo.script(
        call("find_user", "c1", email="alice@example.com"),
        call("lookup_order", "c2", order_id=order),
        text(proposal or f"Order {order} qualifies. Shall I refund ${amount:g} for order {order}?"),
    )
    await convo.say(f"{ALICE} Order {order} arrived broken, please refund it.")
    convo.script(handoff())
