"""The two overhead benchmarks, a few invokes each: they run, the guarded arm decides as it should, and
the floor arm carries the hooks it claims to (doing nothing). No timing is asserted: figures on a shared
machine are not a test."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agents import FunctionTool

from bench import langgraph_overhead, openai_overhead
from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk


@pytest.mark.parametrize("checkpointer", langgraph_overhead.CHECKPOINTERS)
def test_langgraph_overhead_runs(checkpointer: str) -> None:
    r = langgraph_overhead.measure(3, checkpointer=checkpointer)
    assert r["events"] == 9  # user, 3 model turns, 2 calls, 2 results, and the run's start
    assert r["ratio"] > 0
    assert r["floor"] > 0


def test_langgraph_overhead_names_a_bad_checkpointer() -> None:
    with pytest.raises(ValueError, match="SqliteSaver"):
        langgraph_overhead.measure(3, checkpointer="postgres")


def test_openai_overhead_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert asyncio.run(openai_overhead.main(3)) > 0
    assert "floor" in capsys.readouterr().out


def test_openai_floor_has_the_hook_points_and_leaves_the_agent_alone(tmp_path: Path) -> None:
    desk = SupportDesk(tmp_path / "desk.db")
    agent = build_agents(desk)
    floor = openai_overhead._floor(agent)
    tools = [t for t in floor.tools if isinstance(t, FunctionTool)]
    assert tools
    assert all(
        t.needs_approval is openai_overhead._never
        and t.tool_input_guardrails == [openai_overhead._pass_input]
        and t.tool_output_guardrails == [openai_overhead._pass_output]
        for t in tools
    )
    assert floor.hooks is not None
    assert all(not t.tool_input_guardrails for t in agent.tools if isinstance(t, FunctionTool))
    desk.close()
