"""headway's overhead on the OpenAI Agents SDK: the support-desk agent, bare vs guarded, same process.

`python -m bench.openai_overhead [runs]`: a scripted model (3 model turns, 2 tool calls), the real
Runner; guarded = guard_agent (tool guardrails + needs_approval + agent hooks) with the support-desk
policy and the SQLite trace store, plus ending each headway run. Runs are interleaved and the medians
compared. Prints the ratio; it is a measurement, not a test.

A third agent, the floor, has the same hooks doing nothing: agent hooks, a tool input and output
guardrail on every function tool, and a `needs_approval` function that says no. Its ratio is what the
SDK charges for calling headway's hooks, before headway does any work.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import asyncio
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    AgentHooks,
    FunctionTool,
    RunConfig,
    RunContextWrapper,
    Runner,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrailData,
    ToolOutputGuardrailData,
    tool_input_guardrail,
    tool_output_guardrail,
)
from agents.testing import ScriptedModel, assistant_message, function_call

from bench import build
from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from examples.support_desk.policy import load_policy
from headway import Guard
from headway_openai_agents import RUN_ID_KEY, guard_agent

USER = "Hi, I'm alice@example.com. Where is my order A1?"


def _model() -> ScriptedModel:
    return ScriptedModel(
        [
            [function_call("find_user", {"email": "alice@example.com"}, call_id="c1")],
            [function_call("lookup_order", {"order_id": "A1"}, call_id="c2")],
            [assistant_message("Order A1 (desk lamp) was delivered.")],
        ]
    )


@tool_input_guardrail
def _pass_input(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
    return ToolGuardrailFunctionOutput.allow()


@tool_output_guardrail
def _pass_output(data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
    return ToolGuardrailFunctionOutput.allow()


async def _never(ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
    return False


def _floor(agent: Agent[Any]) -> Agent[Any]:
    """The agent with headway's hook points filled by do-nothing ones (its handoffs are not taken in
    this script, so they are left as they are)."""
    tools: list[Any] = []
    for t in agent.tools:
        if isinstance(t, FunctionTool):
            t = copy.copy(t)
            t.needs_approval = _never
            t.tool_input_guardrails = [_pass_input]
            t.tool_output_guardrails = [_pass_output]
        tools.append(t)
    return agent.clone(tools=tools, hooks=AgentHooks())


async def _bare(agent: Agent[Any], i: int) -> int:
    model = _model()
    t = time.perf_counter_ns()
    await Runner.run(agent, USER, run_config=RunConfig(model=model))
    return time.perf_counter_ns() - t


async def _guarded(agent: Agent[Any], guard: Guard, i: int) -> int:
    model = _model()
    rid = f"bench-{i}"
    t = time.perf_counter_ns()
    result = await Runner.run(agent, USER, context={RUN_ID_KEY: rid}, run_config=RunConfig(model=model))
    guard.end_run(rid, str(result.final_output))
    return time.perf_counter_ns() - t


async def main(runs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, Guard(load_policy(), store=Path(tmp) / "traces.db") as guard:
        desk = SupportDesk(Path(tmp) / "desk.db")
        bare = build_agents(desk)
        floor = _floor(build_agents(desk))
        guarded = guard_agent(build_agents(desk), guard)
        for i in range(50):  # warm-up: imports, caches, SQLite pages
            await _bare(bare, i)
            await _bare(floor, i)
            await _guarded(guarded, guard, -i - 1)
        b: list[int] = []
        f: list[int] = []
        g: list[int] = []
        for i in range(runs):  # interleaved, alternating the order
            if i % 2:
                b.append(await _bare(bare, i))
                f.append(await _bare(floor, i))
                g.append(await _guarded(guarded, guard, i))
            else:
                g.append(await _guarded(guarded, guard, i))
                f.append(await _bare(floor, i))
                b.append(await _bare(bare, i))
        desk.close()
    mb, mf, mg = statistics.median(b), statistics.median(f), statistics.median(g)
    ratio = mg / mb
    print(f"openai-agents run, 3 model turns + 2 tool calls, median of {runs} interleaved runs each")
    print(f"  headway build: {build()}")
    print(f"  bare     {mb / 1e6:7.3f} ms")
    print(f"  floor    {mf / 1e6:7.3f} ms   (+{(mf - mb) / 1e3:.0f} us per run, ratio {mf / mb:.3f})")
    print(f"  guarded  {mg / 1e6:7.3f} ms   (+{(mg - mb) / 1e3:.0f} us per run)")
    print(f"  ratio    {ratio:.3f}   (target <= 1.05)")
    return ratio


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
