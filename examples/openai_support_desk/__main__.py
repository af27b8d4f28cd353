"""`python -m examples.openai_support_desk`: the six scenarios offline; `--live`: chat with a real model."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from agents import OutputGuardrailTripwireTriggered, Runner

from examples.support_desk import SCENARIOS, SupportDesk
from examples.support_desk.policy import load_policy
from headway import Guard, testing
from headway_openai_agents import RUN_ID_KEY, escalations, guard_agent, install_tracing, resolve, resume

from .scripted import play
from .support_agents import build_agents


async def offline(traces: Path) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, Guard(load_policy(), store=traces) as guard:
        install_tracing(guard)  # the SDK's spans go to headway's store; nothing is sent to OpenAI
        for scenario in SCENARIOS:
            desk = SupportDesk(Path(tmp) / f"{scenario.name}.db", faults=scenario.faults)
            print(f"\n== {scenario.name}: {scenario.title}")
            got = await play(scenario, guard, desk, run_id=f"openai-{scenario.name}", echo=print)
            for key, d in got.items():
                why = f"  ({d.reason})" if d.reason and d.action != "allow" else ""
                print(f"  {d.action.upper():8}  {key}{why}")
            wrong = testing.mismatches(scenario.expect, got)
            print(
                f"  -> refunds executed: {desk.count('refunds')}; "
                + ("as expected" if not wrong else f"UNEXPECTED: {wrong}")
            )
            failures += bool(wrong)
            desk.close()
    print(f"\n{len(SCENARIOS) - failures}/{len(SCENARIOS)} scenarios decided as expected; traces in {traces}")
    return 1 if failures else 0


async def live(traces: Path) -> int:
    if not os.environ.get("OPENAI_API_KEY"):
        print("--live needs OPENAI_API_KEY", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp, Guard(load_policy(), store=traces) as guard:
        install_tracing(guard)
        desk = SupportDesk(Path(tmp) / "live.db")
        agent = guard_agent(build_agents(desk, model=os.environ.get("HEADWAY_MODEL", "gpt-4.1-mini")), guard)
        context = {RUN_ID_KEY: "live-" + os.urandom(4).hex()}
        current, history = agent, []  # type: ignore[var-annotated]
        print("Talk to the support desk (empty line to quit). Try: I'm alice@example.com, refund order A3.")
        while line := input("you> ").strip():
            started = current
            try:
                result: Any = await Runner.run(
                    started, [*history, {"role": "user", "content": line}], context=context
                )
                while result.interruptions:
                    state = result.to_state()
                    for esc in escalations(result, guard):
                        print(f"[headway] {esc.tool}({esc.args}) waits for you: {esc.question or esc.reason}")
                        if esc.action == "clarify":
                            resolve(state, guard, esc.call_id, "answer", by="you", text=input("answer> "))
                        else:
                            ok = input("approve? [y/N] ").strip().lower() == "y"
                            resolve(state, guard, esc.call_id, "approve" if ok else "reject", by="you")
                    result = await resume(started, state, guard)
            except OutputGuardrailTripwireTriggered as e:
                # headway withheld an answer claiming what no tool result backs; the turn is dropped
                print(
                    f"desk> [headway withheld the answer: {e.guardrail_result.output.output_info['reason']}]"
                )
                continue
            print(f"desk> {result.final_output}")
            history, current = result.to_input_list(), result.last_agent
        guard.end_run(context[RUN_ID_KEY], None)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.openai_support_desk")
    parser.add_argument("--live", action="store_true", help="chat with a real model (needs OPENAI_API_KEY)")
    parser.add_argument("--traces", type=Path, default=Path(".headway") / "traces.db")
    args = parser.parse_args(argv)
    return asyncio.run(live(args.traces) if args.live else offline(args.traces))


if __name__ == "__main__":
    raise SystemExit(main())
