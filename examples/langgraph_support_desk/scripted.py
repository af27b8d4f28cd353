"""A scripted chat model: replies with pre-baked AIMessages, so the example and tests run offline.

Which reply comes next is read from the prompt (the number of AI messages already in it), not from a
counter: a graph resumed in another process, or a node re-run on resume, gets the same reply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool

from examples.support_desk.scenarios import Scenario


class ScriptedChatModel(BaseChatModel):
    """Replies with `script[k]`, k = AI messages in the prompt; the last reply repeats."""

    script: list[AIMessage]
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> ScriptedChatModel:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        k = sum(isinstance(m, AIMessage) for m in messages)
        self.calls += 1
        msg = self.script[min(k, len(self.script) - 1)].model_copy()
        return ChatResult(generations=[ChatGeneration(message=msg)])


def turn(text: str = "", *calls: tuple[str, str, dict[str, Any]]) -> AIMessage:
    """One model turn: `turn("", ("lookup_order", "c1", {"order_id": "A1"}))`."""
    return AIMessage(
        content=text,
        tool_calls=[
            {"name": name, "args": args, "id": cid, "type": "tool_call"} for name, cid, args in calls
        ],
    )


def script_for(scenario: Scenario) -> list[AIMessage]:
    """The scenario's model turns, in order, as the scripted model's replies."""
    return [
        turn(step.text, *((c.tool, c.id, dict(c.args)) for c in step.calls))
        for step in scenario.steps
        if step.kind in ("model", "end")
    ]
