"""The core demo: replays the six support-desk scenarios through a Guard and prints every decision.

Run it with `make demo` (or `python -m examples.support_desk.core_demo`). No model, no network: the
scripted turns stand in for the agent, the SQLite desk executes the tools for real.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headway import Decision, Guard, Run

from .domain import SupportDesk, ToolError
from .policy import load_policy
from .scenarios import SCENARIOS, Scenario

Echo = Callable[[str], None]

_COLOURS = {"allow": "32", "block": "33", "clarify": "36", "escalate": "35", "stop": "31"}


def _paint(action: str, tty: bool) -> str:
    label = action.upper().ljust(8)
    return f"\x1b[1;{_COLOURS[action]}m{label}\x1b[0m" if tty else label


def _execute(run: Run, desk: SupportDesk, tool: str, args: dict[str, Any], call_id: str) -> Decision:
    try:
        output: Any = desk.call(tool, args)
        return run.tool_result(call_id, output=output)
    except ToolError as e:
        return run.tool_result(call_id, error=str(e))


def play(
    scenario: Scenario,
    guard: Guard,
    desk: SupportDesk,
    *,
    run_id: str | None = None,
    echo: Echo | None = None,
    tty: bool = False,
) -> dict[str, Decision]:
    """Play one scenario through the guard; returns the decision per call id ("c3", "c3/result", "end")."""
    say = echo or (lambda _line: None)
    run = guard.start_run(run_id or scenario.name)
    out: dict[str, Decision] = {}
    for step in scenario.steps:
        if step.kind == "user":
            run.user(step.text)
            say(f"  user      {step.text}")
        elif step.kind == "model":
            run.model(
                step.text, tool_calls=[{"name": c.tool, "args": dict(c.args), "id": c.id} for c in step.calls]
            )
            if step.text:
                say(f"  agent     {step.text}")
            for c in step.calls:
                d = run.tool_call(c.tool, dict(c.args), call_id=c.id)
                out[c.id] = d
                args = ", ".join(f"{k}={v!r}" for k, v in c.args.items())
                say(
                    f"  {_paint(d.action, tty)}  {c.tool}({args})"
                    + (f"\n            why: {d.reason}" if d.reason else "")
                )
                if d.action == "allow":
                    r = _execute(run, desk, c.tool, dict(c.args), c.id)
                    out[f"{c.id}/result"] = r
                    if r.action != "allow":
                        say(f"  {_paint(r.action, tty)}  result of {c.tool}\n            why: {r.reason}")
                if d.action == "stop":
                    say("  (the run is stopped)")
                    return out
        elif step.kind == "human":
            d = run.resolve(
                step.call_id,
                step.action,
                by=step.by,
                text=step.text or None,
                args=dict(step.args) if step.args is not None else None,
            )
            out[f"{step.call_id}/human"] = d
            what = f"{step.action} by {step.by}" + (f": {step.text!r}" if step.text else "")
            say(f"  person    {what}")
            say(
                f"  {_paint(d.action, tty)}  {step.call_id} after the person's {step.action}"
                + (f"\n            why: {d.reason}" if d.reason else "")
            )
            call = run.view.call(step.call_id)
            if d.action == "allow" and call is not None:
                out[f"{step.call_id}/result"] = _execute(run, desk, call.tool, dict(call.args), step.call_id)
        else:
            d = run.end(step.text)
            out["end"] = d
            say(f"  agent     {step.text}")
            say(
                f"  {_paint(d.action, tty)}  final answer"
                + (f"\n            why: {d.reason}" if d.reason else "")
            )
    return out


def main(argv: list[str] | None = None) -> int:
    tty = sys.stdout.isatty()
    policy = load_policy()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, Guard(policy, store=Path(".headway") / "traces.db") as guard:
        for scenario in SCENARIOS:
            desk = SupportDesk(Path(tmp) / f"{scenario.name}.db", faults=scenario.faults)
            print(f"\n== {scenario.name}: {scenario.title}")
            got = play(scenario, guard, desk, run_id=f"demo-{scenario.name}", echo=print, tty=tty)
            wrong = {
                k: (v, got[k].action if k in got else None)
                for k, v in scenario.expect.items()
                if k not in got or got[k].action != v
            }
            refunds = desk.count("refunds")
            print(
                f"  -> refunds executed: {refunds}; "
                + ("as expected" if not wrong else f"UNEXPECTED: {wrong}")
            )
            failures += bool(wrong)
            desk.close()
    print(
        f"\n{len(SCENARIOS) - failures}/{len(SCENARIOS)} scenarios decided as expected; traces in .headway/traces.db"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
