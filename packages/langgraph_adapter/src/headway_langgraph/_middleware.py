"""`HeadwayMiddleware`: the same enforcement for `langchain.agents.create_agent` agents.

Tool calls go through the shared gate (`wrap_tool_call`); user messages and model turns are recorded
from `before_model` / `after_model`; a stop ends the run by jumping to the end from either hook. A final
answer that claims what no result backs is replaced by headway's reason, and the model may answer again
once.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState, hook_config
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.config import get_config
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime

from headway import Decision, Guard, Run

from ._gate import AExecute, Execute, ToolGate, ToolOutput, thread_id
from ._handler import _text, _tokens
from ._version import REQUIRED_AGENTS, check_versions

_HEADWAY = "headway"  # the name on messages headway adds to the conversation
_SEEN = "headway_langgraph.middleware_seen"  # Run.memo key: ids of the messages this middleware recorded
# Guards those sets: one lock for all middleware instances, since instances feeding one run share its set.
_SEEN_LOCK = threading.Lock()
_AGAIN = "[headway] Answer the user again, claiming only what the tool results show."


def _stopped(d: Decision) -> AIMessage:
    return AIMessage(content=d.for_model(), name=_HEADWAY)


def _sent_back(messages: Sequence[AnyMessage]) -> bool:
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

    def _run(self) -> Run:
        return self.guard.start_run(thread_id(get_config()))

    def _first_time(self, run: Run, msg: AnyMessage) -> bool:
        key = msg.id or f"{type(msg).__name__}:{_text(msg.content)}"
        with _SEEN_LOCK:
            # message ids already recorded, kept on the run (they end with it), as the handler does
            seen: set[str] = run.memo.setdefault(_SEEN, set())
            if key in seen:
                return False
            seen.add(key)
            return True

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        run = self._run()
        tail: list[AnyMessage] = []
        for m in reversed(state["messages"]):
            if isinstance(m, AIMessage):
                break
            tail.append(m)
        for m in reversed(tail):
            # headway's own note on a final answer is not the user's word (nothing it quotes is grounded)
            if isinstance(m, HumanMessage) and m.name != _HEADWAY and self._first_time(run, m):
                run.user(_text(m.content))
            if isinstance(m, ToolMessage):
                # the gate answered a stopped call with a message; the run ends here, before the model
                d = run.decision(m.tool_call_id)
                if d is not None and d.action == "stop":
                    return {"jump_to": "end", "messages": [_stopped(d)]}
        return None

    @hook_config(can_jump_to=["end", "model"])
    def after_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages: Sequence[AnyMessage] = state["messages"]
        last = messages[-1] if messages else None
        if not isinstance(last, AIMessage):
            return None
        run = self._run()
        if not self._first_time(run, last):
            return None
        calls = [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in last.tool_calls]
        d = run.model(_text(last.content), calls, tokens=_tokens(last), final=not calls)
        if d.action == "allow":
            return None
        if d.action != "stop" and d.stage == "end":
            # An unsupported claim: the model may correct itself once (a block); then, or at once when
            # a person must look (escalate), headway's reason replaces the answer (same id: the state's
            # reducer swaps it), so the user never reads the claim. The trace keeps the original.
            withheld = AIMessage(d.for_model(), name=_HEADWAY, id=last.id)
            if d.action == "block" and not _sent_back(messages):
                return {"jump_to": "model", "messages": [withheld, HumanMessage(_AGAIN, name=_HEADWAY)]}
            return {"jump_to": "end", "messages": [withheld]}
        if d.action != "stop":
            return None
        # every proposed call gets an answer, so the history stays valid for the next turn
        answers: list[AnyMessage] = [
            ToolMessage(d.for_model(), tool_call_id=c["id"], name=c["name"], status="error") for c in calls
        ]
        return {"jump_to": "end", "messages": [*answers, _stopped(d)]}

    @hook_config(can_jump_to=["end"])
    async def abefore_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.before_model(state, runtime)

    @hook_config(can_jump_to=["end", "model"])
    async def aafter_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.after_model(state, runtime)
