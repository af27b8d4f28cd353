"""Trajectory matching: does a run's sequence of tool calls follow a reference, and where did it leave it?

Four modes, as in agentevals' trajectory match: `strict` (the same calls in the same order), `unordered`
(the same calls in any order), `subset` (no call outside the reference), `superset` (every reference
call, others allowed). Arguments compare exactly unless a matcher says otherwise.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias, get_args

from ._recorded import recorded_runs
from ._run import Run
from ._store import TraceStore
from ._types import Event
from ._view import RunView, ToolCall

Mode = Literal["strict", "unordered", "subset", "superset"]
MODES: tuple[Mode, ...] = get_args(Mode)

_MODE_TEXT: Mapping[Mode, str] = {
    "strict": "the same calls in the same order",
    "unordered": "the same calls in any order",
    "subset": "no call outside the reference",
    "superset": "every reference call, others allowed",
}
_SHOW_ALL_ROWS = 40


class _Ignore:
    """The type of `IGNORE`."""

    def __repr__(self) -> str:
        return "IGNORE"


IGNORE: Final = _Ignore()
"""Matches any value, or none: in a reference call's args (`{"amount": IGNORE}`) or in `args=`."""

ArgMatcher: TypeAlias = Literal["exact"] | _Ignore | Callable[[Any, Any], bool]
"""How one argument is compared: "exact" (the default), IGNORE, or `fn(actual, expected) -> bool`."""

# A reference call given as a bare tool name: any arguments. Compared by identity.
_ANY_ARGS: Mapping[str, Any] = MappingProxyType({})
_MISSING: Final = object()


@dataclass(frozen=True)
class Call:
    """A tool call: one a scripted model proposes, one a run made, or one a reference expects.

    In a reference, an argument's value may be `IGNORE` (anything) or a predicate `fn(value) -> bool`.
    """

    tool: str
    args: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    def __str__(self) -> str:
        if self.args is _ANY_ARGS:
            return f"{self.tool}(...)"
        return f"{self.tool}({', '.join(f'{k}={_show(v)}' for k, v in self.args.items())})"


CallLike: TypeAlias = Call | ToolCall | tuple[str, Mapping[str, Any]] | str | Mapping[str, Any]
"""A call written out: `Call`, `("tool", {args})`, `"tool"` (any args), or `{"tool": ..., "args": ...}`.

Also accepted where a trajectory is read: recorded `Event`s, event dicts from JSONL, and the steps of an
exported regression test (`{"call": ..., "id": ..., "args": ...}`).
"""
Trajectory: TypeAlias = Run | RunView | Iterable[Event | CallLike]


@dataclass(frozen=True)
class Divergence:
    """Where a run left its reference: the run's `step` (index of its call; None when the run made no
    call there) against the reference's `ref_index` (None when the reference has no call there)."""

    step: int | None
    ref_index: int | None
    expected: Call | None
    got: Call | None
    reason: str

    def __str__(self) -> str:
        if self.got is None:
            return f"reference[{self.ref_index}] {self.expected}: {self.reason}"
        where = f"step {self.step}"
        if self.expected is None:
            return f"{where} {self.got}: {self.reason}"
        return f"{where}: expected {self.expected}, got {self.got} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "ref_index": self.ref_index,
            "expected": _call_dict(self.expected),
            "got": _call_dict(self.got),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class TrajectoryMatch:
    """How one run's tool calls compare with a reference.

    `score` is 1.0 exactly when the run passed: for strict, the calls matched in order (longest common
    subsequence) over the longer of the two; for unordered, the calls matched over the longer; for
    subset, the run's calls the reference covers over the run's; for superset, the reference calls the
    run made over the reference's.
    """

    mode: Mode
    passed: bool
    score: float
    calls: tuple[Call, ...]
    reference: tuple[Call, ...]
    divergences: tuple[Divergence, ...]
    run_id: str | None = None
    # For each run step, the reference index it matched (None: none): what `explain` shows per step.
    matched: tuple[int | None, ...] = ()

    @property
    def divergence(self) -> Divergence | None:
        """The first place the run left the reference (None when it did not)."""
        return self.divergences[0] if self.divergences else None

    def explain(self) -> str:
        """A readable account: verdict, then every run step (matched, differing, extra) and what is missing."""
        who = f"run {self.run_id!r}" if self.run_id is not None else "the run"
        verdict = "match" if self.passed else "do not match"
        lines = [
            f"the tool calls of {who} {verdict} the reference ({self.mode}: {_MODE_TEXT[self.mode]}); "
            f"score {self.score:.2f}"
        ]
        first = self.divergence
        if first is not None:
            where = (
                f"step {first.step}"
                if first.step is not None
                else f"reference[{first.ref_index}] (never made)"
            )
            lines[0] += f"; the run left it at {where}"
        by_step = {d.step: d for d in self.divergences if d.step is not None}
        quiet = len(self.calls) > _SHOW_ALL_ROWS
        hidden = 0
        for i, c in enumerate(self.calls):
            d = by_step.get(i)
            if d is None:
                if quiet:
                    hidden += 1
                    continue
                j = self.matched[i] if i < len(self.matched) else None
                lines.append(
                    f"  step {i}: {c}" + (f"  ok (reference[{j}])" if j is not None else "  extra, allowed")
                )
            elif d.expected is None:
                lines.append(f"  step {i}: {c}  <- {d.reason}")
            else:
                lines.append(
                    f"  step {i}: {c}  <- expected reference[{d.ref_index}] {d.expected}: {d.reason}"
                )
        if hidden:
            lines.append(f"  ({hidden} matching steps not shown)")
        for d in self.divergences:
            if d.step is None:
                lines.append(f"  missing: reference[{d.ref_index}] {d.expected}  <- {d.reason}")
        if not self.calls:
            lines.append("  (the run made no tool calls)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "passed": self.passed,
            "score": self.score,
            "divergences": [d.to_dict() for d in self.divergences],
        }


@dataclass(frozen=True)
class Evaluation:
    """Recorded runs scored against reference trajectories: one `TrajectoryMatch` per run."""

    mode: Mode
    results: tuple[TrajectoryMatch, ...]

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results)

    @property
    def failed(self) -> list[TrajectoryMatch]:
        return [r for r in self.results if not r.passed]

    @property
    def pass_rate(self) -> float:
        return self.passed / len(self.results) if self.results else 1.0

    @property
    def score(self) -> float:
        """The mean score over the runs (1.0 for no runs)."""
        return sum(r.score for r in self.results) / len(self.results) if self.results else 1.0

    def __getitem__(self, run_id: str) -> TrajectoryMatch:
        for r in self.results:
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)

    def __str__(self) -> str:
        head = (
            f"{len(self.results)} run{'' if len(self.results) == 1 else 's'} against the reference ({self.mode}: {_MODE_TEXT[self.mode]}): "
            f"{self.passed} passed, {len(self.results) - self.passed} failed, mean score {self.score:.2f}"
        )
        rows = []
        for r in self.results:
            d = r.divergence
            rows.append(
                f"  {'pass' if r.passed else 'FAIL'}  {r.score:.2f}  {r.run_id}"
                + ("" if d is None else f"  {d}")
            )
        return "\n".join([head, *rows])

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "runs": len(self.results),
            "passed": self.passed,
            "score": self.score,
            "results": [r.to_dict() for r in self.results],
        }


# ---- reading trajectories ---------------------------------------------------------------------------


def calls_of(trajectory: Trajectory) -> list[Call]:
    """The tool calls of a run (every call it proposed, blocked ones included, with a person's edits
    applied), of its recorded events, or of a written-out list, in order."""
    if isinstance(trajectory, Run):
        trajectory = trajectory.view
    if isinstance(trajectory, RunView):
        return [Call(c.tool, dict(c.args), c.call_id) for c in trajectory.calls(include_blocked=True)]
    if isinstance(trajectory, str | bytes | Mapping):
        raise TypeError(
            f"a trajectory is a Run or a list of calls or events, got {type(trajectory).__name__}"
        )
    calls: list[Call] = []
    at: dict[str, int] = {}  # call id -> index, so re-decided calls count once and edits find their call
    for item in trajectory:
        kind, data = _event_parts(item)
        if kind == "tool_call":
            cid = str(data.get("call_id") or "")
            if cid and cid in at:
                continue
            if cid:
                at[cid] = len(calls)
            calls.append(Call(str(data.get("tool")), _args(data.get("args")), cid))
        elif kind == "human":
            cid = str(data.get("call_id") or "")
            if data.get("action") == "edit" and cid in at:
                i = at[cid]
                calls[i] = dataclasses.replace(calls[i], args=_args(data.get("args")))
        elif kind is None and not isinstance(item, Event):
            calls.append(as_call(item, reference=False))
    return calls


def as_call(item: CallLike, *, reference: bool = True) -> Call:
    """One written-out call as a `Call`. In a reference, a bare tool name means "any arguments"."""
    if isinstance(item, Call):
        return item
    if isinstance(item, ToolCall):
        return Call(item.tool, dict(item.args), item.call_id)
    if isinstance(item, str):
        return Call(item, _ANY_ARGS if reference else {})
    if isinstance(item, Mapping):
        tool = item.get("tool", item.get("name"))
        if not isinstance(tool, str):
            raise TypeError(f"a call needs a 'tool' (or 'name'), got {dict(item)!r}")
        raw = item.get("args", item.get("arguments"))
        if raw is None and reference and "args" not in item and "arguments" not in item:
            return Call(tool, _ANY_ARGS, str(item.get("id") or ""))
        return Call(tool, _args(raw), str(item.get("id") or ""))
    if isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str):
        return Call(item[0], _args(item[1]))
    raise TypeError(f"not a tool call: {item!r} (use Call, ('tool', {{args}}), 'tool' or a dict)")


def _event_parts(item: object) -> tuple[str | None, Mapping[str, Any]]:
    """(event type, data) for a recorded event, an event dict or an exported step; (None, {}) otherwise.

    Non-call events (user, result, end...) come back with their type so the caller skips them.
    """
    if isinstance(item, Event):
        return item.type, item.data
    if not isinstance(item, Mapping):
        return None, {}
    if isinstance(item.get("type"), str) and isinstance(item.get("data"), Mapping):
        return item["type"], item["data"]
    if any(k in item for k in ("user", "model", "result", "end")):
        return "other", {}  # an exported step that is not a call
    if "call" in item:  # an exported step: {"call": tool, "id": ..., "args": ...}
        return "tool_call", {"tool": item["call"], "call_id": item.get("id"), "args": item.get("args")}
    if "human" in item:
        return "human", {"call_id": item["human"], "action": item.get("action"), "args": item.get("args")}
    return None, {}


def _args(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, Mapping):
        return {str(k): v for k, v in raw.items()}
    raise TypeError(f"a call's args must be a mapping, got {type(raw).__name__}")


# ---- matching -----------------------------------------------------------------------------------------


def match_trajectory(
    actual: Trajectory,
    reference: Iterable[CallLike],
    mode: Mode = "strict",
    args: Mapping[str, ArgMatcher] | None = None,
    *,
    run_id: str | None = None,
) -> TrajectoryMatch:
    """Compare a run's tool calls with a reference; the result says whether, how well and where.

    `args` maps an argument name (or "tool.argument", which wins) to a matcher for every call: "exact",
    IGNORE, or `fn(actual_value, expected_value) -> bool` (expected is None when the reference call
    does not name the argument). Unmatched argument names on either side are differences.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    matchers = dict(args or {})
    for key, m in matchers.items():
        if not (m == "exact" or m is IGNORE or callable(m)):
            raise TypeError(f"args[{key!r}] must be 'exact', IGNORE or a callable, got {m!r}")
    if run_id is None and isinstance(actual, Run):
        run_id = actual.run_id
    got = tuple(calls_of(actual))
    ref = tuple(as_call(c) for c in reference)
    why = [[_mismatch(g, r, matchers) for r in ref] for g in got]
    if mode == "strict":
        return _strict(got, ref, why, run_id)
    return _unordered(mode, got, ref, why, run_id)


def assert_trajectory(
    actual: Trajectory,
    reference: Iterable[CallLike],
    mode: Mode = "strict",
    args: Mapping[str, ArgMatcher] | None = None,
) -> TrajectoryMatch:
    """Assert a run's tool calls match the reference (see `match_trajectory`); the message shows every
    step and where the run left the reference. Returns the match when it passes."""
    __tracebackhide__ = True  # pytest shows the test's line, not this function's
    result = match_trajectory(actual, reference, mode, args)
    if not result.passed:
        raise AssertionError(result.explain())
    return result


def evaluate(
    runs: TraceStore | str | os.PathLike[str] | Mapping[str, Trajectory] | Iterable[Run | Sequence[Event]],
    reference: Iterable[CallLike] | Mapping[str, Iterable[CallLike]],
    mode: Mode = "strict",
    args: Mapping[str, ArgMatcher] | None = None,
) -> Evaluation:
    """Score recorded (or live) runs against a reference trajectory, or one per run id (a mapping;
    runs it does not name are left out). `runs`: a store, a `.db`/`.jsonl` path, {run_id: trajectory},
    or Runs or event lists."""
    named: list[tuple[str, Trajectory]]
    if isinstance(runs, TraceStore | str | os.PathLike):
        named = list(recorded_runs(runs).items())
    elif isinstance(runs, Mapping):
        named = [(str(k), v) for k, v in runs.items()]
    else:
        named = [(_run_name(r, i), r) for i, r in enumerate(runs)]
    results = []
    for name, trajectory in named:
        if isinstance(reference, Mapping):
            if name not in reference:
                continue
            ref = reference[name]
        else:
            ref = reference
        results.append(match_trajectory(trajectory, list(ref), mode, args, run_id=name))
    return Evaluation(mode, tuple(results))


def _run_name(run: Run | Sequence[Event], i: int) -> str:
    if isinstance(run, Run):
        return run.run_id
    first = run[0] if run else None
    return first.run_id if isinstance(first, Event) else f"run {i}"


def _strict(
    got: tuple[Call, ...], ref: tuple[Call, ...], why: list[list[str | None]], run_id: str | None
) -> TrajectoryMatch:
    out: list[Divergence] = []
    matched: list[int | None] = []
    for i in range(max(len(got), len(ref))):
        g = got[i] if i < len(got) else None
        r = ref[i] if i < len(ref) else None
        if g is None:
            out.append(Divergence(None, i, r, None, "the run made no call here"))
            continue
        reason = why[i][i] if r is not None else None
        matched.append(i if r is not None and reason is None else None)
        if r is None:
            out.append(Divergence(i, None, None, g, "not in the reference (it ends before this step)"))
        elif reason is not None:
            out.append(Divergence(i, i, r, g, reason))
    # Score: calls matched in order (longest common subsequence), so one extra call early on does not
    # zero a run that otherwise follows the reference.
    longest = max(len(got), len(ref))
    score = _lcs(why, len(got), len(ref)) / longest if longest else 1.0
    return TrajectoryMatch("strict", not out, score, got, ref, tuple(out), run_id, tuple(matched))


def _lcs(why: list[list[str | None]], n: int, m: int) -> int:
    prev = [0] * (m + 1)
    for i in range(n):
        row = [0] * (m + 1)
        for j in range(m):
            row[j + 1] = prev[j] + 1 if why[i][j] is None else max(prev[j + 1], row[j])
        prev = row
    return prev[m]


def _unordered(
    mode: Mode, got: tuple[Call, ...], ref: tuple[Call, ...], why: list[list[str | None]], run_id: str | None
) -> TrajectoryMatch:
    owner = _max_matching(why, len(got), len(ref))  # ref index -> run step
    matched: list[int | None] = [None] * len(got)
    for j, i in enumerate(owner):
        if i is not None:
            matched[i] = j
    extra = [i for i in range(len(got)) if matched[i] is None]
    missing = [j for j in range(len(ref)) if owner[j] is None]
    # Pair each missing reference call with an unmatched run call of the same tool, in order: the
    # message then says which arguments differ, not "one missing, one extra".
    out: list[Divergence] = []
    spare = list(extra)
    for j in missing:
        i = next((i for i in spare if got[i].tool == ref[j].tool), None)
        if i is not None:
            spare.remove(i)
            out.append(Divergence(i, j, ref[j], got[i], why[i][j] or "differs"))
        elif mode in ("unordered", "superset"):
            out.append(Divergence(None, j, ref[j], None, "the run never made this call"))
    if mode in ("unordered", "subset"):
        out.extend(Divergence(i, None, None, got[i], "not in the reference") for i in spare)
    out.sort(key=lambda d: (d.step is None, d.step or 0, d.ref_index or 0))
    n = len(ref) - len(missing)
    if mode == "unordered":
        passed, longest = not extra and not missing, max(len(got), len(ref))
        score = n / longest if longest else 1.0
    elif mode == "subset":
        passed, score = not extra, (n / len(got) if got else 1.0)
    else:
        passed, score = not missing, (n / len(ref) if ref else 1.0)
    return TrajectoryMatch(mode, passed, score, got, ref, tuple(out), run_id, tuple(matched))


def _max_matching(why: list[list[str | None]], n: int, m: int) -> list[int | None]:
    """A maximum matching of run steps to reference calls (augmenting paths; trajectories are short).

    Steps are tried in order against reference calls in order, so an in-order run matches in order.
    """
    owner: list[int | None] = [None] * m

    def place(i: int, seen: set[int]) -> bool:
        for j in range(m):
            if why[i][j] is None and j not in seen:
                seen.add(j)
                k = owner[j]
                if k is None or place(k, seen):
                    owner[j] = i
                    return True
        return False

    for i in range(n):
        place(i, set())
    return owner


def _mismatch(got: Call, want: Call, matchers: Mapping[str, ArgMatcher]) -> str | None:
    """Why `got` does not match the reference call `want` (None when it does)."""
    if got.tool != want.tool:
        return f"expected {want.tool}, got {got.tool}"
    if want.args is _ANY_ARGS:
        return None
    problems: list[str] = []
    for key in dict.fromkeys([*want.args, *got.args]):
        m = matchers.get(f"{got.tool}.{key}", matchers.get(key, "exact"))
        expected = want.args.get(key, _MISSING)
        have = got.args.get(key, _MISSING)
        if m is IGNORE or expected is IGNORE:
            continue
        if have is _MISSING:
            problems.append(f"{key} missing (expected {_show(expected)})")
        elif callable(m):
            ok = _holds(m, have, None if expected is _MISSING else expected)
            if ok is not True:
                problems.append(f"{key}={_show(have)} rejected by {_show(m)}" + (f" ({ok})" if ok else ""))
        elif expected is _MISSING:
            problems.append(f"{key}={_show(have)} is not in the reference")
        elif not _same(have, expected):
            problems.append(f"{key}: expected {_show(expected)}, got {_show(have)}")
    return "; ".join(problems) or None


def _same(have: Any, expected: Any) -> bool:
    """Equality with the reference's matchers applied inside containers; True is not 1 here."""
    if expected is IGNORE:
        return True
    if callable(expected) and not isinstance(expected, type):
        return _holds(expected, have) is True
    if isinstance(expected, Mapping):
        return (
            isinstance(have, Mapping)
            and set(have) == set(expected)
            and all(_same(have[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list | tuple):
        return (
            isinstance(have, list | tuple)
            and len(have) == len(expected)
            and all(_same(h, e) for h, e in zip(have, expected, strict=True))
        )
    if isinstance(have, bool) or isinstance(expected, bool):
        return type(have) is type(expected) and have == expected
    try:
        return bool(have == expected)
    except Exception:
        return False


def _holds(fn: Callable[..., Any], *values: Any) -> bool | str:
    """A user's matcher, applied; its exception becomes the reason (a test should say why, not crash)."""
    try:
        return bool(fn(*values))
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def _show(value: Any) -> str:
    if value is _MISSING:
        return "nothing"
    if callable(value) and not isinstance(value, type):
        return str(getattr(value, "__name__", None) or repr(value))
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _call_dict(call: Call | None) -> dict[str, Any] | None:
    if call is None:
        return None
    args = None if call.args is _ANY_ARGS else {k: _json_value(v) for k, v in call.args.items()}
    return {"tool": call.tool, "args": args, "id": call.id or None}


def _json_value(value: Any) -> Any:
    # Matchers in a reference have no JSON form; their names stand in for them.
    return _show(value) if value is IGNORE or (callable(value) and not isinstance(value, type)) else value
