"""OpenTelemetry export with the real SDK: the span tree of a guarded run, content capture and redaction,
offline export of a recorded trace, and spans received over OTLP/HTTP by a receiver on 127.0.0.1."""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason='needs OpenTelemetry: pip install "headway[otel]"')
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from headway import Finding, Guard, Milestone, Policy, RunView, Tool, ToolCall, checks
from headway._redact import Redactor
from headway.cli import main
from headway.otel import OTelStore, export_runs
from headway.traces import MemoryStore, SQLiteStore, TraceStore, export_jsonl, read_events


@checks.check(kind="policy_violation", severity="critical", name="never_delete")
def _never_delete(call: ToolCall, view: RunView) -> Finding:
    return Finding(
        "never_delete", "policy_violation", "critical", "accounts are not deleted by agents", {}, "stop"
    )


POLICY = Policy(
    name="support-desk",
    tools=[
        Tool("lookup_order", risk="read"),
        Tool(
            "refund_order",
            risk="irreversible",
            before=[
                checks.requires_prior("lookup_order", same=["order_id"]),
                checks.bounds("amount", max=500),
            ],
            approve_when=lambda call: call.args["amount"] > 100,
        ),
        Tool("delete_account", risk="irreversible", before=[_never_delete]),
    ],
    milestones=[Milestone("order_found", after="lookup_order"), Milestone("resolved", after="refund_order")],
)


@dataclass
class Otel:
    """A tracer provider that keeps finished spans in memory."""

    provider: TracerProvider = field(default_factory=TracerProvider)
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)

    def __post_init__(self) -> None:
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def guarded_run(store: TraceStore, run_id: str = "t-1") -> Guard:
    """A clean read, a blocked write, an escalation a person approves, two milestones and the end."""
    guard = Guard(POLICY, store=store)
    run = guard.start_run(run_id)
    run.user("Please refund order A1, it arrived broken")
    run.model("", [{"name": "lookup_order", "args": {"order_id": "A1"}, "id": "c1"}], tokens=12)
    assert run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1").action == "allow"
    run.tool_result("c1", output={"order_id": "A1", "amount": 250, "status": "delivered"})
    assert run.tool_call("refund_order", {"order_id": "B2", "amount": 40}, call_id="c2").action == "block"
    escalated = run.tool_call("refund_order", {"order_id": "A1", "amount": 250}, call_id="c3")
    assert escalated.action == "escalate"
    assert run.resolve("c3", "approve", by="alice").action == "allow"
    run.tool_result("c3", output={"refunded": 250})
    run.end("I have refunded 250 for order A1")
    return guard


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def named(spans: Sequence[ReadableSpan], name: str, call_id: str | None = None) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.name == name and (call_id is None or attrs(s).get("gen_ai.tool.call.id") == call_id)
    ]


def only(spans: Sequence[ReadableSpan], name: str, call_id: str | None = None) -> ReadableSpan:
    found = named(spans, name, call_id)
    assert len(found) == 1, f"expected one {name!r} ({call_id}), got {[s.name for s in spans]}"
    return found[0]


def events(span: ReadableSpan, name: str) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == name]


def shape(spans: Sequence[ReadableSpan]) -> list[tuple[Any, ...]]:
    """Everything about the spans but their ids: names, parents, times, attributes, events, status."""
    names = {s.context.span_id: s.name for s in spans if s.context is not None}
    rows = []
    for s in spans:
        parent = names[s.parent.span_id] if s.parent is not None else None
        evs = [(e.name, e.timestamp, dict(e.attributes or {})) for e in s.events]
        status = (s.status.status_code, s.status.description)
        rows.append(
            (s.start_time, s.name, parent, s.end_time, sorted(attrs(s).items()), evs, status, len(s.links))
        )
    return sorted(rows, key=lambda r: (r[0], r[1], str(r[4])))


# ---- the live span tree ------------------------------------------------------------------------------


def test_a_guarded_run_becomes_a_span_tree_on_the_genai_conventions() -> None:
    otel = Otel()
    guarded_run(OTelStore(MemoryStore(), otel.provider)).close()
    spans = otel.spans
    assert sorted(s.name for s in spans) == [
        "chat",
        "execute_tool lookup_order",
        "execute_tool refund_order",
        "execute_tool refund_order",
        "execute_tool refund_order",
        "invoke_agent support-desk",
    ]
    root = only(spans, "invoke_agent support-desk")
    assert root.parent is None
    assert all(
        s.parent is not None and s.parent.span_id == root.context.span_id for s in spans if s is not root
    )
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    a = attrs(root)
    assert a["gen_ai.operation.name"] == "invoke_agent"
    assert a["gen_ai.conversation.id"] == "t-1"
    assert a["gen_ai.agent.name"] == "support-desk"
    assert a["headway.decision.action"] == "allow"
    assert a["headway.decision.stage"] == "end"
    assert a["headway.milestones"] == ("order_found", "resolved")
    assert root.status.status_code is StatusCode.UNSET
    assert [e.name for e in root.events] == ["headway.user"]

    chat = attrs(only(spans, "chat"))
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.response.finish_reasons"] == ("tool_call",)
    assert chat["headway.model.tokens"] == 12

    lookup = only(spans, "execute_tool lookup_order")
    la = attrs(lookup)
    assert la["gen_ai.operation.name"] == "execute_tool"
    assert (la["gen_ai.tool.name"], la["gen_ai.tool.call.id"]) == ("lookup_order", "c1")
    assert la["headway.decision.action"] == "allow"
    assert lookup.status.status_code is StatusCode.UNSET
    assert events(lookup, "headway.milestone") == [{"headway.milestone.name": "order_found"}]
    assert lookup.end_time is not None
    assert lookup.start_time is not None
    assert lookup.end_time >= lookup.start_time

    blocked = only(spans, "execute_tool refund_order", "c2")
    ba = attrs(blocked)
    assert ba["headway.decision.action"] == "block"
    assert ba["headway.decision.stage"] == "call"
    assert ba["headway.decision.risk"] == pytest.approx(0.8)
    assert "lookup_order with order_id='B2'" in ba["headway.decision.reason"]
    assert ba["headway.decision.kinds"] == ("unmet_precondition",)
    assert ba["error.type"] == "headway.block"
    assert blocked.status.status_code is StatusCode.ERROR
    assert blocked.status.description == ba["headway.decision.reason"]
    assert blocked.start_time == blocked.end_time  # ended at once: the call never ran
    [finding] = events(blocked, "headway.finding")
    assert finding["headway.finding.check"] == "requires_prior"
    assert finding["headway.finding.kind"] == "unmet_precondition"
    assert finding["headway.finding.severity"] == "high"
    assert "lookup_order" in finding["headway.finding.message"]

    escalated, approved = sorted(
        named(spans, "execute_tool refund_order", "c3"), key=lambda s: s.start_time or 0
    )
    ea = attrs(escalated)
    assert ea["headway.decision.action"] == "escalate"
    assert ea["headway.escalation.id"].startswith("esc_")
    assert escalated.status.status_code is StatusCode.UNSET  # waiting for a person is not an error
    assert escalated.start_time == escalated.end_time
    aa = attrs(approved)
    assert aa["headway.decision.action"] == "allow"
    assert aa["headway.decision.reason"] == "approved by alice"
    assert aa["headway.escalation.id"] == ea["headway.escalation.id"]  # the escalation it resolves
    assert events(approved, "headway.human") == [
        {"headway.human.by": "alice", "headway.human.action": "approve"}
    ]
    assert events(approved, "headway.milestone") == [{"headway.milestone.name": "resolved"}]
    [link] = approved.links
    assert escalated.context is not None
    assert link.context.span_id == escalated.context.span_id


def test_a_stop_is_an_error_on_the_call_and_on_the_run() -> None:
    otel = Otel()
    guard = Guard(POLICY, store=OTelStore(MemoryStore(), otel.provider))
    run = guard.start_run("s-1")
    assert run.tool_call("delete_account", {"user": "u1"}, call_id="d1").action == "stop"
    run.end("")
    spans = otel.spans
    call = only(spans, "execute_tool delete_account")
    assert call.status.status_code is StatusCode.ERROR
    assert call.status.description == "accounts are not deleted by agents"
    assert attrs(call)["error.type"] == "headway.stop"
    assert events(call, "headway.finding")[0]["headway.finding.decision"] == "stop"
    root = only(spans, "invoke_agent support-desk")
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "accounts are not deleted by agents"


def test_a_failed_tool_is_an_error_with_its_message() -> None:
    otel = Otel()
    run = Guard(POLICY, store=OTelStore(MemoryStore(), otel.provider)).start_run("e-1")
    run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")
    run.tool_result("c1", error="order service unavailable")
    run.end("")
    span = only(otel.spans, "execute_tool lookup_order")
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "order service unavailable"
    assert attrs(span)["error.type"] == "tool_error"


# ---- content -----------------------------------------------------------------------------------------

CONTENT_KEYS = ("gen_ai.tool.call.arguments", "gen_ai.tool.call.result", "gen_ai.output.messages")


def _content_run(store: OTelStore) -> None:
    run = Guard(POLICY, store=store).start_run("c-1")
    run.user("Please look up A1")
    run.model("Looking it up", [{"name": "lookup_order", "args": {"order_id": "A1"}, "id": "c1"}])
    args = {"order_id": "A1", "email": "alice@example.com", "api_key": "sk-live-0123456789"}
    run.tool_call("lookup_order", args, call_id="c1")
    run.tool_result("c1", output={"order_id": "A1", "email": "alice@example.com", "status": "delivered"})
    run.end("Your order A1 was delivered")
    store.close()


def test_content_is_not_exported_by_default() -> None:
    otel = Otel()
    _content_run(OTelStore(MemoryStore(), otel.provider))
    for span in otel.spans:
        assert not any(k in attrs(span) for k in CONTENT_KEYS), span.name
        for e in span.events:
            assert "headway.user.text" not in (e.attributes or {})
    text = repr([(attrs(s), [e.attributes for e in s.events]) for s in otel.spans])
    assert "alice@example.com" not in text
    assert "sk-live" not in text


def test_captured_content_is_redacted() -> None:
    otel = Otel()
    _content_run(OTelStore(MemoryStore(), otel.provider, capture_content=True, redactor=Redactor(["email"])))
    spans = otel.spans
    tool = attrs(only(spans, "execute_tool lookup_order"))
    # api_key: the policy's default redaction, before the trace store; email: the exporter's redactor.
    assert tool["gen_ai.tool.call.arguments"] == (
        '{"order_id":"A1","email":"[redacted]","api_key":"[redacted]"}'
    )
    assert tool["gen_ai.tool.call.result"] == '{"order_id":"A1","email":"[redacted]","status":"delivered"}'
    chat = attrs(only(spans, "chat"))["gen_ai.output.messages"]
    assert '"content":"Looking it up"' in chat
    assert '"type":"tool_call","id":"c1","name":"lookup_order"' in chat
    root = only(spans, "invoke_agent support-desk")
    assert "Your order A1 was delivered" in attrs(root)["gen_ai.output.messages"]
    assert events(root, "headway.user") == [{"headway.user.text": "Please look up A1"}]
    text = repr([(attrs(s), [e.attributes for e in s.events]) for s in spans])
    assert "alice@example.com" not in text
    assert "sk-live" not in text


# ---- offline -----------------------------------------------------------------------------------------


def test_offline_export_of_a_recorded_trace_gives_the_live_tree_with_the_recorded_times(
    tmp_path: Path,
) -> None:
    db = tmp_path / "traces.db"
    live = Otel()
    guarded_run(OTelStore(SQLiteStore(db), live.provider)).close()

    offline = Otel()
    assert export_runs(db, offline.provider) == 1
    assert len(offline.spans) == 6
    assert shape(offline.spans) == shape(live.spans)

    recorded = {(e.type, e.data.get("call_id")): e.ts for e in read_events(db)}
    spans = offline.spans
    root = only(spans, "invoke_agent support-desk")
    assert root.start_time == int(recorded["start", None] * 1e9)
    assert root.end_time == int(recorded["end", None] * 1e9)
    blocked = only(spans, "execute_tool refund_order", "c2")
    assert blocked.start_time == int(recorded["tool_call", "c2"] * 1e9)
    lookup = only(spans, "execute_tool lookup_order")
    assert lookup.start_time == int(recorded["tool_call", "c1"] * 1e9)
    assert lookup.end_time == int(recorded["tool_result", "c1"] * 1e9)
    # Each recorded run is a trace of its own, not a child of whatever span is current here.
    assert root.parent is None


def test_offline_export_ends_an_unfinished_run_at_its_last_event(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    store = MemoryStore()
    guarded_run(store, "done")
    run = Guard(POLICY, store=store).start_run("open")
    run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")  # allowed; no result ever came
    export_jsonl(store, path)
    otel = Otel()
    assert export_runs(path, otel.provider, run_ids=["open"]) == 1
    last = max(e.ts for e in read_events(path) if e.run_id == "open")
    root = only(otel.spans, "invoke_agent support-desk")
    assert attrs(root)["gen_ai.conversation.id"] == "open"
    assert attrs(root)["headway.incomplete"] is True
    assert root.end_time == int(last * 1e9)
    assert attrs(only(otel.spans, "execute_tool lookup_order"))["headway.incomplete"] is True


# ---- the live store's own behaviour -------------------------------------------------------------------


def test_close_ends_open_spans_and_idle_runs_are_ended_on_flush() -> None:
    otel = Otel()
    store = OTelStore(MemoryStore(), otel.provider, idle_timeout=0.5)
    run = Guard(POLICY, store=store).start_run("idle")
    run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")
    store.flush()
    assert otel.spans == []  # a run in progress keeps its spans open across a flush
    time.sleep(0.6)
    store.flush()
    assert sorted(s.name for s in otel.spans) == ["execute_tool lookup_order", "invoke_agent support-desk"]
    assert all(attrs(s)["headway.incomplete"] is True for s in otel.spans)

    run.tool_result("c1", output={"order_id": "A1"})  # the run goes on: a new run span, marked resumed
    store.close()
    resumed = [s for s in otel.spans if attrs(s).get("headway.run.resumed")]
    assert [s.name for s in resumed] == ["invoke_agent"]
    assert attrs(resumed[0])["headway.incomplete"] is True


def test_export_failures_never_reach_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider()

    class Exploding(SimpleSpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            raise RuntimeError("exporter is broken")

    provider.add_span_processor(Exploding(InMemorySpanExporter()))
    store = OTelStore(MemoryStore(), provider)
    with caplog.at_level(logging.DEBUG, logger="headway.otel"):
        guard = guarded_run(store)
    assert guard.store.events("t-1")[-1].type == "end"  # every event was recorded all the same
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # once with the traceback, then quietly
    assert "could not export" in errors[0].getMessage()


def test_errors_of_the_inner_store_still_fail_closed() -> None:
    inner = MemoryStore()
    run = Guard(POLICY, store=OTelStore(inner, Otel().provider)).start_run("r")
    run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")
    run.tool_result("c1", output={"order_id": "A1", "amount": 20})
    inner.close()
    d = run.tool_call("refund_order", {"order_id": "A1", "amount": 20}, call_id="c2")
    assert d.action == "block"
    assert "could not record" in d.reason


def test_without_a_configured_provider_nothing_is_kept() -> None:
    store = OTelStore(MemoryStore())  # the global provider: a no-op unless the application set one
    run = Guard(POLICY, store=store).start_run("n")
    run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")
    run.tool_result("c1", output={"order_id": "A1"})
    assert len(store._spans.runs) == 1
    run.end("")
    assert store._spans.runs == {}
    assert [e.type for e in store.events("n")] == ["start", "tool_call", "tool_result", "end"]


# ---- OTLP over HTTP ------------------------------------------------------------------------------------


@dataclass
class Receiver:
    url: str
    requests: list[ExportTraceServiceRequest]

    def spans(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for req in self.requests:
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        values = {
                            kv.key: getattr(kv.value, kv.value.WhichOneof("value") or "")
                            for kv in s.attributes
                        }
                        out.append((s.name, values))
        return out

    def resources(self) -> list[Mapping[str, Any]]:
        return [
            {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            for req in self.requests
            for rs in req.resource_spans
        ]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that decodes each request's protobuf body."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    received: list[ExportTraceServiceRequest] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            received.append(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_spans_reach_an_otlp_http_receiver(receiver: Receiver) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=receiver.url + "/v1/traces")))
    guarded_run(OTelStore(MemoryStore(), provider)).close()
    assert provider.force_flush(10_000)
    provider.shutdown()
    spans = receiver.spans()
    names = sorted(name for name, _ in spans)
    assert names == [
        "chat",
        "execute_tool lookup_order",
        "execute_tool refund_order",
        "execute_tool refund_order",
        "execute_tool refund_order",
        "invoke_agent support-desk",
    ]
    blocked = [a for name, a in spans if a.get("gen_ai.tool.call.id") == "c2"]
    assert blocked[0]["headway.decision.action"] == "block"
    assert blocked[0]["gen_ai.operation.name"] == "execute_tool"


def test_cli_export_otel_sends_a_recorded_trace(
    receiver: Receiver, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "traces.db"
    guarded_run(SQLiteStore(db)).close()
    code = main(["export-otel", "--store", str(db), "--endpoint", receiver.url, "--service-name", "desk"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert out.out.strip() == f"exported 1 run (6 spans) to {receiver.url}/v1/traces"
    assert len(receiver.spans()) == 6
    assert any(a.get("headway.escalation.id", "").startswith("esc_") for _, a in receiver.spans())
    assert {r["service.name"] for r in receiver.resources()} == {"desk"}


def test_cli_export_otel_refuses_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export-otel", "--store", str(tmp_path / "nope.db"), "--endpoint", "http://127.0.0.1:9"])
    assert code == 1
    assert "nope.db" in capsys.readouterr().err


def test_a_guard_over_an_otel_wrapped_sqlite_store_keeps_escalations_in_the_file(tmp_path: Path) -> None:
    from headway.escalations import SQLiteEscalations

    guard = Guard(Policy(tools=[Tool("t", risk="read")]), store=OTelStore(SQLiteStore(tmp_path / "t.db")))
    try:
        assert isinstance(guard.escalations, SQLiteEscalations)
    finally:
        guard.close()
