"""`HeadwayCallbackHandler`: records a LangGraph run's trajectory into headway and stops it on `stop`.

A sync handler run inline (the cheapest kind); it listens to model and tool events only, since chain
events are the bulk of a graph's callbacks and carry nothing headway needs. Tool callbacks arrive from
ToolNode worker threads: the state here is per-event dictionaries, each touched by single atomic dict
operations, and the seen user messages on the run, under a module lock.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, LLMResult
from langgraph.errors import GraphBubbleUp

from headway import Action, Decision, Guard, HeadwayError, Run

from ._errors import AnswerWithheld, GraphRunStopped
from ._gate import observed
from ._version import check_versions

_WHERE_KEYS = ("langgraph_node", "langgraph_step", "langgraph_triggers", "checkpoint_ns")
_STOP_ONLY: tuple[Action, ...] = ("stop",)
_SEEN = "headway_langgraph.seen_messages"
# Guards the seen-message sets on Run.memo. One lock for all handlers and middlewares, since every one
# feeding a run shares its set (a handler is often built per invoke), and a lock of each one's own would not.
_SEEN_LOCK = threading.Lock()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text", "") for p in content if isinstance(p, str | dict)]
        return "".join(str(p) for p in parts)
    return str(content)


def first_time(run: Run, memo_key: str, msg: BaseMessage) -> bool:
    """Whether the run meets this message for the first time (a prompt repeats the whole history). The
    ids of the messages met (or their text) are kept on the run under `memo_key`, so they end with it."""
    key = msg.id or f"text:{_text(msg.content)}"
    with _SEEN_LOCK:
        seen: set[str] = run.memo.setdefault(memo_key, set())
        if key in seen:
            return False
        seen.add(key)
        return True


def _tokens(msg: AIMessage) -> int | None:
    usage = msg.usage_metadata
    return int(usage["total_tokens"]) if usage else None


class HeadwayCallbackHandler(BaseCallbackHandler):
    """Add to `config={"callbacks": [handler]}`: every user message, model turn, tool call and result of
    the run goes to headway (one headway run per LangGraph thread id), with its detectors and
    after-checks; when the policy says `stop`, `GraphRunStopped` is raised before the tool runs.

    `stop_on`: decisions that abort the run from here (default: only `stop`). Per-call `block`,
    `clarify` and `escalate` are enforced by `guarded_tool_node`, which the handler does not replace.
    `run_id`: record into this headway run instead of the thread id (for runnables outside a graph).
    `withhold_answers`: a final answer claiming an outcome no tool result backs raises `AnswerWithheld`
    (a `GraphRunStopped`) from the model's turn instead of reaching the user; by default it is only
    recorded. (`HeadwayMiddleware` withholds such answers without aborting the run.)
    """

    raise_error: bool = True  # a stop must abort the run, not be logged
    run_inline: bool = True  # no executor hop on the async path; safe, since the handler never blocks

    def __init__(
        self,
        guard: Guard,
        *,
        stop_on: Collection[Action] = _STOP_ONLY,
        run_id: str | None = None,
        withhold_answers: bool = False,
    ) -> None:
        check_versions()
        if not isinstance(guard, Guard):
            raise TypeError(f"HeadwayCallbackHandler needs a Guard, got {type(guard).__name__}")
        self.guard = guard
        self.stop_on = frozenset(stop_on)
        self.fixed_run_id = run_id
        self.withhold_answers = withhold_answers
        # langchain run id -> headway run id (on_llm_end carries no metadata); tool run id -> (run, call id)
        self._models: dict[UUID, tuple[str, dict[str, Any]]] = {}
        self._tools: dict[UUID, tuple[str, str, dict[str, Any]]] = {}

    # Chain events are most of a graph's callbacks; headway needs none of them. (`ignore_agent` must
    # stay False: langchain-core dispatches tool events under that flag.) Plain class attributes, not
    # the base class's properties: langchain-core reads a flag for every event of every handler, about
    # 30 reads per model-and-tool turn, and an attribute read skips a Python call each time.
    ignore_chain: bool = True
    ignore_retriever: bool = True
    ignore_retry: bool = True
    ignore_custom_event: bool = True
    ignore_llm: bool = False
    ignore_chat_model: bool = False
    ignore_agent: bool = False

    # ---- helpers ----------------------------------------------------------------------------------

    def _run_id(self, metadata: Mapping[str, Any] | None) -> str | None:
        if self.fixed_run_id is not None:
            return self.fixed_run_id
        tid = (metadata or {}).get("thread_id")
        return None if tid is None or tid == "" else str(tid)

    @staticmethod
    def _where(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
        """Where in the graph an event happened, recorded with it (`langgraph_node`, `langgraph_step`)."""
        where: dict[str, Any] = {}
        if metadata:
            for k in _WHERE_KEYS:  # a loop, not a comprehension: this runs at every event
                if k in metadata:
                    where[k] = metadata[k]
        return where

    def _stop(self, d: Decision, run: Run) -> None:
        if d.action in self.stop_on:
            raise GraphRunStopped(d, run.run_id)

    def _new_users(self, run: Run, messages: Sequence[BaseMessage]) -> list[str]:
        """User messages of the prompt that the run has not seen: those after the last AI message."""
        tail: list[BaseMessage] = []
        for m in reversed(messages):
            if isinstance(m, AIMessage):
                break
            if isinstance(m, HumanMessage):
                tail.append(m)
        if not tail:
            return []  # the usual prompt after a tool turn: no lock, no lookup
        tail.reverse()
        return [_text(m.content) for m in tail if first_time(run, _SEEN, m)]

    # ---- model events -----------------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        rid = self._run_id(metadata)
        if rid is None:
            return
        run = self.guard.start_run(rid)
        where = self._where(metadata)
        for text in self._new_users(run, messages[0] if messages else []):
            run.user(text, meta=where)
        self._models[run_id] = (rid, where)

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        started = self._models.pop(run_id, None)
        if started is None or not response.generations or not response.generations[0]:
            return
        rid, where = started
        gen = response.generations[0][0]
        msg = gen.message if isinstance(gen, ChatGeneration) else None
        if not isinstance(msg, AIMessage):
            return
        run = self.guard.start_run(rid)
        calls = [{"name": c["name"], "args": c["args"], "id": c["id"]} for c in msg.tool_calls]
        # A turn without tool calls answers the user: its claimed outcomes are checked against results.
        d = run.model(_text(msg.content), calls, tokens=_tokens(msg), final=not calls, meta=where)
        self._stop(d, run)
        if self.withhold_answers and d.stage == "end" and d.action != "allow":
            raise AnswerWithheld(d, run.run_id)

    def on_llm_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        self._models.pop(run_id, None)

    # ---- tool events ------------------------------------------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        rid = self._run_id(metadata)
        if rid is None:
            return
        cid = str(kwargs.get("tool_call_id") or run_id)
        run = self.guard.start_run(rid)
        where = self._where(metadata)
        self._tools[run_id] = (rid, cid, where)
        if run.view.call(cid) is not None:
            return  # decided and enforced already, by the guarded tool node (maybe on edited arguments)
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "<unnamed>")
        d = run.tool_call(name, inputs if inputs is not None else input_str, cid, meta=where)
        self._stop(d, run)

    def on_tool_end(
        self, output: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        where = self._tools.pop(run_id, None)
        if where is None:
            return
        run = self.guard.start_run(where[0])
        if isinstance(output, ToolMessage):
            value, error = observed(output, where[1])
        else:
            value, error = output, None
        d = run.tool_result(where[1], output=value, error=error, meta=where[2])
        self._stop(d, run)

    def on_tool_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        where = self._tools.pop(run_id, None)
        if where is None or isinstance(error, GraphBubbleUp | HeadwayError):
            return  # an interrupt is a pause, not a failure; headway's own stop is not the tool's error
        run = self.guard.start_run(where[0])
        run.tool_result(where[1], error=f"{type(error).__name__}: {error}", meta=where[2])
