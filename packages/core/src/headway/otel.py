"""OpenTelemetry export: runs, tool calls, model turns, decisions and findings as spans on the GenAI
semantic conventions, live (`OTelStore`, a trace-store wrapper) or from recorded traces (`export_runs`).

    guard = Guard(policy, store=OTelStore(SQLiteStore(path)), escalations=SQLiteEscalations(path))
    export_runs(".headway/traces.db", tracer_provider)

One run is an `invoke_agent` span (`gen_ai.conversation.id` = the run id); under it, one `chat` span per
model turn and one `execute_tool` span per decision on a tool call (a blocked call's span ends at once,
with status ERROR; an allowed one ends with its result; a person's decision on an escalated call opens a
new span, linked to the escalated one). `headway.decision.*` attributes say what headway decided and
why; span events carry each finding (`headway.finding`), milestone (`headway.milestone`) and person's
decision (`headway.human`). Arguments, results and messages are exported only with
`capture_content=True`, redacted. Both ways use the recorded timestamps, so they export the same spans.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode, Tracer
    from opentelemetry.trace import TracerProvider as _TracerProvider
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f'headway.otel needs OpenTelemetry: pip install "headway[otel]" ({exc})') from exc

from ._redact import Redactor
from ._store import RunInfo, TraceStore, encode_data
from ._types import Event

__all__ = ["MAX_CONTENT_CHARS", "OTelStore", "export_runs"]

_log = logging.getLogger("headway.otel")

# Content attributes (arguments, results, messages) are clipped: a 1 MB tool output has no place in a
# span, and OTLP receivers refuse large requests.
MAX_CONTENT_CHARS = 16_000
_MAX_STATUS_CHARS = 1_000
_SWEEP_EVERY = 60.0

_Attrs = dict[str, AttributeValue]


def _ns(ts: float) -> int:
    return int(ts * 1_000_000_000)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…[truncated {len(text) - limit} chars]"


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A call's span that ended waiting for a person: what the span of their decision needs from it."""

    context: SpanContext
    tool: str
    escalation_id: str | None
    arguments: str | None  # as exported (content capture on), for a decision that does not change them


@dataclass(slots=True, eq=False)
class _RunSpans:
    """The open spans of one run: all the state kept, and only while the run is open."""

    run_id: str
    span: Span
    context: Context
    recording: bool
    last_ns: int
    last_wall: float
    tools: dict[str, Span] = field(default_factory=dict)
    # The latest span of each call that waits for a person, so the span of their decision can link to it.
    waiting: dict[str, _Waiting] = field(default_factory=dict)
    milestones: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


class _Spans:
    """Turns a stream of recorded events into spans. Shared by the live store and the offline export."""

    def __init__(
        self,
        tracer: Tracer,
        *,
        capture_content: bool,
        redactor: Redactor | None,
        parent: Context | None,
    ) -> None:
        self.tracer = tracer
        self.capture = capture_content
        self.redactor = redactor if redactor is not None else Redactor()
        # None: a live run span joins whatever span is current (the request that runs the agent, say);
        # an empty Context: every run is a trace of its own (offline export).
        self.parent = parent
        self.runs: dict[str, _RunSpans] = {}
        self.lock = threading.Lock()
        self.opened = 0

    # ---- the stream --------------------------------------------------------------------------------

    def handle(self, e: Event) -> None:
        if e.type == "span":
            return  # a framework's own span, kept beside the run: it has its own exporter
        data = _mapping(e.data)
        ns = _ns(e.ts)
        with self.lock:
            run = self.runs.get(e.run_id)
            if run is None or e.type == "start":
                stale = run
                run = self.runs[e.run_id] = self._open(e, data, ns)
            else:
                stale = None
        if stale is not None:  # a start on an open run: its previous life was never ended
            self._close(stale)
        with run.lock:
            if run.closed:
                return
            if run.recording and e.type != "start":
                self._apply(run, e, data, ns)
            run.last_ns, run.last_wall = max(run.last_ns, ns), time.time()
            if e.type != "end":
                return
            run.closed = True
        with self.lock:
            if self.runs.get(e.run_id) is run:
                del self.runs[e.run_id]

    def close_runs(self, idle_for: float | None = None) -> None:
        """End the spans of open runs (only those idle for `idle_for` seconds, if given) at their last event."""
        now = time.time()
        with self.lock:
            gone = [r for r in self.runs.values() if idle_for is None or now - r.last_wall > idle_for]
            for r in gone:
                del self.runs[r.run_id]
        for r in gone:
            self._close(r)

    # ---- spans -------------------------------------------------------------------------------------

    def _open(self, e: Event, data: Mapping[str, Any], ns: int) -> _RunSpans:
        policy = _mapping(data.get("policy"))
        meta = _mapping(data.get("metadata"))
        agent = meta.get("agent_name") or meta.get("agent") or policy.get("name")
        attrs: _Attrs = {"gen_ai.operation.name": "invoke_agent", "gen_ai.conversation.id": e.run_id}
        if agent:
            attrs["gen_ai.agent.name"] = str(agent)
        if policy.get("name"):
            attrs["headway.policy.name"] = str(policy["name"])
        if policy.get("fingerprint"):
            attrs["headway.policy.fingerprint"] = str(policy["fingerprint"])
        if e.type != "start":
            attrs["headway.run.resumed"] = True  # restored from the store: an earlier span has the start
        name = f"invoke_agent {agent}" if agent else "invoke_agent"
        span = self.tracer.start_span(name, self.parent, SpanKind.INTERNAL, attrs, start_time=ns)
        self.opened += 1
        return _RunSpans(
            e.run_id, span, trace.set_span_in_context(span), span.is_recording(), ns, time.time()
        )

    def _close(self, run: _RunSpans) -> None:
        """End a run that had no `end` event: its spans end at its last event, marked incomplete."""
        with run.lock:
            if run.closed:
                return
            run.closed = True
            for span in run.tools.values():
                span.set_attribute("headway.incomplete", True)
                span.end(run.last_ns)
            run.tools.clear()
            if run.milestones:
                run.span.set_attribute("headway.milestones", list(run.milestones))
            run.span.set_attribute("headway.incomplete", True)
            run.span.end(run.last_ns)

    def _apply(self, run: _RunSpans, e: Event, data: Mapping[str, Any], ns: int) -> None:
        if e.type == "tool_call" or e.type == "human":
            self._decided(run, e.type, data, ns)
        elif e.type == "tool_result":
            self._result(run, data, ns)
        elif e.type == "model":
            self._model(run, data, ns)
        elif e.type == "user":
            attrs: _Attrs = {}
            if self.capture:
                attrs["headway.user.text"] = self._text(data.get("text"))
            run.span.add_event("headway.user", attrs, ns)
        elif e.type == "end":
            self._end(run, data, ns)

    def _decided(self, run: _RunSpans, kind: str, data: Mapping[str, Any], ns: int) -> None:
        """A decision on a call, proposed (tool_call) or by a person (human): one execute_tool span."""
        d = _mapping(data.get("decision"))
        cid = str(data.get("call_id") or "")
        prior = run.waiting.pop(cid, None)
        tool = str(data.get("tool") or d.get("tool") or (prior.tool if prior else "") or "<unknown>")
        attrs = self._tool_attrs(run, tool, cid)
        attrs.update(_decision_attrs(d))
        if kind == "human" and "headway.escalation.id" not in attrs and prior and prior.escalation_id:
            attrs["headway.escalation.id"] = prior.escalation_id  # the escalation this decision resolves
        arguments = None
        if self.capture:
            arguments = self._json(data["args"]) if "args" in data else prior.arguments if prior else None
            if arguments is not None:
                attrs["gen_ai.tool.call.arguments"] = arguments
        links = (
            [Link(prior.context, {"headway.link": "escalated_call"})] if kind == "human" and prior else None
        )
        span = self.tracer.start_span(
            f"execute_tool {tool}", run.context, SpanKind.INTERNAL, attrs, links, start_time=ns
        )
        if kind == "human":
            human: _Attrs = {
                "headway.human.by": str(data.get("by") or ""),
                "headway.human.action": str(data.get("action") or ""),
            }
            if self.capture:
                for key in ("message", "text"):
                    if data.get(key):
                        human[f"headway.human.{key}"] = self._text(data[key])
            span.add_event("headway.human", human, ns)
        self._findings(span, d, ns)
        self._status(run, span, d)
        old = run.tools.pop(cid, None)
        if old is not None:  # decided again while its span was open: that span will get no result
            old.set_attribute("headway.incomplete", True)
            old.end(ns)
        action = d.get("action")
        if action == "allow":
            run.tools[cid] = span  # ends with the result
            return
        if action in ("escalate", "clarify"):
            run.waiting[cid] = _Waiting(
                span.get_span_context(), tool, _opt(d.get("escalation_id")), arguments
            )
        span.end(ns)

    def _result(self, run: _RunSpans, data: Mapping[str, Any], ns: int) -> None:
        d = _mapping(data.get("decision"))
        cid = str(data.get("call_id") or "")
        tool = str(data.get("tool") or "<unknown>")
        span = run.tools.pop(cid, None)
        if span is None:  # a result for a call with no open span (not allowed, or decided elsewhere)
            attrs = self._tool_attrs(run, tool, cid)
            span = self.tracer.start_span(
                f"execute_tool {tool}", run.context, SpanKind.INTERNAL, attrs, start_time=ns
            )
        if d.get("action", "allow") != "allow" or d.get("findings"):
            span.set_attributes(_decision_attrs(d))  # the result's decision says more than the call's
            self._findings(span, d, ns)
        error = data.get("error")
        if self.capture:
            result = error if error else data.get("output")
            span.set_attribute("gen_ai.tool.call.result", self._json(result))
        milestones = data.get("milestones")
        for m in milestones if isinstance(milestones, list | tuple) else ():
            span.add_event("headway.milestone", {"headway.milestone.name": str(m)}, ns)
            run.milestones.append(str(m))
        if error and d.get("action") not in ("block", "stop"):
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR, _clip(str(error), _MAX_STATUS_CHARS)))
        else:
            self._status(run, span, d)
        span.end(ns)

    def _model(self, run: _RunSpans, data: Mapping[str, Any], ns: int) -> None:
        d = _mapping(data.get("decision"))
        calls = [c for c in data.get("tool_calls") or () if isinstance(c, Mapping)]
        finish = "tool_call" if calls else "stop"
        attrs: _Attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.conversation.id": run.run_id,
            "gen_ai.response.finish_reasons": [finish],
        }
        tokens = data.get("tokens")
        if isinstance(tokens, int) and tokens > 0:
            attrs["headway.model.tokens"] = tokens
        attrs.update(_decision_attrs(d))
        if self.capture:
            parts: list[dict[str, Any]] = []
            if data.get("text"):
                parts.append({"type": "text", "content": data["text"]})
            for c in calls:
                parts.append(
                    {
                        "type": "tool_call",
                        "id": c.get("id"),
                        "name": c.get("name") or c.get("tool"),
                        "arguments": c.get("args", c.get("arguments")),
                    }
                )
            attrs["gen_ai.output.messages"] = self._json(
                [{"role": "assistant", "parts": parts, "finish_reason": finish}]
            )
        # A turn is recorded when the model has answered: its span covers the time since the run's
        # previous event, which is how long the model took as far as the run can tell.
        start = min(run.last_ns, ns)
        span = self.tracer.start_span("chat", run.context, SpanKind.INTERNAL, attrs, start_time=start)
        self._findings(span, d, ns)
        self._status(run, span, d)
        span.end(ns)

    def _end(self, run: _RunSpans, data: Mapping[str, Any], ns: int) -> None:
        d = _mapping(data.get("decision"))
        for span in run.tools.values():  # allowed calls whose result never came
            span.set_attribute("headway.incomplete", True)
            span.end(ns)
        run.tools.clear()
        run.span.set_attributes(_decision_attrs(d))
        if self.capture and data.get("final_answer"):
            message = {"type": "text", "content": data["final_answer"]}
            run.span.set_attribute(
                "gen_ai.output.messages",
                self._json([{"role": "assistant", "parts": [message], "finish_reason": "stop"}]),
            )
        if run.milestones:
            run.span.set_attribute("headway.milestones", list(run.milestones))
        self._findings(run.span, d, ns)
        self._status(run, run.span, d)
        run.span.end(ns)

    # ---- parts -------------------------------------------------------------------------------------

    def _tool_attrs(self, run: _RunSpans, tool: str, call_id: str) -> _Attrs:
        return {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.conversation.id": run.run_id,
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            "gen_ai.tool.type": "function",
        }

    def _findings(self, span: Span, d: Mapping[str, Any], ns: int) -> None:
        for f in d.get("findings") or ():
            if not isinstance(f, Mapping):
                continue
            attrs: _Attrs = {
                "headway.finding.check": str(f.get("check", "")),
                "headway.finding.kind": str(f.get("kind", "")),
                "headway.finding.severity": str(f.get("severity", "")),
                "headway.finding.message": str(f.get("message", "")),
            }
            if f.get("decision"):
                attrs["headway.finding.decision"] = str(f["decision"])
            span.add_event("headway.finding", attrs, ns)

    def _status(self, run: _RunSpans, span: Span, d: Mapping[str, Any]) -> None:
        """block and stop are errors (a call refused, a run ended); escalate and clarify are waits."""
        action = d.get("action")
        if action not in ("block", "stop"):
            return
        reason = _clip(str(d.get("reason") or action), _MAX_STATUS_CHARS)
        span.set_attribute("error.type", f"headway.{action}")
        span.set_status(Status(StatusCode.ERROR, reason))
        if action == "stop" and span is not run.span:
            run.span.set_attribute("error.type", "headway.stop")
            run.span.set_status(Status(StatusCode.ERROR, reason))

    def _json(self, value: Any) -> str:
        return _clip(encode_data(self.redactor.apply(value), MAX_CONTENT_CHARS), MAX_CONTENT_CHARS)

    def _text(self, value: Any) -> str:
        return _clip(value if isinstance(value, str) else encode_data(value), MAX_CONTENT_CHARS)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _decision_attrs(d: Mapping[str, Any]) -> _Attrs:
    if not d:
        return {}
    attrs: _Attrs = {
        "headway.decision.action": str(d.get("action", "")),
        "headway.decision.stage": str(d.get("stage", "call")),
    }
    risk = d.get("risk")
    if isinstance(risk, int | float) and not isinstance(risk, bool):
        attrs["headway.decision.risk"] = float(risk)
    if d.get("reason"):
        attrs["headway.decision.reason"] = str(d["reason"])
    if d.get("question"):
        attrs["headway.decision.question"] = str(d["question"])
    if d.get("escalation_id"):
        attrs["headway.escalation.id"] = str(d["escalation_id"])
    kinds = [str(f["kind"]) for f in d.get("findings") or () if isinstance(f, Mapping) and f.get("kind")]
    if kinds:
        attrs["headway.decision.kinds"] = list(dict.fromkeys(kinds))
    return attrs


def _tracer(provider: _TracerProvider | None) -> Tracer:
    from . import __version__

    return trace.get_tracer("headway", __version__, tracer_provider=provider)


# ---- live --------------------------------------------------------------------------------------------


class OTelStore:
    """A TraceStore that records into `inner` and exports each run as OpenTelemetry spans as it goes.

    `tracer_provider`: where spans go (default: the global one; with none configured the spans are
    no-ops and a run costs a dictionary entry). `capture_content`: also export arguments, results and
    messages, passed through `redactor` (default: headway's secret-looking field names; give it the
    policy's, `policy.redactor`, to hide the same fields). `idle_timeout`: a run with no event for that
    long is ended as incomplete (a run that paused and resumes later, or in another process, gets a new
    run span with `headway.run.resumed`). Export never raises into the agent: failures are logged;
    errors of `inner` propagate as they would without the wrapper, so a write that cannot be recorded
    is still refused.

    The Guard keeps escalations beside a SQLiteStore it is given directly, not behind a wrapper: pass
    `escalations=SQLiteEscalations(path)` (`headway.escalations`) to keep them in the same file.
    """

    def __init__(
        self,
        inner: TraceStore,
        tracer_provider: _TracerProvider | None = None,
        *,
        capture_content: bool = False,
        redactor: Redactor | None = None,
        idle_timeout: float = 3600.0,
    ) -> None:
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0, got {idle_timeout!r}")
        self.inner = inner
        self.idle_timeout = idle_timeout
        self._spans = _Spans(
            _tracer(tracer_provider), capture_content=capture_content, redactor=redactor, parent=None
        )
        self._next_sweep = time.monotonic() + _SWEEP_EVERY
        self._failures = 0

    def append(self, event: Event, *, durable: bool = False) -> None:
        self.inner.append(event, durable=durable)
        try:
            self._spans.handle(event)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + _SWEEP_EVERY
                self._spans.close_runs(self.idle_timeout)
        except Exception:
            self._failed("export %s event %s of run %s", event.type, event.seq, event.run_id)

    def flush(self) -> None:
        """Flush `inner` and end the spans of runs idle for `idle_timeout`.

        Runs still in progress keep their spans open: Guard.flush is called mid-run (to read the trace
        back, say), and ending them there would cut one run into several traces.
        """
        self.inner.flush()
        try:
            self._spans.close_runs(self.idle_timeout)
        except Exception:
            self._failed("end idle runs")

    def close(self) -> None:
        """End every open span (marked `headway.incomplete`) at its run's last event, then close `inner`."""
        try:
            self._spans.close_runs()
        except Exception:
            self._failed("end open runs")
        finally:
            self.inner.close()

    def events(self, run_id: str) -> list[Event]:
        return self.inner.events(run_id)

    def iter_events(self, run_ids: Iterable[str] | None = None) -> Iterator[Event]:
        return self.inner.iter_events(run_ids)

    def runs(self) -> list[RunInfo]:
        return self.inner.runs()

    def _failed(self, what: str, *args: object) -> None:
        # The first failure with its traceback; the rest quietly, or a broken exporter floods the log.
        self._failures += 1
        if self._failures == 1:
            _log.exception("headway: could not " + what + " (further failures are logged at DEBUG)", *args)
        else:
            _log.debug("headway: could not " + what, *args, exc_info=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OTelStore({self.inner!r})"


# ---- offline -----------------------------------------------------------------------------------------


def export_runs(
    source: TraceStore | str | os.PathLike[str],
    tracer_provider: _TracerProvider,
    *,
    run_ids: Iterable[str] | None = None,
    capture_content: bool = False,
    redactor: Redactor | None = None,
) -> int:
    """Export recorded runs (a store, a `.db` or a `.jsonl` file) as spans, with their recorded times.

    Each run is a trace of its own; a run that never ended is ended at its last event, marked
    `headway.incomplete`. The provider is flushed at the end. Returns the number of run spans exported.
    """
    from .traces import read_events

    spans = _Spans(
        _tracer(tracer_provider), capture_content=capture_content, redactor=redactor, parent=Context()
    )
    events: Iterable[Event]
    if run_ids is not None and not isinstance(source, str | os.PathLike):
        events = source.iter_events(run_ids)
    else:
        events = read_events(source)
        if run_ids is not None:
            wanted = frozenset(run_ids)
            events = (e for e in events if e.run_id in wanted)
    for e in events:
        spans.handle(e)
    spans.close_runs()
    flush = getattr(tracer_provider, "force_flush", None)
    if callable(flush):
        flush()
    return spans.opened
