"""`headway export-test` and `headway eval`: regression tests from recorded runs, and recorded runs scored
against a reference trajectory. `register` adds both to the `headway` command line.

    headway export-test RUN_ID [--policy policy.toml | pkg.module:attr] [-o FILE] [--expect STEP=ACTION ...]
    headway eval --reference ref.json [--mode strict|unordered|subset|superset] [--run RUN ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ._errors import HeadwayError
from ._guard import DEFAULT_TRACES
from ._policy import Policy
from ._recorded import Source, load_run, recorded_runs
from ._regression import (
    NOT_ALLOW,
    assert_decisions,
    expectations,
    export_test,
    ident,
    is_policy_file,
    load_policy,
    replay,
)
from ._trajectory import IGNORE, MODES, ArgMatcher, CallLike, Mode, evaluate


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `export-test` and `eval` to the `headway` parser's sub-commands."""
    exp = commands.add_parser(
        "export-test",
        help="write a pytest regression test from a recorded run",
        description="Write a pytest file that replays a recorded run through a policy and asserts that "
        "each step where the run went wrong is not allowed (plus any --expect pins).",
        parents=[common],
    )
    exp.add_argument("run_id", metavar="RUN_ID")
    exp.add_argument(
        "--policy",
        help="a policy file or an import path pkg.module:attr (default: $HEADWAY_POLICY, else ./policy.toml)",
    )
    exp.add_argument("-o", "--output", help="the test file (default: tests/test_regression_<run>.py)")
    exp.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="STEP=ACTION",
        help="pin a decision: STEP is a call id, ID/result, ID/human, end or model#N; ACTION an action, "
        "not-allow, or several joined by '|' (repeatable)",
    )
    exp.add_argument("--force", action="store_true", help="overwrite an existing test file")
    exp.set_defaults(command=_export)

    ev = commands.add_parser(
        "eval",
        help="score recorded runs against a reference trajectory",
        description="Score each recorded run's tool calls against a reference; exit 1 when any run fails. "
        'The reference is a JSON list of calls ({"tool": ..., "args": {...}}, ["tool", {...}] or "tool" '
        'for any arguments), or {"calls": [...], "mode": ..., "ignore": [...]}, or {"runs": {RUN: [...]}}.',
        parents=[common],
    )
    ev.add_argument("--reference", required=True, metavar="REF.json")
    ev.add_argument("--mode", choices=MODES, help="match mode (default: the reference file's, else strict)")
    ev.add_argument(
        "--run", action="append", dest="runs", metavar="RUN_ID", help="only this run (repeatable)"
    )
    ev.add_argument(
        "--ignore", action="append", default=[], metavar="ARG", help="an argument (or tool.arg) not compared"
    )
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.set_defaults(command=_eval)


def _source(args: argparse.Namespace) -> Source:
    return str(getattr(args, "store", None) or os.environ.get("HEADWAY_TRACES") or DEFAULT_TRACES)


def _export(args: argparse.Namespace) -> int:
    events = load_run(_source(args), args.run_id)
    spec = (
        args.policy
        or os.environ.get("HEADWAY_POLICY")
        or ("policy.toml" if Path("policy.toml").is_file() else None)
    )
    if not spec:
        raise HeadwayError(
            "say which policy the test replays through: --policy policy.toml or pkg.module:attr"
        )
    out = Path(args.output or f"tests/test_regression_{ident(args.run_id)}.py")
    if out.exists() and not args.force:
        raise HeadwayError(f"{out} exists; pass --force to overwrite it")
    pins: dict[str, str] = {}
    for pin in args.expect:
        step, sep, want = pin.partition("=")
        if not sep or not step.strip() or not want.strip():
            raise HeadwayError(f"--expect {pin!r}: write STEP=ACTION, e.g. c3=escalate or end=not-allow")
        pins[step.strip()] = want
    try:
        expected = expectations(events, pins)
    except ValueError as e:
        raise HeadwayError(f"--expect: {e}") from None
    policy, ref = _policy(spec, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(export_test(events, ref, expect=pins, run_id=args.run_id), encoding="utf-8", newline="\n")
    asserts = ", ".join(f"{k} {v}" for k, v in expected.items())
    print(f"wrote {out}: replays run {args.run_id!r} through {spec} and asserts {asserts}")
    # Say what the test does under this policy today: a regression test that already passes guards
    # against a relapse; one that fails shows the policy does not catch the failure yet.
    try:
        assert_decisions(expected, replay(policy, events, run_id=args.run_id))
    except AssertionError as e:
        until = " (until the policy catches the failure)" if NOT_ALLOW in expected.values() else ""
        print(f"it fails under this policy{until}:")
        print("\n".join(f"  {line.strip()}" for line in str(e).splitlines()[1:]))
    else:
        print("it passes under this policy")
    return 0


def _policy(spec: str, out: Path) -> tuple[Policy, str]:
    """The policy, and how the test file names it: a file path relative to the test, or the import path."""
    if not is_policy_file(spec):
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as `python -m` would: pkg.module is the user's own code
        return load_policy(spec), spec
    path = Path(spec)
    if not path.is_file():
        raise HeadwayError(f"no policy file at {path}")
    policy = load_policy(path)
    try:
        ref = os.path.relpath(path.resolve(), out.parent.resolve())
    except ValueError:  # another drive (Windows): only an absolute path reaches it
        ref = str(path.resolve())
    return policy, Path(ref).as_posix()


def _eval(args: argparse.Namespace) -> int:
    path = Path(args.reference)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise HeadwayError(f"{path}: not valid JSON ({e})") from None
    reference, file_mode, ignore = _reference(data, path)
    mode: Mode = args.mode or file_mode or "strict"
    matchers: dict[str, ArgMatcher] = dict.fromkeys([*ignore, *args.ignore], IGNORE)
    source = _source(args)
    runs = recorded_runs(source, args.runs)
    missing = [r for r in args.runs or () if r not in runs]
    if missing:
        raise HeadwayError(f"no run {missing[0]!r} in {source}")
    if not runs:
        raise HeadwayError(f"no recorded runs in {source}")
    try:
        result = evaluate(runs, reference, mode, matchers)
    except TypeError as e:
        raise HeadwayError(f"{path}: {e}") from None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=repr))
    else:
        print(result)
    return 0 if not result.failed else 1


def _reference(
    data: Any, path: Path
) -> tuple[list[CallLike] | dict[str, list[CallLike]], Mode | None, list[str]]:
    if isinstance(data, list):
        return data, None, []
    if not isinstance(data, dict) or not ("calls" in data or "runs" in data):
        raise HeadwayError(f'{path}: expected a list of calls or an object with "calls" or "runs"')
    mode = data.get("mode")
    if mode is not None and mode not in MODES:
        raise HeadwayError(f"{path}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    ignore = data.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(i, str) for i in ignore):
        raise HeadwayError(f'{path}: "ignore" must be a list of argument names')
    calls = data.get("runs") if "runs" in data else data.get("calls")
    if not (
        isinstance(calls, list)
        or (isinstance(calls, dict) and all(isinstance(c, list) for c in calls.values()))
    ):
        raise HeadwayError(f'{path}: "calls" must be a list of calls, "runs" an object of such lists')
    return calls, mode, ignore
