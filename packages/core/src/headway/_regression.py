"""Regression tests from recorded runs: replay a run through a policy and check the decisions at the steps
where it went wrong. `headway export-test` writes a pytest file around `replay` and `assert_decisions`.

A replay feeds the recorded user messages, model turns, tool results and a person's decisions to a fresh
run under the policy. Where the policy now decides differently the recording cannot say what the agent
would have done, so the replay goes on with what it did: a call not allowed now gets no result, a
person's decision applies only to a call that waits for one, and a `stop` ends the replay.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._errors import HeadwayError
from ._guard import Guard
from ._policy import Policy
from ._redact import REDACTED
from ._store import MemoryStore, encode_data
from ._types import ACTIONS, SEVERITY_WEIGHT, Decision, Event

NOT_ALLOW = "not allow"
"""The expectation that a step is caught: any decision but allow (or the step is never reached)."""

_POLICY_SUFFIXES = frozenset({".toml", ".yaml", ".yml", ".json"})
_LINE = 110  # ruff's line length here; a shorter line is formatted the same way under any setting
_STEP_KEYS = ("user", "model", "call", "result", "human", "end")
_WEIGHTS: Mapping[str, float] = {str(k): v for k, v in SEVERITY_WEIGHT.items()}


# ---- policies ---------------------------------------------------------------------------------------


def load_policy(
    spec: Policy | str | os.PathLike[str], *, relative_to: str | os.PathLike[str] | None = None
) -> Policy:
    """A Policy from a policy file (.toml, .yaml) or an import path `pkg.module:attr` naming a Policy or
    a function that returns one. A relative file path is taken from `relative_to` (a directory, or a
    file such as a test's `__file__`, whose directory is used), else from the working directory."""
    if isinstance(spec, Policy):
        return spec
    text = os.fspath(spec)
    if is_policy_file(text):
        path = Path(text)
        if relative_to is not None and not path.is_absolute():
            base = Path(relative_to)
            path = (base if base.is_dir() else base.parent) / path
        if not path.is_file():
            raise HeadwayError(f"no policy file at {path}")
        return Policy.load(path)
    module, _, attr = text.partition(":")
    if not module or not attr:
        raise HeadwayError(
            f"{text!r} is neither a policy file (.toml, .yaml) nor an import path 'pkg.module:attr'"
        )
    try:
        obj: Any = importlib.import_module(module)
    except ImportError as e:
        raise HeadwayError(f"cannot import {module!r} for the policy {text!r} ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise HeadwayError(f"{module!r} has no {attr!r}") from None
    if callable(obj) and not isinstance(obj, Policy):
        obj = obj()
    if not isinstance(obj, Policy):
        raise HeadwayError(f"{text} is a {type(obj).__name__}, not a Policy (or a function returning one)")
    return obj


def is_policy_file(spec: str) -> bool:
    """Whether a policy reference names a file rather than an import path."""
    path = Path(spec)
    return path.suffix.lower() in _POLICY_SUFFIXES or path.exists() or ":" not in spec


# ---- recorded runs as steps ---------------------------------------------------------------------------


def steps_of(trajectory: Iterable[Event | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A recorded run as the plain, JSON-safe steps a regression test embeds (steps pass through).

    `{"user": text}`, `{"model": text}`, `{"call": tool, "id": ..., "args": {...}}`, `{"result": id,
    "output": ...}` (or `"error"`), `{"human": id, "action": ..., "by": ...}` and `{"end": answer}`;
    decided steps say what was decided when the run was recorded under `"recorded"`, and every step
    when it happened under `"at"` (a Unix time).
    """
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in trajectory:
        if isinstance(item, Mapping) and any(k in item for k in _STEP_KEYS):
            out.append(_json_safe(dict(item)))
            continue
        type_, d = _parts(item)
        step = _step(type_, d, seen)
        if step is not None:
            ts = item.ts if isinstance(item, Event) else item.get("ts")
            if isinstance(ts, int | float):
                step["at"] = round(ts, 3)  # the policy clock of the replay: checks see the recorded time
            out.append(_json_safe(step))
    return out


def _step(type_: str, d: Mapping[str, Any], seen: set[str]) -> dict[str, Any] | None:
    decision = d.get("decision")
    recorded = decision.get("action") if isinstance(decision, Mapping) else None
    step: dict[str, Any]
    if type_ == "user":
        return {"user": d.get("text") or ""}
    if type_ == "model":
        step = {"model": d.get("text") or ""}
        if d.get("tokens"):
            step["tokens"] = d["tokens"]
        if isinstance(decision, Mapping) and decision.get("stage") == "end":
            step["final"] = True  # a final answer mid-conversation: its claims were checked
        if recorded not in (None, "allow"):
            step["recorded"] = recorded
        return step
    cid = str(d.get("call_id"))
    if type_ == "tool_call":
        if cid in seen:
            return None  # the same call decided again (after a restart): the replay decides it once
        seen.add(cid)
        step = {"call": d.get("tool"), "id": cid, "args": d.get("args") or {}}
        raw = d.get("raw_args")
        if not d.get("args") and isinstance(raw, str) and raw.strip() and raw != REDACTED:
            step["raw_args"] = raw  # text that did not parse: the replay must see the same text
    elif type_ == "tool_result":
        step = {"result": cid, "output": d.get("output")}
        if d.get("error") is not None:
            step["error"] = d["error"]
        if cid not in seen:
            step["tool"] = d.get("tool")
    elif type_ == "human":
        step = {"human": cid, "action": d.get("action"), "by": d.get("by")}
        step.update({k: d[k] for k in ("message", "args", "text") if d.get(k) is not None})
    elif type_ == "end":
        step = {"end": d.get("final_answer") or ""}
    else:
        return None  # start and framework spans decide nothing
    if recorded is not None:
        step["recorded"] = recorded
    return step


def _parts(item: Event | Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    if isinstance(item, Event):
        return item.type, item.data
    if (
        isinstance(item, Mapping)
        and isinstance(item.get("type"), str)
        and isinstance(item.get("data"), Mapping)
    ):
        return item["type"], item["data"]
    raise TypeError(f"not a recorded event: {item!r}")


def _json_safe(value: dict[str, Any]) -> dict[str, Any]:
    # What a trace store would write: tuples become lists, odd objects their repr, NaN a string.
    safe: dict[str, Any] = json.loads(encode_data(value, max_field_chars=2**62))
    return safe


# ---- replay -------------------------------------------------------------------------------------------


def replay(
    policy: Policy | str | os.PathLike[str],
    trajectory: Iterable[Event | Mapping[str, Any]],
    *,
    relative_to: str | os.PathLike[str] | None = None,
    run_id: str = "replay",
) -> dict[str, Decision]:
    """Replay a recorded run (events or exported steps) through a policy; the decision per step.

    Keys are those of `Scenario.expect`: a call id, "<id>/result", "<id>/human", "end", and "model#n"
    for the n-th model turn ("end#n" for the n-th end when one run id holds several conversations).
    A step the replay never reached has no key. `policy` as for `load_policy`.
    """
    clock = _Clock()
    chosen = load_policy(policy, relative_to=relative_to)
    if chosen.now is None:  # checks that read the time see when the run happened, not today
        chosen = dataclasses.replace(chosen, now=clock)
    guard = Guard(chosen, store=MemoryStore())
    try:
        return dict(_replay(guard, run_id, steps_of(trajectory), clock))
    finally:
        guard.close()


class _Clock:
    """The replay's clock: the recorded time of the step being replayed (now, for steps without one)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> datetime:
        return datetime.now(UTC) if self.at is None else datetime.fromtimestamp(self.at, UTC)


def _replay(
    guard: Guard, run_id: str, steps: list[dict[str, Any]], clock: _Clock
) -> Iterator[tuple[str, Decision]]:
    run = guard.start_run(run_id)
    models = ends = 0
    decided: set[str] = set()
    for step in steps:
        key: str
        at = step.get("at")
        if isinstance(at, int | float):
            clock.at = float(at)
        if "user" in step:
            run.user(str(step["user"]))
            continue
        if "model" in step:
            models += 1
            key = f"model#{models}"
            d = run.model(str(step["model"]), tokens=step.get("tokens"), final=bool(step.get("final")))
        elif "call" in step:
            key = str(step["id"])
            d = run.tool_call(str(step["call"]), step.get("raw_args", step.get("args")), call_id=key)
        elif "result" in step:
            cid = str(step["result"])
            call = run.view.call(cid)
            if call is not None and (not call.ran or call.done):
                continue  # not allowed under this policy (or not yet approved): the tool did not run
            key = f"{cid}/result"
            d = run.tool_result(cid, step.get("output"), error=step.get("error"), tool=step.get("tool"))
        elif "human" in step:
            cid = str(step["human"])
            call = run.view.call(cid)
            if call is None or call.action not in ("escalate", "clarify"):
                continue  # this policy did not ask a person here
            key = f"{cid}/human"
            action = step.get("action")
            try:
                d = run.resolve(
                    cid,
                    action,  # type: ignore[arg-type]  # checked by resolve
                    by=str(step.get("by") or "reviewer"),
                    message=step.get("message"),
                    args=step.get("args") if action == "edit" else None,
                    text=step.get("text") if action == "answer" else None,
                )
            except HeadwayError:
                continue  # a decision this policy's pause does not take (an edit without args...)
        elif "end" in step:
            ends += 1
            key = "end" if ends == 1 else f"end#{ends}"
            d = run.end(str(step["end"]))
            run = guard.start_run(run_id)  # a later conversation under the same run id starts afresh
        else:
            continue
        if key not in decided:
            decided.add(key)
            yield key, d
        if d.action == "stop":
            return  # the run ends here: nothing after it happens


# ---- expectations -----------------------------------------------------------------------------------


def failures(trajectory: Iterable[Event | Mapping[str, Any]]) -> dict[str, str]:
    """The steps where a recorded run shows a failure, each with why: a decision that was not allow, a
    finding of severity medium or more, or a person who rejected or edited the call."""
    out: dict[str, str] = {}

    def note(key: str, why: str) -> None:
        out[key] = f"{out[key]}; {why}" if key in out else why

    models = ends = 0
    for item in trajectory:
        type_, d = _parts(item)
        raw = d.get("decision")
        decision: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        cid = str(d.get("call_id"))
        if type_ == "tool_call":
            key = cid
        elif type_ == "tool_result":
            key = f"{cid}/result"
        elif type_ == "model":
            models += 1
            key = f"model#{models}"
        elif type_ == "end":
            ends += 1
            key = "end" if ends == 1 else f"end#{ends}"
        elif type_ == "human":
            action = d.get("action")
            if action in ("reject", "edit"):
                note(cid, f"{d.get('by') or 'a person'} {'rejected' if action == 'reject' else 'edited'} it")
            if action == "reject":
                continue  # the block that follows is the person's, not the policy's
            key = f"{cid}/human"
        else:
            continue
        why = _why(decision)
        if why is not None and (key not in out or why not in out[key]):
            note(key, why)
    return out


def _why(decision: Mapping[str, Any]) -> str | None:
    action = decision.get("action")
    if action is not None and action != "allow":
        return f"recorded {action}: {decision.get('reason') or 'no reason given'}"
    serious = [
        f
        for f in decision.get("findings") or ()
        if isinstance(f, Mapping) and _WEIGHTS.get(str(f.get("severity")), 0.0) >= _WEIGHTS["medium"]
    ]
    if not serious:
        return None
    worst = max(serious, key=lambda f: _WEIGHTS[str(f["severity"])])
    return f"recorded allow despite {worst.get('kind')} ({worst['severity']}): {worst.get('message')}"


def recorded_steps(trajectory: Iterable[Event | Mapping[str, Any]]) -> dict[str, str | None]:
    """Every step key a recorded run has, with the tool it concerns (None for model turns and ends)."""
    keys: dict[str, str | None] = {}
    models = ends = 0
    tools: dict[str, str] = {}
    for item in trajectory:
        type_, d = _parts(item)
        cid = str(d.get("call_id"))
        if type_ == "tool_call":
            tools.setdefault(cid, str(d.get("tool")))
            keys[cid] = tools[cid]
        elif type_ == "tool_result":
            keys[f"{cid}/result"] = tools.get(cid, str(d.get("tool")))
        elif type_ == "human":
            keys[f"{cid}/human"] = tools.get(cid)
        elif type_ == "model":
            models += 1
            keys[f"model#{models}"] = None
        elif type_ == "end":
            ends += 1
            keys["end" if ends == 1 else f"end#{ends}"] = None
    return keys


def expectation(want: str) -> str:
    """An expectation in its written form: an action, "not allow", or several joined by "|"."""
    parts = []
    for raw in want.split("|"):
        p = " ".join(raw.strip().lower().replace("_", " ").replace("-", " ").split())
        if p != NOT_ALLOW and p not in ACTIONS:
            raise ValueError(
                f"unknown expectation {want!r}: use one of {', '.join(ACTIONS)}, {NOT_ALLOW!r}, "
                "or several joined by '|'"
            )
        parts.append(p)
    return "|".join(dict.fromkeys(parts))


def _accepts(want: str) -> frozenset[str]:
    out: set[str] = set()
    for p in expectation(want).split("|"):
        out |= set(ACTIONS) - {"allow"} if p == NOT_ALLOW else {p}
    return frozenset(out)


def assert_decisions(expected: Mapping[str, str], got: Mapping[str, Decision | str]) -> None:
    """Assert each step was decided as expected: an action, "not allow", or alternatives "a|b".

    "not allow" also holds for a step the replay never reached (an earlier step stopped it, or its call
    was not allowed to run); any other expectation needs the step decided.
    """
    __tracebackhide__ = True  # pytest shows the test's line, not this function's
    problems: list[str] = []
    let_through = False
    for key, want in expected.items():
        accepts = _accepts(want)
        have = got.get(key)
        if have is None:
            if accepts != set(ACTIONS) - {"allow"}:
                problems.append(f"{key}: expected {want}, but the replay never reached this step")
            continue
        action = have.action if isinstance(have, Decision) else have
        if action in accepts:
            continue
        label = key
        reason = ""
        if isinstance(have, Decision):
            label += f" ({have.tool})" if have.tool and have.tool != key else ""
            reason = f": {have.reason}" if have.reason else ""
        problems.append(f"{label}: expected {want}, got {action}{_clip(reason, 200)}")
        let_through = let_through or (action == "allow" and "allow" not in accepts)
    if problems:
        text = f"{len(problems)} of {len(expected)} steps decided otherwise than expected:\n  " + "\n  ".join(
            problems
        )
        if let_through:
            text += "\nthe policy still lets through what went wrong in the recorded run"
        raise AssertionError(text)


# ---- writing the test ---------------------------------------------------------------------------------


def expectations(
    trajectory: Iterable[Event | Mapping[str, Any]], expect: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What an exported test asserts: "not allow" at every failure step, then the pinned `expect`."""
    events = list(trajectory)
    known = recorded_steps(events)
    pins = {k: expectation(v) for k, v in (expect or {}).items()}
    for key in pins:
        if key not in known:
            raise HeadwayError(f"the run has no step {key!r} (its steps: {', '.join(known) or 'none'})")
    return {**dict.fromkeys(failures(events), NOT_ALLOW), **pins}


def export_test(
    trajectory: Iterable[Event | Mapping[str, Any]],
    policy: str,
    *,
    expect: Mapping[str, str] | None = None,
    run_id: str | None = None,
) -> str:
    """The source of a pytest file that replays a recorded run through `policy` (a file path relative
    to the test file, or `pkg.module:attr`) and asserts the decisions `expectations` gives.

    Raises HeadwayError when there is nothing to assert: a run without failures and no `expect`.
    """
    events = list(trajectory)
    rid = run_id or next((e.run_id for e in events if isinstance(e, Event)), None) or "run"
    expected = expectations(events, expect)
    if not expected:
        raise HeadwayError(
            f"run {rid!r} shows no failure (every step allowed, no finding of medium severity or more, "
            "no person's reject or edit): say what the test should assert with --expect STEP=ACTION"
        )
    why = failures(events)
    tools = recorded_steps(events)
    lines = []
    for key, want in expected.items():
        label = f"{key} ({tools[key]})" if tools.get(key) and tools[key] != key else key
        must = "must not be allowed" if want == NOT_ALLOW else f"must be {want.replace('|', ' or ')}"
        because = f"; {why[key]}" if key in why else ""
        pinned = " (pinned)" if expect and key in expect else ""
        lines.append(f"- {label} {must}{pinned}{because}")
    doc = "\n".join(
        [
            f"Regression test for run {_doc(rid)}, exported by `headway export-test`.",
            "",
            *textwrap.wrap(
                "It replays the recorded run (user messages, model turns, tool results, a person's decisions) "
                "through the policy in POLICY and asserts the decisions below; it fails until the policy "
                "catches what went wrong in the recording.",
                _LINE - 4,
            ),
            "",
            *(
                row
                for line in lines
                for row in textwrap.wrap(_doc(line, quote=False), _LINE - 4, subsequent_indent="  ")
            ),
        ]
    )
    name = "test_regression_" + ident(rid)
    return (
        f'"""{doc}\n"""\n\n'
        "from headway.testing import assert_decisions, replay\n\n"
        f"RUN_ID = {_literal(rid)}\n"
        f"POLICY = {_literal(policy)}\n"
        f"EXPECT = {_literal(expected, room=_LINE - len('EXPECT = '))}\n\n\n"
        f"def {name}() -> None:\n"
        "    decisions = replay(POLICY, TRAJECTORY, relative_to=__file__, run_id=RUN_ID)\n"
        "    assert_decisions(EXPECT, decisions)\n\n\n"
        "# The recorded run, as data (secrets were redacted when it was recorded).\n"
        f"TRAJECTORY: list[dict[str, object]] = {_literal(steps_of(events), room=0)}\n"
    )


def ident(run_id: str) -> str:
    """A run id as the tail of a Python identifier (a test name, a file name)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", run_id).strip("_").lower()[:60] or "run"


def _doc(text: str, *, quote: bool = True) -> str:
    # Docstrings hold agent-supplied text: keep it printable and free of quotes and backslashes, so the
    # docstring stays one valid, ruff-formatted literal.
    clean = "".join(c if c.isprintable() and c not in '\\"' else ("'" if c == '"' else "?") for c in text)
    clean = _clip(" ".join(clean.split()), 300)
    return f"'{clean}'" if quote else clean


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- Python literals in ruff's format ---------------------------------------------------------------


def _literal(value: Any, indent: int = 0, room: int = _LINE) -> str:
    """JSON data as Python source the way ruff formats it: on one line when it fits in `room` columns,
    else one item per line with a trailing comma (ruff keeps that exploded: the magic trailing comma)."""
    flat = _flat(value)
    if not isinstance(value, dict | list) or not value or _width(flat) <= room:
        return flat
    inner = indent + 4
    pad = " " * inner
    if isinstance(value, dict):
        rows = []
        for k, v in value.items():
            key = _string(str(k)) + ": "
            rows.append(pad + key + _literal(v, inner, _LINE - inner - _width(key) - 1) + ",")
        return "{\n" + "\n".join(rows) + "\n" + " " * indent + "}"
    rows = [pad + _literal(v, inner, _LINE - inner - 1) + "," for v in value]
    return "[\n" + "\n".join(rows) + "\n" + " " * indent + "]"


def _flat(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return f'float("{value}")'
        return repr(value).replace("e+", "e")  # ruff writes 1e100, not 1e+100
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(str(k))}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return _string(repr(value))


_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(s: str) -> str:
    # Ruff's quotes: double, unless the text holds more double quotes than single ones.
    quote = "'" if s.count('"') > s.count("'") else '"'
    out = []
    for c in s:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c == quote:
            out.append("\\" + c)
        elif not c.isprintable():
            out.append(repr(c)[1:-1])  # \x1b, \u200b...: control and bidi characters stay visible
        else:
            out.append(c)
    return quote + "".join(out) + quote


def _width(text: str) -> int:
    # Wide characters take two columns; counting every non-ASCII one as two errs on the safe side
    # (an exploded literal is stable under ruff, a one-liner that is too long is not).
    return sum(1 if ord(c) < 128 else 2 for c in text)
