"""headway's overhead on the OpenAI Agents SDK: the support-desk agent, bare vs guarded, same process.

`python -m bench.openai_overhead [runs]`: a scripted model (3 model turns, 2 tool calls), the real
Runner; guarded = guard_agent (tool guardrails + needs_approval + agent hooks) with the support-desk
policy and the SQLite trace store, plus ending each headway run. Runs are interleaved and the medians
compared. Prints the ratio; it is a measurement, not a test.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agents import Agent, RunConfig, Runner
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
        guarded = guard_agent(build_agents(desk), guard)
        for i in range(50):  # warm-up: imports, caches, SQLite pages
            await _bare(bare, i)
            await _guarded(guarded, guard, -i - 1)
        b: list[int] = []
        g: list[int] = []
        for i in range(runs):
            if i % 2:
                b.append(await _bare(bare, i))
                g.append(await _guarded(guarded, guard, i))
            else:
                g.append(await _guarded(guarded, guard, i))
                b.append(await _bare(bare, i))
        desk.close()
    mb, mg = statistics.median(b), statistics.median(g)
    ratio = mg / mb
    print(f"openai-agents run, 3 model turns + 2 tool calls, median of {runs} interleaved runs each")
    print(f"  headway build: {build()}")
    print(f"  bare     {mb / 1e6:7.3f} ms")
    print(f"  guarded  {mg / 1e6:7.3f} ms   (+{(mg - mb) / 1e3:.0f} us per run)")
    print(f"  ratio    {ratio:.3f}   (target <= 1.05)")
    return ratio


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 500))
