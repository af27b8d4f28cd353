"""The tracing processor writes the SDK's spans into headway's trace store, and nothing to OpenAI."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agents import RunConfig, Runner, set_trace_processors, set_tracing_disabled
from agents.tracing import get_trace_provider

from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from headway import Guard
from headway_openai_agents import RUN_ID_KEY, HeadwayTracingProcessor, guard_agent, install_tracing

from .conftest import ALICE, call, handoff, text


def _processors() -> Any:
    # Private: the SDK has no public way to list its processors.
    provider: Any = get_trace_provider()
    return provider._multi_processor._processors


@pytest.fixture
def tracing_on() -> Iterator[None]:
    set_tracing_disabled(False)  # overrides OPENAI_AGENTS_DISABLE_TRACING=1 for this test only
    yield
    set_trace_processors([])
    set_tracing_disabled(True)


async def test_spans_go_to_the_trace_store(tracing_on: None, guard: Guard, desk: SupportDesk) -> None:
    processor = install_tracing(guard)
    assert _processors() == (processor,)  # no OpenAI exporter
    from agents.testing import ScriptedModel

    model = ScriptedModel(
        [
            call("find_user", "c1", email="alice@example.com"),
            handoff(),
            call("refund_order", "c2", order_id="A1", amount=40, reason="x"),
            text("ok"),
        ]
    )
    cfg = RunConfig(model=model, group_id="t1", workflow_name="desk")
    await Runner.run(
        guard_agent(build_agents(desk), guard), ALICE, context={RUN_ID_KEY: "t1"}, run_config=cfg
    )
    guard.flush()
    [info] = [r for r in guard.store.runs() if r.run_id.startswith("sdk-trace:")]
    events = guard.store.events(info.run_id)
    kinds = [e.data["kind"] for e in events]
    assert kinds[0] == "trace_start"
    assert kinds[-1] == "trace_end"
    assert events[0].data["headway_run_id"] == "t1"
    assert events[0].data["workflow_name"] == "desk"
    spans = [e.data["span_data"] for e in events if e.data["kind"] == "span"]
    functions = [(s["name"], s.get("output")) for s in spans if s["type"] == "function"]
    assert [name for name, _ in functions] == ["find_user", "refund_order"]  # the blocked call too
    assert any(s["type"] == "handoff" for s in spans)
    # headway's own run is untouched by the span events.
    assert [e.type for e in guard.store.events("t1")][:2] == ["start", "user"]


def test_keep_openai_export_adds_beside_the_default(tracing_on: None, guard: Guard) -> None:
    set_trace_processors([])
    processor = install_tracing(guard, keep_openai_export=True)
    procs = _processors()
    assert procs[-1] is processor
    assert isinstance(processor, HeadwayTracingProcessor)
