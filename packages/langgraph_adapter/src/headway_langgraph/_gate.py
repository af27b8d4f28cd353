"""Per-call enforcement shared by the guarded ToolNode and the create_agent middleware.

A tool call is decided by the core (idempotent per call id, so LangGraph re-running a node on resume
gets the recorded decision), then: `allow` runs the tool at most once, `block` answers the model,
`clarify`/`escalate` pause with `interrupt()` and apply the person's resolution, `stop` raises.
"""

from __future__ import annotations

import asyncio
import json
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeAlias, cast

from langchain_core.messages import AIMessage, ToolMessage
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.types import Command, interrupt

from headway import Decision, Guard, HeadwayError, Run, ToolCall

from ._errors import GraphRunStopped
from ._resume import Resolution, Resume

ToolOutput: TypeAlias = ToolMessage | Command[Any]
Execute: TypeAlias = Callable[[ToolCallRequest], ToolOutput]
AExecute: TypeAlias = Callable[[ToolCallRequest], Awaitable[ToolOutput]]

PERSON = ("clarify", "escalate")
INTERRUPT_TYPE = "headway.pause"


def thread_id(config: Mapping[str, Any] | None) -> str:
    """The headway run id of a LangGraph invocation: its thread id."""
    conf = (config or {}).get("configurable") or {}
    tid = conf.get("thread_id")
    if tid is None or tid == "":
        raise HeadwayError(
            "headway keeps one run per LangGraph thread and found no thread id: invoke the graph with "
            "config={'configurable': {'thread_id': ...}}"
        )
    return str(tid)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    try:
        return json.dumps(content, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(content)


def _tool_message(out: ToolOutput, call_id: str) -> ToolMessage | None:
    if isinstance(out, ToolMessage):
        return out
    update = out.update
    msgs = update.get("messages") if isinstance(update, Mapping) else None
    for m in msgs or ():
        if isinstance(m, ToolMessage) and m.tool_call_id == call_id:
            return m
    return None


def observed(out: ToolOutput, call_id: str) -> tuple[Any, str | None]:
    """(output, error) of a tool's answer as headway records it."""
    msg = _tool_message(out, call_id)
    if msg is None:
        return {"command": repr(out)[:2000]}, None
    if msg.status == "error":
        return None, _text(msg.content)
    return msg.content, None


def result_note(d: Decision) -> str:
    """What the model is told when a result looks wrong."""
    tool = d.tool or "the tool"
    if d.action == "escalate":
        return (
            f"[headway] {tool} ran, but its result needs a person's review: {d.reason}. "
            "Do not tell the user it succeeded."
        )
    return f"[headway] this result of {tool} looks wrong: {d.reason}. Do not rely on it."


def with_verdict(out: ToolOutput, d: Decision, call_id: str) -> ToolOutput:
    """The tool's answer, with headway's warning appended when its result was flagged."""
    if d.action == "allow":
        return out
    msg = _tool_message(out, call_id)
    if msg is None:
        return out
    flagged = msg.model_copy(
        update={"content": f"{_text(msg.content)}\n\n{result_note(d)}", "status": "error"}
    )
    if isinstance(out, ToolMessage):
        return flagged
    update = dict(cast("Mapping[str, Any]", out.update))
    update["messages"] = [flagged if m is msg else m for m in update["messages"]]
    return Command(graph=out.graph, update=update, resume=out.resume, goto=out.goto)


def replayed(call: ToolCall, d: Decision | None) -> ToolMessage:
    """The recorded answer of a call that already ran: returned instead of running it again."""
    if call.error is not None:
        msg = ToolMessage(call.error, tool_call_id=call.call_id, name=call.tool, status="error")
    else:
        msg = ToolMessage(_text(call.output), tool_call_id=call.call_id, name=call.tool)
    out = with_verdict(msg, d, call.call_id) if d is not None else msg
    assert isinstance(out, ToolMessage)
    return out


def blocked(d: Decision, call_id: str, tool: str) -> ToolMessage:
    return ToolMessage(d.for_model(), tool_call_id=call_id, name=tool, status="error")


def still_waiting(d: Decision, call_id: str, tool: str) -> ToolMessage:
    text = (
        f"[headway] {tool} was not run: it still needs a person ({d.question or d.reason}). "
        "Call it again to ask them."
    )
    return ToolMessage(text, tool_call_id=call_id, name=tool, status="error")


def call_payload(call: ToolCall, d: Decision) -> dict[str, Any]:
    """One paused call as plain JSON (interrupt payloads are checkpointed: no custom types)."""
    return {
        "escalation_id": d.escalation_id,  # the store's record: the inbox and the CLI decide it by this id
        "call_id": call.call_id,
        "tool": call.tool,
        "args": dict(call.args),
        "kind": d.action,
        "reason": d.reason,
        "question": d.question,
        "risk": d.risk,
        "findings": [f.to_dict() for f in d.findings],
    }


def pause_payload(run_id: str, calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The interrupt value: the first paused call's fields at the top, every paused call under `calls`."""
    first = calls[0]
    return {
        "type": INTERRUPT_TYPE,
        "run_id": run_id,
        **first,
        "calls": list(calls),
        "resume": "Command(resume={'action': 'approve'|'reject'|'edit'|'answer', 'by': <who>, "
        "'message'?: str, 'args'?: {...}, 'text'?: str})",
    }


class _Attempt:
    """One execution of one tool-node task: its calls decided in order, at most one person round.

    All calls of a task run concurrently (threads, or gathered coroutines), and LangGraph matches resume
    values to `interrupt()` calls by their order inside the task. So one call, the first paused one,
    interrupts for every paused call of the task; its siblings wait for its outcome.
    """

    def __init__(self, key: object, *, shared: bool) -> None:
        self.key = key  # keeps the ExecutionInfo alive, so its id() is not reused while we use it
        # False when the runtime gives no ExecutionInfo: calls cannot be told apart by task, so each
        # call is its own attempt (it would otherwise wait on siblings that never join it)
        self.shared = shared
        self.lock = threading.Lock()
        self.refs = 0
        self.entered: set[str] = set()
        self.decided = False
        self.decisions: dict[str, Decision] = {}
        self.paused: list[str] = []
        # The events siblings wait on are made by the first sibling that waits (under `lock`): most
        # tasks never pause, and a threading.Event costs a Condition on every call's path.
        self.finished = False
        self.outcome: threading.Event | None = None
        self.aoutcome: asyncio.Event | None = None
        self.failure: BaseException | None = None

    def finish(self, failure: BaseException | None = None) -> None:
        with self.lock:
            self.failure = failure
            self.finished = True
            outcome, aoutcome = self.outcome, self.aoutcome
        if outcome is not None:
            outcome.set()
        if aoutcome is not None:
            aoutcome.set()

    def wait(self) -> None:
        """Until the sibling that asks the person has finished."""
        with self.lock:
            if self.finished:
                return
            if self.outcome is None:
                self.outcome = threading.Event()
            outcome = self.outcome
        outcome.wait()

    async def await_(self) -> None:
        with self.lock:
            if self.aoutcome is None:
                self.aoutcome = asyncio.Event()
                if self.finished:
                    self.aoutcome.set()
            aoutcome = self.aoutcome
        await aoutcome.wait()


class _Shared:
    """State every gate over one Guard shares: calls currently executing in this process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inflight: dict[tuple[str, str], _Slot] = {}


class _Slot:
    """The exactly-once slot of one call executing in this process, held by the task that runs it.

    Tasks that find it wait on `future`, made by the first of them: most calls are never waited on,
    and a Future costs a Condition. As a `with` block around the owner's work, a failure settles it.
    (A class rather than @contextmanager: every call passes here, and a generator costs 3x as much.)
    """

    __slots__ = ("future", "key", "shared")

    def __init__(self, shared: _Shared, key: tuple[str, str]) -> None:
        self.shared = shared
        self.key = key
        self.future: Future[ToolOutput] | None = None  # guarded by shared.lock

    def settle(self, outcome: ToolOutput | BaseException) -> None:
        """The owner is done: the slot is freed and the tasks waiting on it get `outcome`."""
        with self.shared.lock:
            self.shared.inflight.pop(self.key, None)
            fut = self.future
        if fut is None:
            return
        if isinstance(outcome, BaseException):
            fut.set_exception(outcome)
        else:
            fut.set_result(outcome)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.settle(exc)


class _ToolFailures:
    """A `with` block around the tool itself: its exception is the call's failed result (an interrupt
    is not: the tool runs again on resume, nothing to record)."""

    __slots__ = ("cid", "run")

    def __init__(self, run: Run, cid: str) -> None:
        self.run = run
        self.cid = cid

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, Exception) and not isinstance(exc, GraphBubbleUp):
            self.run.tool_result(self.cid, error=f"{type(exc).__name__}: {exc}")


# In-flight calls must be visible to every gate built over the same Guard (a graph rebuilt per request,
# or a ToolNode and a middleware side by side); keyed weakly so a dropped Guard takes its entry along.
_SHARED: weakref.WeakKeyDictionary[Guard, _Shared] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()
_MAX_ATTEMPTS = 1024


def _shared(guard: Guard) -> _Shared:
    with _SHARED_LOCK:
        s = _SHARED.get(guard)
        if s is None:
            s = _SHARED[guard] = _Shared()
        return s


class ToolGate:
    """The tool-call wrapper: `gate.wrap(request, execute)` and `await gate.awrap(request, execute)`."""

    def __init__(self, guard: Guard, *, messages_key: str = "messages", raise_on_stop: bool = True) -> None:
        if not isinstance(guard, Guard):
            raise TypeError(f"headway needs a Guard, got {type(guard).__name__}")
        self.guard = guard
        self.messages_key = messages_key
        # False: a stop answers the model with an error message instead (the middleware ends the run
        # itself, from before_model, since a tool wrapper cannot end a create_agent run)
        self.raise_on_stop = raise_on_stop
        self._shared = _shared(guard)
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, int], _Attempt] = {}

    # ---- the two wrappers -------------------------------------------------------------------------

    def wrap(self, request: ToolCallRequest, execute: Execute) -> ToolOutput:
        run = self.guard.start_run(thread_id(request.runtime.config))
        cid, tool = str(request.tool_call["id"]), str(request.tool_call["name"])
        attempt = self._enter(run.run_id, request)
        try:
            d = self._decide(run, attempt, request)
            if d.action in PERSON:
                d = self._person(run, attempt, cid)
            return self._act(run, request, execute, d, cid, tool)
        finally:
            self._leave(run.run_id, attempt)

    async def awrap(self, request: ToolCallRequest, execute: AExecute) -> ToolOutput:
        run = self.guard.start_run(thread_id(request.runtime.config))
        cid, tool = str(request.tool_call["id"]), str(request.tool_call["name"])
        attempt = self._enter(run.run_id, request)
        try:
            d = self._decide(run, attempt, request)
            if d.action in PERSON:
                d = await self._aperson(run, attempt, cid)
            return await self._aact(run, request, execute, d, cid, tool)
        finally:
            self._leave(run.run_id, attempt)

    # ---- deciding ---------------------------------------------------------------------------------

    def _enter(self, run_id: str, request: ToolCallRequest) -> _Attempt:
        info = getattr(request.runtime, "execution_info", None)
        anchor: object = info if info is not None else request
        key = (run_id, id(anchor))
        with self._lock:
            attempt = self._attempts.get(key)
            if attempt is None:
                attempt = self._attempts[key] = _Attempt(anchor, shared=info is not None)
                if len(self._attempts) > _MAX_ATTEMPTS:
                    self._evict()
            attempt.refs += 1
            attempt.entered.add(str(request.tool_call["id"]))
            return attempt

    def _leave(self, run_id: str, attempt: _Attempt) -> None:
        with self._lock:
            attempt.refs -= 1
            # Kept while a sibling has yet to enter: on a loaded machine one call can pause, interrupt
            # and leave before its sibling's thread starts, and the sibling must then find the outcome
            # it waits for, not a fresh attempt in which nobody will ever ask.
            if attempt.refs == 0 and attempt.entered.issuperset(attempt.decisions):
                self._attempts.pop((run_id, id(attempt.key)), None)

    def _evict(self) -> None:
        """Bounds the attempts kept for siblings that never came (a task that failed before running
        all its calls): the oldest idle ones go first."""
        idle = [k for k, a in self._attempts.items() if a.refs == 0]
        for key in idle[: len(self._attempts) - _MAX_ATTEMPTS]:
            del self._attempts[key]

    def _siblings(self, request: ToolCallRequest) -> list[Mapping[str, Any]]:
        """The calls this task runs: every call of the last AI message when the node was reached by an
        edge (ToolNode runs them all in one task); just this call when it was sent on its own (Send)."""
        own: list[Mapping[str, Any]] = [request.tool_call]
        metadata = request.runtime.config.get("metadata") or {}
        path = metadata.get("langgraph_path") or ()
        if not path or path[0] != "__pregel_pull":
            return own
        state = request.state
        if isinstance(state, Mapping):
            messages = state.get(self.messages_key)
        elif isinstance(state, list):
            messages = state
        else:
            messages = getattr(state, self.messages_key, None)
        own_id = request.tool_call["id"]
        for m in reversed(messages or ()):
            if isinstance(m, AIMessage):
                for c in m.tool_calls:
                    if c.get("id") == own_id:
                        return cast("list[Mapping[str, Any]]", list(m.tool_calls))
                break
        return own

    @staticmethod
    def _decide_one(
        run: Run, tool: str, args: Any, cid: str, where: Mapping[str, Any] | None = None
    ) -> Decision:
        prior = run.view.call(cid)
        if prior is not None:
            # Re-delivered (LangGraph re-runs the node on resume): the recorded decision, with the
            # arguments a person may have edited since.
            return run.tool_call(prior.tool, prior.args, cid)
        return run.tool_call(tool, args, cid, meta=where)

    @staticmethod
    def _where(request: ToolCallRequest) -> dict[str, Any]:
        """The node and step of this call, recorded with its decision (as the callback handler does)."""
        config = getattr(request.runtime, "config", None) or {}
        md = config.get("metadata") or {}
        return {k: md[k] for k in ("langgraph_node", "langgraph_step") if k in md}

    def _decide(self, run: Run, attempt: _Attempt, request: ToolCallRequest) -> Decision:
        cid = str(request.tool_call["id"])
        with attempt.lock:
            if not attempt.decided:
                # Decide every call of the task in message order, whichever thread comes first: the
                # decisions do not depend on thread timing, and the paused set is known to all.
                where = self._where(request)
                calls = self._siblings(request) if attempt.shared else [request.tool_call]
                for c in calls:
                    c_id = str(c.get("id"))
                    d = self._decide_one(run, str(c.get("name")), c.get("args"), c_id, where)
                    attempt.decisions[c_id] = d
                    if d.action in PERSON:
                        attempt.paused.append(c_id)
                attempt.decided = True
            known = attempt.decisions.get(cid)
            if known is not None:
                return known
            # not among the siblings (a custom input to the node): decided on its own
            d = attempt.decisions[cid] = self._decide_one(
                run, str(request.tool_call["name"]), request.tool_call.get("args"), cid, self._where(request)
            )
            if d.action in PERSON:
                attempt.paused.append(cid)
            return d

    # ---- pausing for a person ---------------------------------------------------------------------

    def _ask(self, run: Run, attempt: _Attempt) -> None:
        """Interrupt once for every paused call of the task and apply what the person decided."""
        ids = tuple(attempt.paused)
        payload = []
        for c_id in ids:
            call = run.view.call(c_id)
            assert call is not None
            payload.append(call_payload(call, attempt.decisions[c_id]))

        def verify(resolutions: Mapping[str, Resolution]) -> None:
            for c_id, r in resolutions.items():
                reason = run.refusal(c_id, r.action, args=r.args, text=r.text, escalation_id=r.escalation_id)
                if reason is not None:
                    raise ValueError(reason)

        schema = Resume.expecting(ids, verify)
        value = interrupt(pause_payload(run.run_id, payload), response_schema=schema)
        resume = value if isinstance(value, Resume) else schema.model_validate(value)
        for c_id, r in resume.resolutions().items():
            call = run.view.call(c_id)
            if call is None or call.action not in PERSON:
                continue  # already resolved (a replay after a crash): never apply a decision twice
            run.resolve(c_id, r.action, by=r.by, message=r.message, args=r.args, text=r.text)

    def _current(self, run: Run, cid: str) -> Decision:
        call = run.view.call(cid)
        assert call is not None
        return run.tool_call(call.tool, call.args, cid)

    def _person(self, run: Run, attempt: _Attempt, cid: str) -> Decision:
        if attempt.paused and attempt.paused[0] == cid:
            try:
                self._ask(run, attempt)
            except BaseException as e:
                attempt.finish(e)
                raise
            attempt.finish()
        else:
            attempt.wait()
            self._reraise(attempt)
        return self._current(run, cid)

    async def _aperson(self, run: Run, attempt: _Attempt, cid: str) -> Decision:
        if attempt.paused and attempt.paused[0] == cid:
            try:
                self._ask(run, attempt)
            except BaseException as e:
                attempt.finish(e)
                raise
            attempt.finish()
        else:
            await attempt.await_()
            self._reraise(attempt)
        return self._current(run, cid)

    @staticmethod
    def _reraise(attempt: _Attempt) -> None:
        failure = attempt.failure
        if isinstance(failure, GraphInterrupt):
            raise GraphInterrupt(*failure.args)
        if failure is not None:
            raise failure

    # ---- acting on the decision -------------------------------------------------------------------

    def _settled(self, run: Run, d: Decision, cid: str, tool: str) -> ToolMessage | None:
        """The answer for a decision that does not run the tool (None: run it)."""
        if d.action == "allow":
            return None
        if d.action == "stop" and self.raise_on_stop:
            raise GraphRunStopped(d, run.run_id)
        if d.action in ("block", "stop"):
            return blocked(d, cid, tool)
        return still_waiting(d, cid, tool)

    def _claim(
        self, run: Run, cid: str
    ) -> tuple[_Slot | None, Future[ToolOutput] | None, ToolMessage | None]:
        """(slot, running, replay): the exactly-once ledger. The caller holds `slot` and runs the call; or
        a call executing right now (an async sibling left running by an interrupt) is awaited through
        `running`; or a call whose result is recorded is replayed."""
        key = (run.run_id, cid)
        with self._shared.lock:
            slot = self._shared.inflight.get(key)
            if slot is not None:
                if slot.future is None:
                    slot.future = Future()
                return None, slot.future, None
            call = run.view.call(cid)
            if call is not None and call.done:
                return None, None, replayed(call, run.decision(cid))
            slot = self._shared.inflight[key] = _Slot(self._shared, key)
            return slot, None, None

    @staticmethod
    def _held(run: Run, cid: str, tool: str) -> ToolMessage | None:
        """The ledger's word before a call runs (None: run it). Another process may have run it (its
        recorded result is handed back) or left its outcome unknown (a person is asked on the next try)."""
        start = run.begin(cid)
        if start == "run":
            return None
        call, d = run.view.call(cid), run.decision(cid)
        if start == "done" and call is not None:
            return replayed(call, d)
        assert d is not None
        return blocked(d, cid, tool) if d.action in ("block", "stop") else still_waiting(d, cid, tool)

    @staticmethod
    def _request_for(run: Run, request: ToolCallRequest, cid: str) -> ToolCallRequest:
        call = run.view.call(cid)
        if call is not None and call.args != request.tool_call.get("args"):
            return request.override(
                tool_call={**request.tool_call, "args": dict(call.args)}
            )  # an approved edit
        return request

    def _record(self, run: Run, out: ToolOutput, cid: str) -> ToolOutput:
        call = run.view.call(cid)
        recorded = run.decision(cid) if call is not None and call.done else None  # by the callback handler
        if recorded is not None:
            d = recorded
        else:
            output, error = observed(out, cid)
            d = run.tool_result(cid, output=output, error=error)
        if d.action == "stop" and self.raise_on_stop:
            raise GraphRunStopped(d, run.run_id)
        return with_verdict(out, d, cid)

    def _start(
        self, run: Run, d: Decision, cid: str, tool: str
    ) -> tuple[ToolOutput | None, _Slot | None, Future[ToolOutput] | None]:
        """Everything before a call runs: (answer, slot, running). An answer is returned as it is (the
        call does not run here, or already ran); otherwise the caller runs the call when it holds
        `slot`, or waits on `running`, the future of the task that does."""
        settled = self._settled(run, d, cid, tool)
        if settled is not None:
            return settled, None, None
        slot, running, replay = self._claim(run, cid)
        if slot is None:
            return replay, None, running
        with slot:
            held = self._held(run, cid, tool)
        if held is not None:
            slot.settle(held)
            return held, None, None
        return None, slot, None

    def _act(
        self, run: Run, request: ToolCallRequest, execute: Execute, d: Decision, cid: str, tool: str
    ) -> ToolOutput:
        answer, slot, running = self._start(run, d, cid, tool)
        if answer is not None:
            return answer
        if running is not None:
            return running.result()
        assert slot is not None
        with slot:
            with _ToolFailures(run, cid):
                out = execute(self._request_for(run, request, cid))
            out = self._record(run, out, cid)
        slot.settle(out)
        return out

    async def _aact(
        self, run: Run, request: ToolCallRequest, execute: AExecute, d: Decision, cid: str, tool: str
    ) -> ToolOutput:
        answer, slot, running = self._start(run, d, cid, tool)
        if answer is not None:
            return answer
        if running is not None:
            return await asyncio.wrap_future(running)
        assert slot is not None
        with slot:
            with _ToolFailures(run, cid):
                out = await execute(self._request_for(run, request, cid))
            out = self._record(run, out, cid)
        slot.settle(out)
        return out
