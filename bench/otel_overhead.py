"""OpenTelemetry export's cost: µs per trace-store append, bare store vs `OTelStore` over it, same process.

`python -m bench.otel_overhead [-n RUNS]`: the events of a recorded support-desk-like run (start, user,
model turns, reads, writes, an escalation a person approves, end) are appended again under new run ids
into a MemoryStore, bare; behind OTelStore with no tracer provider configured (the global no-op);
with an SDK provider and no processor (spans built, sent nowhere); and with a BatchSpanProcessor and
an exporter that drops them. Rounds are interleaved and medians compared. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from headway import Event, Guard, Milestone, Policy, Tool, checks
from headway.traces import MemoryStore, TraceStore

try:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from headway.otel import OTelStore
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise SystemExit(f'bench.otel_overhead needs OpenTelemetry: pip install "headway[otel]" ({exc})') from exc


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def recorded_run() -> list[Event]:
    policy = Policy(
        name="bench",
        tools=[
            Tool("lookup_order", risk="read", after=[checks.no_error_payload()]),
            Tool(
                "refund_order",
                risk="irreversible",
                before=[checks.requires_prior("lookup_order", same=["order_id"])],
                approve_when=lambda call: call.args["amount"] > 100,
            ),
        ],
        milestones=[Milestone("found", after="lookup_order"), Milestone("resolved", after="refund_order")],
    )
    store = MemoryStore()
    run = Guard(policy, store=store).start_run("r")
    run.user("Please refund order A1, it arrived broken")
    for i in range(10):
        run.model("", [{"name": "lookup_order", "args": {"order_id": f"A{i}"}, "id": f"l{i}"}], tokens=50)
        run.tool_call("lookup_order", {"order_id": f"A{i}"}, call_id=f"l{i}")
        run.tool_result(f"l{i}", output={"order_id": f"A{i}", "amount": 40 + i, "status": "delivered"})
    run.tool_call("refund_order", {"order_id": "B9", "amount": 40}, call_id="w0")  # blocked
    run.tool_call("refund_order", {"order_id": "A1", "amount": 41}, call_id="w1")
    run.tool_result("w1", output={"order_id": "A1", "amount": 41})
    run.tool_call("refund_order", {"order_id": "A2", "amount": 142}, call_id="w2")  # escalated
    run.resolve("w2", "approve", by="alice")
    run.tool_result("w2", output={"order_id": "A2", "amount": 142})
    run.end("Refunded A1 and A2")
    return store.events("r")


def _sdk(processor: bool) -> TracerProvider:
    provider = TracerProvider()
    if processor:
        provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=1_000_000))
    return provider


def per_append(make: Callable[[], TraceStore], events: list[Event], runs: int, tag: str) -> float:
    """µs per append of `runs` copies of the run's events into one fresh store."""
    copies = [[replace(e, run_id=f"{tag}-{i}") for e in events] for i in range(runs)]
    store = make()
    t = time.perf_counter_ns()
    for copy in copies:
        for e in copy:
            store.append(e)
    elapsed = time.perf_counter_ns() - t
    store.close()
    return elapsed / 1000 / (runs * len(events))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=200, help="runs appended per round")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    events = recorded_run()
    no_processor, batch = _sdk(False), _sdk(True)
    configs: dict[str, Callable[[], TraceStore]] = {
        "MemoryStore (bare)": MemoryStore,
        "OTelStore, no provider configured": lambda: OTelStore(MemoryStore()),
        "OTelStore, SDK provider, no processor": lambda: OTelStore(MemoryStore(), no_processor),
        "OTelStore, SDK + BatchSpanProcessor": lambda: OTelStore(MemoryStore(), batch),
    }
    samples: dict[str, list[float]] = {name: [] for name in configs}
    for r in range(a.rounds + 1):
        for i, (name, make) in enumerate(configs.items()):
            us = per_append(make, events, a.n, f"{r}-{i}")
            if r:  # round 0 warms caches and the interpreter
                samples[name].append(us)
    batch.shutdown()
    bare = statistics.median(samples["MemoryStore (bare)"])
    width = max(len(n) for n in configs)
    print(f"{len(events)} events per run, {a.n} runs per round, median of {a.rounds} rounds")
    print(f"{'store'.ljust(width)}  µs/append  ratio")
    for name, xs in samples.items():
        med = statistics.median(xs)
        print(f"{name.ljust(width)}  {med:9.2f}  {med / bare:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
