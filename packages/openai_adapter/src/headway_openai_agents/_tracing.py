"""A TracingProcessor that writes the SDK's traces and spans into headway's trace store.

Spans are observation only (the SDK swallows processor errors, so enforcement stays in guardrails and
hooks). They are recorded under their own run id, `sdk-trace:<trace id>`, as `span` events; the
trace's `group_id` or `metadata["headway_run_id"]` links them to the headway run.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, cast

from agents.tracing import Span, Trace, TracingProcessor, add_trace_processor, set_trace_processors

from headway import Event, Guard
from headway.traces import TraceStore

from ._runs import RUN_ID_KEY

SPAN_EVENT = "span"
TRACE_PREFIX = "sdk-trace:"


class HeadwayTracingProcessor(TracingProcessor):
    """Records every finished span (and each trace's start and end) into a headway trace store.

    Install it with `install_tracing(guard)`, which also removes the OpenAI exporter unless asked to
    keep it. Note that `OPENAI_AGENTS_DISABLE_TRACING=1` turns off every processor, this one included,
    unless the application calls `agents.set_tracing_disabled(False)`.
    """

    def __init__(self, target: Guard | TraceStore) -> None:
        self.store: TraceStore = target.store if isinstance(target, Guard) else target
        # Event seqs must be unique per run id; microseconds since the epoch keep them unique and
        # ordered even when a trace is resumed in another process.
        self._seq = itertools.count(time.time_ns() // 1000)
        self._lock = threading.Lock()

    def _write(self, trace_id: str | None, data: dict[str, Any]) -> None:
        with self._lock:
            seq = next(self._seq)
        run_id = TRACE_PREFIX + (trace_id or "unknown")
        self.store.append(Event(run_id, seq, time.time(), cast(Any, SPAN_EVENT), data))

    def on_trace_start(self, trace: Trace) -> None:
        self._write(trace.trace_id, {"kind": "trace_start", **_trace_info(trace)})

    def on_trace_end(self, trace: Trace) -> None:
        self._write(trace.trace_id, {"kind": "trace_end", **_trace_info(trace)})

    def on_span_start(self, span: Span[Any]) -> None:
        pass  # a span is written once, complete, when it ends

    def on_span_end(self, span: Span[Any]) -> None:
        exported = span.export() or {}
        self._write(span.trace_id, {"kind": "span", **exported})

    def shutdown(self) -> None:
        self.store.flush()

    def force_flush(self) -> None:
        self.store.flush()


def _trace_info(trace: Trace) -> dict[str, Any]:
    info = trace.export() or {"id": trace.trace_id, "workflow_name": trace.name}
    metadata = info.get("metadata") or {}
    linked = metadata.get(RUN_ID_KEY) if isinstance(metadata, dict) else None
    info["headway_run_id"] = linked or info.get("group_id")
    return info


def install_tracing(
    target: Guard | TraceStore, *, keep_openai_export: bool = False
) -> HeadwayTracingProcessor:
    """Send the SDK's traces to headway's trace store (process-wide, like the SDK's own setting).

    By default this replaces the SDK's processors, so nothing is sent to OpenAI; with
    `keep_openai_export=True` headway's processor is added beside the default exporter.
    """
    processor = HeadwayTracingProcessor(target)
    if keep_openai_export:
        add_trace_processor(processor)
    else:
        set_trace_processors([processor])
    return processor
