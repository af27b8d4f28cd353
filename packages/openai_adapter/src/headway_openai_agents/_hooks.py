"""Run hooks: the user's messages and the model's turns go into the headway run's trajectory.

Tool calls and results are recorded by the tool guardrails (they see every call, also on resume); the
hooks see the conversation around them. A model turn headway answers with `stop` ends the run with
`HeadwayStopped`, which the SDK raises with its run data; the agent hooks of `guard_agent` also withhold
a final answer that claims what no result backs (`OutputGuardrailTripwireTriggered`).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from agents import (
    Agent,
    AgentHookContext,
    AgentHooks,
    Handoff,
    ModelResponse,
    OutputGuardrail,
    OutputGuardrailResult,
    OutputGuardrailTripwireTriggered,
    RunContextWrapper,
    RunHooks,
    Tool,
    guardrail_span,
)
from agents.items import TResponseInputItem
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

from headway import Decision, Guard, Run

from ._compat import check_sdk_version
from ._errors import HeadwayStopped
from ._gate import answer_verdict
from ._runs import Extras, extras, parse_args, run_for


def _get(item: Any, key: str) -> Any:
    # `type is dict` first: input items are nearly always plain dicts, and the Mapping check is an ABC's
    if type(item) is dict or isinstance(item, Mapping):
        return item.get(key)
    return getattr(item, key, None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = (_get(p, "text") for p in content)
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def user_texts(items: Sequence[Any]) -> list[str]:
    return [_text_of(_get(it, "content")) for it in items if _get(it, "role") == "user"]


def _new_messages(seen: list[str], texts: list[str]) -> list[str]:
    """The user messages in this model input that headway has not recorded yet.

    The input is either the whole conversation (history passed back) or only its newest part (server
    side memory); both end with the new messages, after the longest prefix of it that closes `seen`.
    """
    n = len(seen)
    if len(texts) >= n and texts[:n] == seen:
        return texts[n:]
    for k in range(min(len(texts), n), 0, -1):
        if texts[:k] == seen[-k:]:
            return texts[k:]
    return texts


def _handoff_names(agent: Any) -> set[str]:
    names = set()
    for h in getattr(agent, "handoffs", None) or ():
        names.add(h.tool_name if isinstance(h, Handoff) else Handoff.default_tool_name(h))
    return names


class Observer:
    """Feeds one guard's runs from SDK lifecycle events; shared by run hooks and agent hooks."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._handoffs: dict[int, tuple[weakref.ref[Any], set[str]]] = {}

    def _handoff_names(self, agent: Any) -> set[str]:
        hit = self._handoffs.get(id(agent))
        if hit is not None and hit[0]() is agent:
            return hit[1]
        names = _handoff_names(agent)
        key = id(agent)
        self._handoffs[key] = (weakref.ref(agent, lambda _r: self._handoffs.pop(key, None)), names)
        return names

    def llm_start(self, ctx: RunContextWrapper[Any], input_items: Sequence[Any]) -> None:
        run = run_for(self.guard, ctx)
        ex = extras(run)
        texts = user_texts(input_items)
        with ex.lock:
            seen = _seen(run, ex)
            new = _new_messages(seen, texts)
            seen.extend(new)
        for text in new:
            run.user(text)

    def llm_end(
        self, ctx: RunContextWrapper[Any], agent: Any, response: ModelResponse, *, for_guardrail: bool = True
    ) -> tuple[str, Decision] | None:
        """Record a model turn. Returns (text, decision) when it answers the user (None otherwise).

        `for_guardrail`: leave the decision for headway's output guardrail to take (`Extras.answer`).
        Agent hooks that withhold answers themselves pass False, so no decision is left behind for an
        output guardrail of a later turn to mistake for its own.
        """
        run = run_for(self.guard, ctx)
        ex = extras(run)
        with ex.lock:
            last = ex.last_response
            if last is not None and last() is response:  # already recorded by the other hook
                answer = ex.last_answer
                if not for_guardrail and answer is not None and ex.answer is answer[1]:
                    ex.answer = None
                return answer
            ex.last_response = weakref.ref(response)
            ex.last_answer = None
        handoffs = self._handoff_names(agent)
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        # A response without any function call (tool or handoff) is an answer to the user: its claims are
        # checked against the results, and the decision recorded with the turn.
        final = True
        for item in response.output:
            if isinstance(item, ResponseOutputMessage):
                text = _text_of(item.content)
                if text:
                    texts.append(text)
            elif isinstance(item, ResponseFunctionToolCall):
                final = False
                if item.name not in handoffs:
                    calls.append({"name": item.name, "args": parse_args(item.arguments), "id": item.call_id})
        usage = response.usage
        tokens = usage.total_tokens if usage is not None else None
        text = "\n".join(texts)
        d = run.model(text, tool_calls=calls, tokens=tokens or None, final=final)
        if d.action == "stop":
            raise HeadwayStopped(d, run.run_id)
        if not final:
            return None
        ex.last_answer = (text, d)
        if for_guardrail:
            ex.answer = d  # the output guardrail acts on it
        return text, d


def _seen(run: Run, ex: Extras) -> list[str]:
    if ex.users_seen is None:
        # A run restored from the trace store (another process): what it recorded is what was seen.
        ex.users_seen = list(run.view.user_messages)
    return ex.users_seen


class HeadwayRunHooks(RunHooks[Any]):
    """`Runner.run(agent, input, hooks=HeadwayRunHooks(guard))`: records the conversation into headway.

    `guard_agent` installs the same observation as agent hooks, so guarded agents need no run hooks;
    using both records each event once. Subclass and call `super()` to add your own hooks.
    """

    def __init__(self, guard: Guard) -> None:
        check_sdk_version()
        self.guard = guard
        self._observer = Observer(guard)

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        self._observer.llm_start(context, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        self._observer.llm_end(context, agent, response)


def withheld(guardrail: OutputGuardrail[Any], agent: Any, answer: str, d: Decision) -> Exception:
    """What the SDK raises when an output guardrail trips, as if headway's `guardrail` had: the same
    exception, result and trace span, so callers handle a withheld answer one way."""
    with guardrail_span(guardrail.get_name(), triggered=True):
        pass
    return OutputGuardrailTripwireTriggered(
        OutputGuardrailResult(guardrail=guardrail, agent=agent, agent_output=answer, output=answer_verdict(d))
    )


class GuardedAgentHooks(AgentHooks[Any]):
    """The agent hooks `guard_agent` installs: headway's observation, then the agent's own hooks.

    `withhold`: the answer guardrail headway enforces here, when the model's answer arrives, instead of
    as an output guardrail of the agent (which costs an SDK run about 170 µs, 4%, even when it passes).
    """

    def __init__(
        self, observer: Observer, inner: AgentHooks[Any] | None, withhold: OutputGuardrail[Any] | None = None
    ) -> None:
        self._observer = observer
        self.inner = inner
        self.withhold = withhold

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        self._observer.llm_start(context, input_items)
        if self.inner is not None:
            await self.inner.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        answer = self._observer.llm_end(context, agent, response, for_guardrail=self.withhold is None)
        if self.inner is not None:
            await self.inner.on_llm_end(context, agent, response)
        if self.withhold is not None and answer is not None and answer[1].action != "allow":
            raise withheld(self.withhold, agent, answer[0], answer[1])

    async def on_start(self, context: AgentHookContext[Any], agent: Agent[Any]) -> None:
        if self.inner is not None:
            await self.inner.on_start(context, agent)

    async def on_end(self, context: AgentHookContext[Any], agent: Agent[Any], output: Any) -> None:
        if self.inner is not None:
            await self.inner.on_end(context, agent, output)

    async def on_handoff(
        self, context: RunContextWrapper[Any], agent: Agent[Any], source: Agent[Any]
    ) -> None:
        if self.inner is not None:
            await self.inner.on_handoff(context, agent=agent, source=source)

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool) -> None:
        if self.inner is not None:
            await self.inner.on_tool_start(context, agent, tool)

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        if self.inner is not None:
            await self.inner.on_tool_end(context, agent, tool, result)
