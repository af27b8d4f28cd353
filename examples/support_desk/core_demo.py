"""The core demo: replays the six support-desk scenarios through a Guard and prints every decision.

Run it with `make demo` (or `python -m examples.support_desk.core_demo`). No model, no network: the
scripted turns stand in for the agent, the SQLite desk executes the tools for real.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from headway import Decision, Guard, testing

from .domain import SupportDesk, ToolError
from .policy import load_policy
from .scenarios import SCENARIOS, Scenario
from .show import paint

Echo = Callable[[str], None]


def play(
    scenario: Scenario,
    guard: Guard,
    desk: SupportDesk,
    *,
    run_id: str | None = None,
    echo: Echo | None = None,
    tty: bool = False,
) -> dict[str, Decision]:
    """Play one scenario through the guard on the desk; the decision per call id ("c3", "c3/result", "end")."""

    def line(text: str, d: Decision | None) -> None:
        if echo is None:
            return
        if d is None:
            echo(f"  {text}")
        else:
            echo(f"  {paint(d.action, tty)}  {text}" + (f"\n            why: {d.reason}" if d.reason else ""))
            if d.action == "stop":
                echo("  (the run is stopped)")

    return testing.play(scenario, guard, desk.call, run_id=run_id, tool_errors=(ToolError,), echo=line)


def main(argv: list[str] | None = None) -> int:
    tty = sys.stdout.isatty()
    policy = load_policy()
    failures = 0
    with tempfile.TemporaryDirectory() as tmp, Guard(policy, store=Path(".headway") / "traces.db") as guard:
        for scenario in SCENARIOS:
            desk = SupportDesk(Path(tmp) / f"{scenario.name}.db", faults=scenario.faults)
            print(f"\n== {scenario.name}: {scenario.title}")
            got = play(scenario, guard, desk, run_id=f"demo-{scenario.name}", echo=print, tty=tty)
            wrong = testing.mismatches(scenario.expect, got)
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
