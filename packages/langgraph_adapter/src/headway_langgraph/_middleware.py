"""`HeadwayMiddleware`: the same enforcement for `langchain.agents.create_agent` agents.

Tool calls go through the shared gate (`wrap_tool_call`). Model calls go through `wrap_model_call`: the
user's new messages and each model turn are recorded there, a stop ends the run with a message from
headway instead of the model's turn, and a final answer that claims what no result backs is replaced by
headway's reason, the model being asked once to answer again. `before_model` / `after_model` hooks
would do the same with jumps, but each is a graph node of its own, run at every model turn: a no-op
middleware with them (and a tool wrapper) costs a three-turn create_agent run about 29%, one with
`wrap_model_call` instead about 7% (`bench/peers.py`, the control rows).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest

from headway import Decision, Guard, Run

from ._gate import AExecute, Execute, ToolGate, ToolOutput, thread_id
from ._handler import _text, _tokens, first_time
from ._version import REQUIRED_AGENTS, check_versions

_HEADWAY = "headway"  # the name on messages headway adds to the conversation
_SEEN = "headway_langgraph.middleware_seen"  # Run.memo key: the user messages this middleware recorded
_AGAIN = "[headway] Answer the user again, claiming only what the tool results show."

ModelCall = Callable[[ModelRequest[Any]], ModelResponse[Any]]
AModelCall = Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]


def _stopped(d: Decision) -> AIMessage:
    return AIMessage(content=d.for_model(), name=_HEADWAY)


def _sent_back(messages: Sequence[BaseMessage]) -> bool:
    """Whether headway already sent a final answer of this turn back to the model."""
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m.name == _HEADWAY
    return False


class HeadwayMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """`create_agent(model, tools, middleware=[HeadwayMiddleware(guard)], checkpointer=...)`.

    One headway run per thread id. `block` answers the model, `clarify`/`escalate` pause with
    `interrupt()` (resume with `Command(resume={"action": ..., "by": ...})`), `stop` ends the run with
    a final message from headway. A final answer claiming an outcome no tool result backs ("I have
    refunded...") is not delivered: it is replaced by headway's reason (a message named "headway")
    and the model is asked once to answer again; a second such answer, or one a person must review
    (escalate), stays replaced and the run ends. Use it instead of `HeadwayCallbackHandler`, not with
    it: both record model turns.
    """

    def __init__(self, guard: Guard) -> None:
        check_versions(REQUIRED_AGENTS)
        super().__init__()
        self.guard = guard
        self.gate = ToolGate(guard, raise_on_stop=False)

    @property
    def name(self) -> str:
        return "HeadwayMiddleware"

    # ---- tool calls -------------------------------------------------------------------------------

    def wrap_tool_call(self, request: ToolCallRequest, handler: Execute) -> ToolOutput:
        return self.gate.wrap(request, handler)

    async def awrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], Awaitable[ToolOutput]]
    ) -> ToolOutput:
        execute: AExecute = handler
        return await self.gate.awrap(request, execute)

    # ---- model turns ------------------------------------------------------------------------------

    def wrap_model_call(self, request: ModelRequest[Any], handler: ModelCall) -> ModelResponse[Any]:
        run, stop = self._before(request.messages)
        if stop is not None:
            return stop
        response, again = self._judge(run, request.messages, handler(request))
        if not again:
            return response
        # sent back once: the model answers the conversation, its withheld answer and headway's note
        answer = handler(_asking_again(request, response))
        second, _ = self._judge(run, response.result, answer)
        return _joined(response, second)

    async def awrap_model_call(self, request: ModelRequest[Any], handler: AModelCall) -> ModelResponse[Any]:
        run, stop = self._before(request.messages)
        if stop is not None:
            return stop
        response, again = self._judge(run, request.messages, await handler(request))
        if not again:
            return response
        answer = await handler(_asking_again(request, response))
        second, _ = self._judge(run, response.result, answer)
        return _joined(response, second)

    def _before(self, messages: Sequence[AnyMessage]) -> tuple[Run, ModelResponse[Any] | None]:
        """Record the user's new messages. A call the gate answered with a stop ends the run here, with
        headway's message instead of another model turn."""
        run = self.guard.start_run(thread_id(get_config()))
        tail: list[AnyMessage] = []
        for m in reversed(messages):
            if isinstance(m, AIMessage):
                break
            tail.append(m)
        for m in reversed(tail):
            # headway's own note on a final answer is not the user's word (nothing it quotes is grounded)
            if isinstance(m, HumanMessage) and m.name != _HEADWAY and first_time(run, _SEEN, m):
                run.user(_text(m.content))
            if isinstance(m, ToolMessage):
                d = run.decision(m.tool_call_id)
                if d is not None and d.action == "stop":
                    return run, ModelResponse(result=[_stopped(d)])
        return run, None

    def _judge(
        self, run: Run, messages: Sequence[BaseMessage], response: ModelResponse[Any]
    ) -> tuple[ModelResponse[Any], bool]:
        """Record the model's turn (its answer to `messages`) and enforce the decision on it: the response
        as it may stand, and whether the model is to answer again (an unsupported claim, sent back once:
        the response then ends with headway's note asking for it)."""
        result = response.result
        last = result[-1] if result else None
        if not isinstance(last, AIMessage):
            return response, False  # a structured output's tool message: not a turn to judge
        calls = [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in last.tool_calls]
        d = run.model(_text(last.content), calls, tokens=_tokens(last), final=not calls)
        if d.action == "allow":
            return response, False
        if d.action != "stop" and d.stage == "end":
            # An unsupported claim: the model may correct itself once (a block); then, or at once when
            # a person must look (escalate), headway's reason replaces the answer, so the user never
            # reads the claim. The trace keeps the original. (`messages` ending with headway's note:
            # this is the second answer, and it stays replaced.)
            replaced = [*result[:-1], AIMessage(d.for_model(), name=_HEADWAY, id=last.id)]
            again = d.action == "block" and not _sent_back(messages)
            if again:
                replaced.append(HumanMessage(_AGAIN, name=_HEADWAY))
            return ModelResponse(result=replaced, structured_response=response.structured_response), again
        if d.action != "stop":
            return response, False
        # every proposed call gets an answer, so the history stays valid for the next turn
        answers = [
            ToolMessage(d.for_model(), tool_call_id=c["id"], name=c["name"], status="error") for c in calls
        ]
        return ModelResponse(result=[*result, *answers, _stopped(d)]), False


def _asking_again(request: ModelRequest[Any], sent_back: ModelResponse[Any]) -> ModelRequest[Any]:
    """The request for the model's second answer: the conversation, its withheld answer, headway's note."""
    return request.override(messages=cast("list[AnyMessage]", [*request.messages, *sent_back.result]))


def _joined(sent_back: ModelResponse[Any], second: ModelResponse[Any]) -> ModelResponse[Any]:
    """What the state gets after a send-back: the withheld answer, headway's note, the second answer."""
    return ModelResponse(
        result=[*sent_back.result, *second.result], structured_response=second.structured_response
    )
