"""headway beside what the frameworks and invariant-ai already offer, in one process, on the same work.

`python -m bench.peers` (invariant-ai comes with the `bench` dependency group: `make bench-external`).

1. LangChain `create_agent`, scripted model (3 turns, 2 tool calls): bare, with LangChain's own
   `ToolCallLimitMiddleware` and `HumanInTheLoopMiddleware`, and with headway's `HeadwayMiddleware`.
2. OpenAI Agents SDK, scripted model (the same work): bare, with a trivial `tool_input_guardrail` on every
   tool, and `guard_agent`.
3. Trajectory rules (no refund before a lookup of that order; an identical call at most 3 times) in
   invariant-ai's rule engine (local, offline) and as headway checks: time per checked call on traces of
   10, 100 and 1000 calls, and what each catches on a few faulty traces.

Ratios, not absolute times: the machine is shared and noisy. Writes `bench/peers_results.md`.
"""

from __future__ import annotations

import os

# invariant-ai evaluates remotely unless LOCAL_POLICY=1 (read at import), and stops a rule after 100
# evaluation steps unless told otherwise: a 200-call trace already exceeds that.
os.environ.setdefault("LOCAL_POLICY", "1")
os.environ.setdefault("INVARIANT_MAX_ITERATIONS", "1000000000")
os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import argparse
import asyncio
import copy
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents import (
    Agent,
    FunctionTool,
    RunConfig,
    Runner,
    ToolGuardrailFunctionOutput,
    ToolInputGuardrailData,
    tool_input_guardrail,
)
from agents.testing import ScriptedModel, assistant_message, function_call
from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    AgentState,
    HumanInTheLoopMiddleware,
    ModelRequest,
    ModelResponse,
    ToolCallLimitMiddleware,
    hook_config,
)
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.prebuilt.tool_node import ToolCallRequest
from langgraph.runtime import Runtime
from langgraph.types import Command

from examples.langgraph_support_desk.agent import desk_tools
from examples.langgraph_support_desk.scripted import ScriptedChatModel, turn
from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from examples.support_desk.policy import load_policy
from headway import Guard, Policy, Tool, checks
from headway_langgraph import HeadwayMiddleware
from headway_openai_agents import RUN_ID_KEY, guard_agent

RESULTS = Path(__file__).with_name("peers_results.md")
USER = "Hi, I'm alice@example.com. Where is my order A1?"
TURNS = 3  # model turns per run: two tool calls and the answer
SCRIPT = [
    turn("", ("find_user", "c1", {"email": "alice@example.com"})),
    turn("", ("lookup_order", "c2", {"order_id": "A1"})),
    turn("Your desk lamp (order A1) was delivered on Monday."),
]


@dataclass(frozen=True)
class Timing:
    name: str
    median_ms: float
    ratio: float  # against the bare agent, same process, interleaved

    @property
    def us_per_turn(self) -> float:
        return 0.0 if self.ratio == 1.0 else (self.ratio - 1.0) * self.median_ms / self.ratio * 1e3 / TURNS


def _interleaved(runners: dict[str, Callable[[int], float]], n: int, warmup: int = 50) -> list[Timing]:
    """Median seconds per run of each runner, interleaved round-robin (the order rotates each round) so
    drift on a shared machine hits all of them alike. The first runner is the bare baseline."""
    names = list(runners)
    for i in range(warmup):
        for name in names:
            runners[name](-i - 1)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(n):
        for k in range(len(names)):
            name = names[(i + k) % len(names)]
            times[name].append(runners[name](i))
    bare = statistics.median(times[names[0]])
    return [Timing(k, statistics.median(v) * 1e3, statistics.median(v) / bare) for k, v in times.items()]


# ---- 1. LangChain create_agent ------------------------------------------------------------------------


class NoOpMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """A control: model hooks as graph nodes (before_model, after_model) and a tool wrapper, doing
    nothing. What create_agent charges for a middleware of this shape, before any checking."""

    @hook_config(can_jump_to=["end"])
    def before_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        return None

    @hook_config(can_jump_to=["end"])
    def after_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        return None

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        return handler(request)


class NoOpWrapMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """A control with HeadwayMiddleware's shape: a model wrapper and a tool wrapper, doing nothing."""

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        return handler(request)

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        return handler(request)


def langchain_overhead(n: int) -> list[Timing]:
    with tempfile.TemporaryDirectory() as tmp:
        desk = SupportDesk(Path(tmp) / "desk.db")
        guard = Guard(load_policy(), store=Path(tmp) / "traces.db")
        tools = desk_tools(desk)

        def agent(*middleware: AgentMiddleware[Any, Any, Any]) -> Any:
            return create_agent(ScriptedChatModel(script=SCRIPT), tools, middleware=list(middleware))

        # The peers configured as a user would for this desk: a cap on tool calls, and a person's approval
        # before a refund (not called on this read-only path: the cost of looking is what is measured).
        variants = {
            "bare create_agent": agent(),
            "ToolCallLimitMiddleware(run_limit=20)": agent(ToolCallLimitMiddleware(run_limit=20)),
            "HumanInTheLoopMiddleware(refund_order)": agent(
                HumanInTheLoopMiddleware(interrupt_on={"refund_order": True})
            ),
            "no-op middleware: before_model, after_model, wrap_tool_call (control)": agent(NoOpMiddleware()),
            "no-op middleware: wrap_model_call, wrap_tool_call (control, headway's shape)": agent(
                NoOpWrapMiddleware()
            ),
            "HeadwayMiddleware (support-desk policy, SQLite traces)": agent(HeadwayMiddleware(guard)),
        }

        def runner(name: str, graph: Any) -> Callable[[int], float]:
            def once(i: int) -> float:
                cfg: RunnableConfig = {"configurable": {"thread_id": f"{name}-{i}"}}
                t0 = time.perf_counter()
                graph.invoke({"messages": [HumanMessage(USER)]}, cfg)
                return time.perf_counter() - t0

            return once

        try:
            return _interleaved({k: runner(k, g) for k, g in variants.items()}, n)
        finally:
            guard.close()
            desk.close()


# ---- 2. OpenAI Agents SDK ------------------------------------------------------------------------------


@tool_input_guardrail
def allow_all(data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
    """The SDK's own tool guardrail at its cheapest: look at nothing, allow everything."""
    return ToolGuardrailFunctionOutput.allow()


def _with_plain_guardrails(agent: Agent[Any]) -> Agent[Any]:
    tools: list[Any] = []
    for t in agent.tools:
        if isinstance(t, FunctionTool):
            t = copy.copy(t)
            t.tool_input_guardrails = [allow_all]
        tools.append(t)
    return agent.clone(tools=tools)


def _sdk_model() -> ScriptedModel:
    return ScriptedModel(
        [
            [function_call("find_user", {"email": "alice@example.com"}, call_id="c1")],
            [function_call("lookup_order", {"order_id": "A1"}, call_id="c2")],
            [assistant_message("Order A1 (desk lamp) was delivered.")],
        ]
    )


def agents_sdk_overhead(n: int) -> list[Timing]:
    async def measure() -> list[Timing]:
        with (
            tempfile.TemporaryDirectory() as tmp,
            Guard(load_policy(), store=Path(tmp) / "traces.db") as guard,
        ):
            desk = SupportDesk(Path(tmp) / "desk.db")
            variants: dict[str, Callable[[int], Awaitable[Any]]] = {}

            def plain(agent: Agent[Any]) -> Callable[[int], Awaitable[Any]]:
                return lambda i: Runner.run(agent, USER, run_config=RunConfig(model=_sdk_model()))

            async def guarded(i: int) -> None:
                rid = f"peers-{i}"
                result = await Runner.run(
                    guarded_agent, USER, context={RUN_ID_KEY: rid}, run_config=RunConfig(model=_sdk_model())
                )
                guard.end_run(rid, str(result.final_output))

            guarded_agent = guard_agent(build_agents(desk), guard)
            variants["bare Agent"] = plain(build_agents(desk))
            variants["tool_input_guardrail (allow all) on every tool"] = plain(
                _with_plain_guardrails(build_agents(desk))
            )
            variants["guard_agent (support-desk policy, SQLite traces)"] = guarded
            names = list(variants)
            times: dict[str, list[float]] = {k: [] for k in names}
            for i in range(-50, n):  # the first 50 rounds warm up
                for k in range(len(names)):
                    name = names[(i + k) % len(names)]
                    t0 = time.perf_counter()
                    await variants[name](i)
                    if i >= 0:
                        times[name].append(time.perf_counter() - t0)
            desk.close()
            bare = statistics.median(times[names[0]])
            return [
                Timing(k, statistics.median(v) * 1e3, statistics.median(v) / bare) for k, v in times.items()
            ]

    return asyncio.run(measure())


# ---- 3. trajectory rules: invariant-ai against headway ---------------------------------------------------

MAX_REPEATS = 3
INVARIANT_RULES = f"""
from invariant import count

raise "refund_order before a lookup_order of that order" if:
    (refund: ToolCall)
    refund is tool:refund_order
    not count(min=1):
        (lookup: ToolCall)
        lookup -> refund
        lookup is tool:lookup_order
        lookup.function.arguments.order_id == refund.function.arguments.order_id

raise "the same call more than {MAX_REPEATS} times" if:
    (call: ToolCall)
    count(min={MAX_REPEATS + 1}):
        (other: ToolCall)
        other.function.name == call.function.name
        other.function.arguments == call.function.arguments
"""


def rules_policy() -> Policy:
    """The same two rules as headway checks."""
    return Policy(
        tools=[
            Tool("lookup_order", risk="read"),
            Tool(
                "refund_order",
                risk="irreversible",
                before=[checks.requires_prior("lookup_order", same=["order_id"])],
            ),
        ],
        max_repeats=MAX_REPEATS,
    )


# A trace: (tool, args, output or None for "failed"). The checked call comes last.
Call = tuple[str, dict[str, Any], Any]


def _order(i: int) -> dict[str, Any]:
    return {"order_id": f"A{i}", "status": "delivered", "amount": 40.0}


def long_trace(n: int) -> list[Call]:
    return [("lookup_order", {"order_id": f"A{i}"}, _order(i)) for i in range(n)]


FAULTY: dict[str, tuple[list[Call], Call]] = {
    "clean: lookup A1, refund A1": (
        [("lookup_order", {"order_id": "A1"}, _order(1))],
        ("refund_order", {"order_id": "A1", "amount": 40}, None),
    ),
    "refund with no lookup": ([], ("refund_order", {"order_id": "A1", "amount": 40}, None)),
    "refund A2 after looking up A1": (
        [("lookup_order", {"order_id": "A1"}, _order(1))],
        ("refund_order", {"order_id": "A2", "amount": 40}, None),
    ),
    "refund after a lookup that failed": (
        [("lookup_order", {"order_id": "A1"}, {"error": "order service timeout"})],
        ("refund_order", {"order_id": "A1", "amount": 40}, None),
    ),
    "lookup A1 a 4th time": (
        [("lookup_order", {"order_id": "A1"}, _order(1))] * 3,
        ("lookup_order", {"order_id": "A1"}, None),
    ),
    "refund 'a1' after looking up 'A1 ' (same id, other case and spacing)": (
        [("lookup_order", {"order_id": "A1 "}, _order(1))],
        ("refund_order", {"order_id": "a1", "amount": 40}, None),
    ),
}


def _invariant_events(trace: Sequence[Call]) -> list[dict[str, Any]]:
    from invariant.analyzer.traces import assistant, tool, tool_call, user

    events: list[dict[str, Any]] = [user("Please refund my order A1")]
    for i, (name, args, output) in enumerate(trace):
        events.append(assistant(None, tool_call(f"c{i}", name, args)))
        events.append(tool(f"c{i}", str(output)))
    return events


def _invariant_pending(call: Call) -> list[dict[str, Any]]:
    from invariant.analyzer.traces import assistant, tool_call

    return [assistant(None, tool_call("checked", call[0], call[1]))]


def invariant_monitor() -> Any:
    from invariant.analyzer import Monitor

    return Monitor.from_string(INVARIANT_RULES, optimize=True)


def headway_run(guard: Guard, run_id: str, trace: Sequence[Call]) -> Any:
    run = guard.start_run(run_id)
    run.user("Please refund my order A1")
    for i, (name, args, output) in enumerate(trace):
        run.tool_call(name, args, call_id=f"c{i}")
        failed = isinstance(output, dict) and "error" in output
        run.tool_result(f"c{i}", output=None if failed else output, error=output["error"] if failed else None)
    return run


@dataclass(frozen=True)
class RuleTiming:
    calls: int
    headway_us: float
    invariant_us: float | None
    invariant_samples: int

    @property
    def speedup(self) -> float | None:
        return None if self.invariant_us is None else self.invariant_us / self.headway_us


def rule_timings(sizes: Sequence[int], invariant_ok: bool, invariant_max: int) -> list[RuleTiming]:
    out = []
    with Guard(rules_policy(), store=":memory:") as guard:
        for n in sizes:
            trace = long_trace(n)
            run = headway_run(guard, f"flat-{n}", trace)
            hw: list[float] = []
            for k in range(200):
                # A refund of an order the trace looked up: allowed, after scanning for its lookup.
                args = {"order_id": f"A{k % n}", "amount": k + 1}
                t0 = time.perf_counter()
                d = run.tool_call("refund_order", args, call_id=f"r{k}")
                hw.append(time.perf_counter() - t0)
                assert d.action == "allow", d.reason
                run.tool_result(f"r{k}", output={**args, "status": "refunded"})
            inv_us: float | None = None
            samples = 0
            if invariant_ok and n <= invariant_max:
                events = _invariant_events(trace)
                samples = 30 if n <= 10 else 3 if n <= 100 else 1  # invariant-ai takes ~n² per check
                iv: list[float] = []
                for k in range(samples):
                    monitor = invariant_monitor()
                    pending = _invariant_pending(
                        ("refund_order", {"order_id": f"A{k % n}", "amount": 40}, None)
                    )
                    t0 = time.perf_counter()
                    errors = monitor.check(events, pending)
                    iv.append(time.perf_counter() - t0)
                    assert not errors, errors
                inv_us = statistics.median(iv) * 1e6
            out.append(RuleTiming(n, statistics.median(hw) * 1e6, inv_us, samples))
    return out


def rule_catches(invariant_ok: bool) -> list[tuple[str, str, str]]:
    """(trace, headway's decision on the checked call, invariant-ai's verdict) per faulty trace."""
    rows = []
    with Guard(rules_policy(), store=":memory:") as guard:
        for i, (name, (trace, checked)) in enumerate(FAULTY.items()):
            run = headway_run(guard, f"faulty-{i}", trace)
            d = run.tool_call(checked[0], checked[1], call_id="checked")
            hw = d.action if d.action == "allow" else f"{d.action} ({', '.join(f.kind for f in d.findings)})"
            inv = "n/a"
            if invariant_ok:
                errors = invariant_monitor().check(_invariant_events(trace), _invariant_pending(checked))
                inv = "; ".join(str(e.args[0]) if e.args else str(e) for e in errors) or "no violation"
            rows.append((name, hw, inv))
    return rows


def invariant_available() -> tuple[bool, str]:
    """Whether invariant-ai's local engine runs here, and if not, why."""
    try:
        monitor = invariant_monitor()
        monitor.check(_invariant_events([]), _invariant_pending(("refund_order", {"order_id": "A1"}, None)))
    except ImportError as e:
        return False, f"invariant-ai is not installed ({e}); `make bench-external` installs it"
    except Exception as e:
        return False, f"invariant-ai did not run offline: {type(e).__name__}: {e}"
    return True, ""


# ---- report --------------------------------------------------------------------------------------------


def _overhead_table(rows: Sequence[Timing]) -> list[str]:
    out = [
        "| variant | median ms per run | ratio vs bare | µs added per model turn |",
        "| --- | --- | --- | --- |",
    ]
    for r in rows:
        out.append(f"| {r.name} | {r.median_ms:.3f} | {r.ratio:.3f} | {r.us_per_turn:+.0f} |")
    return out


def markdown(
    lc: Sequence[Timing],
    sdk: Sequence[Timing],
    timings: Sequence[RuleTiming],
    catches: Sequence[tuple[str, str, str]],
    invariant_note: str,
    n: int,
) -> str:
    out = [
        "# headway beside its peers",
        "",
        "Same process, same scripted work, interleaved runs, medians; ratios matter, absolute times depend on "
        f"the machine. Regenerate with `make bench-external` (`python -m bench.peers`). {n} runs per variant.",
        "",
        f"## LangChain `create_agent` ({TURNS} model turns, 2 tool calls)",
        "",
        *_overhead_table(lc),
        "",
        f"## OpenAI Agents SDK ({TURNS} model turns, 2 tool calls)",
        "",
        *_overhead_table(sdk),
        "",
        "The peers only count or ask; headway checks each call against the support-desk policy and records "
        "every event in its SQLite trace store. Target: headway's ratio <= 1.05.",
        "",
        "## Trajectory rules: invariant-ai against headway",
        "",
        f"Rules: no `refund_order` before a `lookup_order` of that order; one identical call at most "
        f"{MAX_REPEATS} times. invariant-ai {_version('invariant-ai')} runs locally (`LOCAL_POLICY=1`, "
        "`INVARIANT_MAX_ITERATIONS` raised, `optimize=True`); each check is `Monitor.check(past, [call])`. "
        "headway: `run.tool_call` on a run that already holds the trace.",
        "",
    ]
    if invariant_note:
        out += [f"**invariant-ai: {invariant_note}**", ""]
    out += [
        "| trace length (calls) | headway µs per checked call | invariant-ai µs per checked call | "
        "invariant / headway |",
        "| --- | --- | --- | --- |",
    ]
    for t in timings:
        inv = (
            "not run" if t.invariant_us is None else f"{t.invariant_us:,.0f} ({t.invariant_samples} samples)"
        )
        speed = "n/a" if t.speedup is None else f"{t.speedup:,.0f}x"
        out.append(f"| {t.calls} | {t.headway_us:.1f} | {inv} | {speed} |")
    out += [
        "",
        "Targets: >= 100x faster than invariant-ai on a 10-call trace, and flat as the trace grows.",
        "",
        "What each catches (the last call of each trace is the one checked):",
        "",
        "| trace | headway | invariant-ai |",
        "| --- | --- | --- |",
        *(f"| {t} | {h} | {i} |" for t, h, i in catches),
        "",
        "headway compares identifiers normalised (case, spacing, numbers by value); invariant-ai's `==` is "
        "exact, so the last row is a catch only where ids are case-sensitive. A failed lookup satisfies "
        "invariant-ai's rule as written (it sees that the call happened, not how it ended); headway's "
        "`requires_prior` needs a successful one.",
        "",
    ]
    return "\n".join(out)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__)
    ap.add_argument("-n", type=int, default=300, help="runs per agent variant (default 300)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="trace lengths")
    ap.add_argument(
        "--invariant-max", type=int, default=1000, help="longest trace to give invariant-ai (it is quadratic)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"Markdown results (default {RESULTS.name})")
    a = ap.parse_args(argv)
    ok, note = invariant_available()
    lc = langchain_overhead(a.n)
    sdk = agents_sdk_overhead(a.n)
    timings = rule_timings(a.sizes, ok, a.invariant_max)
    catches = rule_catches(ok)
    md = markdown(lc, sdk, timings, catches, note, a.n)
    a.out.write_text(md)
    print(md)
    print(f"written to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
