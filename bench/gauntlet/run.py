"""Plays gauntlet cases through the core (`headway.testing.play`), a real LangGraph graph and the real
Agents SDK Runner, and returns what each decided and which side effects the desk recorded.

The adapters run the example agents the way the demos do (examples/langgraph_support_desk/play.py and
examples/openai_support_desk/scripted.py): scripted models, guarded tool node plus callback handler, and
guard_agent with the SDK's ScriptedModel. Each path gets its own Guard over an in-memory trace store.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass

from examples.support_desk import ToolError
from headway import Decision, Guard, HeadwayError, Policy, testing
from headway.traces import MemoryStore

from .cases import Case

MAX_TURNS = 60


@dataclass(frozen=True)
class Outcome:
    """One case played on one path: the decisions per key, and the refunds and tickets that happened."""

    case: Case
    decisions: dict[str, Decision]
    refunds: int
    tickets: int


def run_core(cases: Sequence[Case], policy: Policy) -> list[Outcome]:
    """The reference: `headway.testing.play`. The cases it returns are settled (a person's step that
    headway never asked for is dropped); the adapters play those, so all paths play the same script."""
    out = []
    with Guard(policy, store=MemoryStore()) as guard:
        for case in cases:
            out.append(_play_core(case, guard))
    return out


def _play_core(case: Case, guard: Guard) -> Outcome:
    for attempt in itertools.count():
        run_id = case.name if attempt == 0 else f"{case.name}~{attempt}"
        desk = case.desk()
        try:
            got = testing.play(case.scenario, guard, desk.call, run_id=run_id, tool_errors=(ToolError,))
            return Outcome(case, got, desk.count("refunds"), desk.count("tickets"))
        except HeadwayError:
            # A person was scripted to decide a call headway did not pause (it blocked it): the first
            # person's step without a recorded decision is that one. Replay without it.
            guard.flush()
            decided = {e.data["call_id"] for e in guard.store.events(run_id) if e.type == "human"}
            stale = next(s.call_id for s in case.steps if s.kind == "human" and s.call_id not in decided)
            case = case.without_person(stale)
        finally:
            desk.close()
    raise AssertionError("unreachable")


def run_langgraph(cases: Sequence[Case], policy: Policy) -> list[Outcome]:
    from langgraph.checkpoint.memory import InMemorySaver

    from examples.langgraph_support_desk.play import play

    out = []
    saver = InMemorySaver()
    with Guard(policy, store=MemoryStore()) as guard:
        for case in cases:
            desk = case.desk()
            got = play(case.scenario, guard, desk, saver, thread_id=case.name)
            out.append(Outcome(case, got, desk.count("refunds"), desk.count("tickets")))
            desk.close()
    return out


def run_openai_agents(cases: Sequence[Case], policy: Policy) -> list[Outcome]:
    # Tracing would try to export to OpenAI; the scripted runs never leave the process.
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    from examples.openai_support_desk import play

    async def all_cases(guard: Guard) -> list[Outcome]:
        out = []
        for case in cases:
            desk = case.desk()
            # Room for long runs: the SDK's default of 10 turns per Runner.run would end the stall and
            # audit scripts itself, before headway is tested on them.
            got = await play(case.scenario, guard, desk, run_id=case.name, max_turns=MAX_TURNS)
            out.append(Outcome(case, got, desk.count("refunds"), desk.count("tickets")))
            desk.close()
        return out

    with Guard(policy, store=MemoryStore()) as guard:
        return asyncio.run(all_cases(guard))


def run(path: str, cases: Sequence[Case], policy: Policy) -> list[Outcome]:
    runner = {"core": run_core, "langgraph": run_langgraph, "openai_agents": run_openai_agents}[path]
    return runner(cases, policy)
