"""Testing helpers: scripted scenarios, the reference player, and the conformance check every adapter runs.

A `Scenario` scripts a run (user words, model turns with tool calls, a person's decisions, the final
answer) with the decision expected at each guarded step. `play` replays it straight through a Guard: the
reference every framework adapter must agree with (`assert_conforms`).

Recorded runs: `replay` one through a policy and `assert_decisions` (what `headway export-test` writes);
`assert_trajectory` / `match_trajectory` compare a run's tool calls with a reference, `evaluate` scores
many runs. The pytest fixtures `headway_guard` and `headway_trajectory` come from `headway.pytest_plugin`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._escalations import HumanAction
from ._guard import Guard
from ._recorded import load_run
from ._regression import NOT_ALLOW, assert_decisions, export_test, failures, load_policy, replay, steps_of
from ._run import Run
from ._trajectory import (
    IGNORE,
    ArgMatcher,
    Call,
    Divergence,
    Evaluation,
    Mode,
    TrajectoryMatch,
    assert_trajectory,
    calls_of,
    evaluate,
    match_trajectory,
)
from ._types import Decision

__all__ = [
    "IGNORE",
    "NOT_ALLOW",
    "ArgMatcher",
    "Call",
    "Divergence",
    "Evaluation",
    "Mode",
    "Scenario",
    "Step",
    "TrajectoryMatch",
    "assert_conforms",
    "assert_decisions",
    "assert_trajectory",
    "call",
    "calls_of",
    "end",
    "evaluate",
    "export_test",
    "failures",
    "human",
    "load_policy",
    "load_run",
    "match_trajectory",
    "mismatches",
    "play",
    "replay",
    "say",
    "steps_of",
    "user",
]

StepKind = Literal["user", "model", "human", "end"]


@dataclass(frozen=True)
class Step:
    """One scripted step. `model`: text and/or tool calls; `human`: a person resolves a pending call."""

    kind: StepKind
    text: str = ""
    calls: tuple[Call, ...] = ()
    call_id: str = ""
    action: HumanAction = "approve"
    by: str = "reviewer"
    args: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Scenario:
    """A scripted run and the decisions expected from it.

    `expect` maps a call id to the decision on the call, "<id>/result" to the decision on its result,
    "<id>/human" to the decision after a person's action, and "end" to the decision on the final answer.
    `faults` lets a domain rewrite one tool's results (a silently wrong tool).
    """

    name: str
    title: str
    steps: tuple[Step, ...]
    expect: Mapping[str, str]
    faults: Mapping[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)


def user(text: str) -> Step:
    return Step("user", text=text)


def say(text: str) -> Step:
    return Step("model", text=text)


def call(tool: str, call_id: str, text: str = "", **args: Any) -> Step:
    return Step("model", text=text, calls=(Call(tool, args, call_id),))


def human(call_id: str, action: HumanAction, **kw: Any) -> Step:
    return Step("human", call_id=call_id, action=action, **kw)


def end(text: str) -> Step:
    return Step("end", text=text)


Execute = Callable[[str, dict[str, Any]], Any]
Echo = Callable[[str, Decision | None], None]


def _run_tool(
    run: Run,
    execute: Execute,
    tool: str,
    args: dict[str, Any],
    call_id: str,
    errors: tuple[type[BaseException], ...],
) -> Decision:
    try:
        output = execute(tool, args)
    except errors as e:
        return run.tool_result(call_id, error=str(e))
    return run.tool_result(call_id, output=output)


def play(
    scenario: Scenario,
    guard: Guard,
    execute: Execute,
    *,
    run_id: str | None = None,
    tool_errors: tuple[type[BaseException], ...] = (Exception,),
    echo: Echo | None = None,
) -> dict[str, Decision]:
    """Replay a scenario through the guard; `execute(tool, args)` runs an allowed tool (raising = error).

    Returns the decision per key of `Scenario.expect`. `echo(line, decision)` receives a readable line
    per step (decision None for user and model text), for demos.
    """
    say_ = echo or (lambda _line, _d: None)
    run = guard.start_run(run_id or scenario.name)
    out: dict[str, Decision] = {}
    for step in scenario.steps:
        if step.kind == "user":
            run.user(step.text)
            say_(f"user      {step.text}", None)
        elif step.kind == "model":
            run.model(
                step.text, tool_calls=[{"name": c.tool, "args": dict(c.args), "id": c.id} for c in step.calls]
            )
            if step.text:
                say_(f"agent     {step.text}", None)
            for c in step.calls:
                d = run.tool_call(c.tool, dict(c.args), call_id=c.id)
                out[c.id] = d
                shown = ", ".join(f"{k}={v!r}" for k, v in c.args.items())
                say_(f"{c.tool}({shown})", d)
                if d.action == "allow":
                    r = _run_tool(run, execute, c.tool, dict(c.args), c.id, tool_errors)
                    out[f"{c.id}/result"] = r
                    if r.action != "allow":
                        say_(f"result of {c.tool}", r)
                if d.action == "stop":
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
            say_(f"person    {step.action} by {step.by}" + (f": {step.text!r}" if step.text else ""), None)
            say_(f"{step.call_id} after the person's {step.action}", d)
            pending = run.view.call(step.call_id)
            if d.action == "allow" and pending is not None:
                out[f"{step.call_id}/result"] = _run_tool(
                    run, execute, pending.tool, dict(pending.args), step.call_id, tool_errors
                )
        else:
            d = run.end(step.text)
            out["end"] = d
            say_(f"agent     {step.text}", None)
            say_("final answer", d)
    return out


def _action(value: Decision | str | None) -> str | None:
    return value.action if isinstance(value, Decision) else value


def mismatches(
    expected: Mapping[str, Decision | str], got: Mapping[str, Decision | str]
) -> dict[str, tuple[str | None, str | None]]:
    """{key: (expected action, got action)} for every key of `expected` that `got` decided differently."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for key, want in expected.items():
        have = _action(got.get(key))
        if _action(want) != have:
            out[key] = (_action(want), have)
    return out


def assert_conforms(
    got: Mapping[str, Decision | str],
    reference: Mapping[str, Decision | str],
    scenario: Scenario | None = None,
) -> None:
    """Assert an adapter decided like the reference on every step both saw, and as the scenario expects.

    Keys only one side produced (an adapter may see fewer results) are not compared, but every key the
    scenario names must be decided, and decided as expected.
    """
    problems: list[str] = []
    for key in sorted(set(got) & set(reference)):
        if _action(got[key]) != _action(reference[key]):
            problems.append(f"{key}: adapter {_action(got[key])!r}, core {_action(reference[key])!r}")
    if scenario is not None:
        for key, (want, have) in mismatches(scenario.expect, got).items():
            problems.append(f"{key}: expected {want!r}, got {have!r}")
    if problems:
        name = f" in scenario {scenario.name!r}" if scenario is not None else ""
        raise AssertionError(f"decisions differ{name}:\n  " + "\n  ".join(problems))
