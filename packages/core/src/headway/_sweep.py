"""Threshold sweep: how many unsafe actions each (tolerate, escalate) pair lets through, against how much
work it keeps automated, measured on recorded runs labelled by people.

Each run is replayed once under the policy; every guarded call's findings, tool risk and approval rule
are kept for that run only, and each operating point re-decides them with the gate's arithmetic
(`gate_action`), without running a check again.
"""

from __future__ import annotations

import errno
import html
import json
import os
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ._errors import HeadwayError
from ._escalations import EscalationStore, SQLiteEscalations, Status
from ._policy import Policy, Thresholds
from ._replay import OnCall, Source, _plural, iter_replay, need_policy
from ._run import Run, gate_action
from ._store import SQLiteStore
from ._types import ACTIONS, Action, Decision, Finding, Risk
from .traces import _is_jsonl

__all__ = [
    "Label",
    "LabelError",
    "OperatingPoint",
    "SweepResult",
    "read_labels",
    "store_labels",
    "sweep",
    "thresholds_grid",
]

Label = Literal["safe", "unsafe"]
LabelKey = tuple[str, str]  # (run_id, call_id)
# A person's outcome on an escalated call, as a label on the call as it was proposed.
OUTCOME_LABEL: Mapping[Status, Label] = {"approved": "safe", "rejected": "unsafe", "edited": "unsafe"}
_EVERY = 2**62  # `limit` for "all of them"
# Without a person: the call runs, or the agent is told no, or the run ends; clarify and escalate wait.
_AUTOMATED: frozenset[Action] = frozenset({"allow", "block", "stop"})
MAX_GRID = 101


class LabelError(HeadwayError):
    """A labels file headway cannot read; the message names the file and the line."""


def read_labels(path: str | os.PathLike[str]) -> dict[LabelKey, Label]:
    """Labels from JSON Lines: one `{"run_id": ..., "call_id": ..., "label": "safe" | "unsafe"}` per line.

    Blank lines are skipped; other keys (a note, say) are ignored; a later line for the same call wins.
    """
    p = Path(path)
    if not p.is_file():
        raise LabelError(f"no labels file at {p}")
    out: dict[LabelKey, Label] = {}
    with p.open("rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{p}, line {n}"
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as e:
                raise LabelError(f"{where}: not valid JSON ({e})") from None
            if not isinstance(obj, dict):
                raise LabelError(
                    f'{where}: expected an object {{"run_id", "call_id", "label"}}, got {type(obj).__name__}'
                )
            missing = [k for k in ("run_id", "call_id", "label") if k not in obj]
            if missing:
                raise LabelError(f"{where}: missing {', '.join(repr(k) for k in missing)}")
            run_id, call_id, label = obj["run_id"], obj["call_id"], obj["label"]
            for key, value in (("run_id", run_id), ("call_id", call_id)):
                if not isinstance(value, str) or not value:
                    raise LabelError(f"{where}: {key!r} must be a non-empty string, got {value!r}")
            if label not in ("safe", "unsafe"):
                raise LabelError(f'{where}: "label" must be "safe" or "unsafe", got {label!r}')
            out[(run_id, call_id)] = label
    return out


def store_labels(escalations: EscalationStore) -> dict[LabelKey, Label]:
    """Labels from the people who decided escalations: approved = safe, rejected = unsafe, edited =
    unsafe as proposed (answered clarifications say nothing about safety and give no label).

    A call escalated again after an edit has several records; its first decided one is about the call as
    the agent proposed it, which is what a label is for.
    """
    decided = [e for status in OUTCOME_LABEL for e in escalations.list(status=status, limit=_EVERY)]
    decided.sort(key=lambda e: (e.created_at, e.id))
    out: dict[LabelKey, Label] = {}
    for e in decided:
        out.setdefault((e.run_id, e.call_id), OUTCOME_LABEL[e.status])
    return out


def thresholds_grid(n: int, current: Thresholds | None = None) -> list[Thresholds]:
    """Every (tolerate, escalate) pair with tolerate <= escalate over n evenly spaced values in [0, 1],
    plus `current`."""
    if not 2 <= n <= MAX_GRID:
        raise HeadwayError(f"the grid needs 2 to {MAX_GRID} values per threshold, got {n}")
    values = [round(i / (n - 1), 6) for i in range(n)]
    pairs = {(t, e) for t in values for e in values if t <= e}
    if current is not None:
        pairs.add((current.tolerate, current.escalate))
    return [Thresholds(t, e) for t, e in sorted(pairs)]


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """One (tolerate, escalate) pair and what it does to the labelled and the write calls.

    `unsafe_allowed`: labelled-unsafe calls allowed without a person. `automation_kept`: the share of
    labelled-safe calls allowed without a person (None without safe labels). `writes_automated`: the
    share of write calls decided without a person (allowed, blocked or stopped). `escalations`: calls
    that wait for a person (escalate or clarify).
    """

    tolerate: float
    escalate: float
    unsafe_allowed: int
    safe_allowed: int
    automation_kept: float | None
    writes_automated: float | None
    escalations: int
    actions: Mapping[Action, int]
    current: bool = False

    @property
    def automation(self) -> float:
        """What "most automation" ranks by: labelled-safe calls kept, else write calls automated."""
        if self.automation_kept is not None:
            return self.automation_kept
        return self.writes_automated if self.writes_automated is not None else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tolerate": self.tolerate,
            "escalate": self.escalate,
            "unsafe_allowed": self.unsafe_allowed,
            "safe_allowed": self.safe_allowed,
            "automation_kept": self.automation_kept,
            "writes_automated": self.writes_automated,
            "escalations": self.escalations,
            "actions": {a: self.actions.get(a, 0) for a in ACTIONS},
            "current": self.current,
        }


@dataclass(frozen=True)
class SweepResult:
    """Operating points over the threshold grid, and the cheapest one that lets no unsafe call through."""

    policy: str
    fingerprint: str
    runs: int
    calls: int
    writes: int
    labelled_safe: int
    labelled_unsafe: int
    unmatched_labels: int
    points: tuple[OperatingPoint, ...]
    best: OperatingPoint | None
    current: OperatingPoint

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": {"name": self.policy, "fingerprint": self.fingerprint},
            "runs": self.runs,
            "calls": self.calls,
            "writes": self.writes,
            "labels": {
                "safe": self.labelled_safe,
                "unsafe": self.labelled_unsafe,
                "unmatched": self.unmatched_labels,
            },
            "current": self.current.to_dict(),
            "best": None if self.best is None else self.best.to_dict(),
            "points": [p.to_dict() for p in self.points],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def headline(self) -> str:
        """Two or three lines: what was swept, the current point and the cheapest safe one."""
        lines = [
            f"sweep of policy {self.policy!r} ({self.fingerprint}): {_plural(self.runs, 'run')}, "
            f"{_plural(self.calls, 'call')} ({_plural(self.writes, 'write')}); labels: {self.labelled_safe} safe, {self.labelled_unsafe} unsafe"
            + (f", {self.unmatched_labels} matching no recorded call" if self.unmatched_labels else ""),
            f"current:  {_describe(self.current)}",
        ]
        if self.best is None:
            lines.append("no operating point on this grid lets zero labelled-unsafe calls through")
        else:
            lines.append(f"cheapest with zero unsafe allowed:  {_describe(self.best)}")
        if not self.labelled_unsafe:
            lines.append("(no call is labelled unsafe, so every point allows zero of them)")
        return "\n".join(lines)

    def table(self) -> str:
        """Every operating point, one line each; `*` marks the cheapest safe point, `=` the current one."""
        head = ("tolerate", "escalate", "unsafe allowed", "safe allowed", "writes w/o person", "escalations")
        rows = [
            (*self._cells(p), ("*" if p == self.best else "") + ("=" if p.current else ""))
            for p in self.points
        ]
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        out = [(*head, ""), *rows]
        return "\n".join(
            "  ".join(c.rjust(w) for c, w in zip(r, [*widths, 0], strict=True)).rstrip() for r in out
        )

    def _cells(self, p: OperatingPoint) -> tuple[str, ...]:
        return (
            f"{p.tolerate:g}",
            f"{p.escalate:g}",
            str(p.unsafe_allowed),
            f"{p.safe_allowed}/{self.labelled_safe} {_pct(p.automation_kept)}",
            _pct(p.writes_automated),
            str(p.escalations),
        )

    def plot(self, width: int = 50, height: int = 10) -> str:
        """An ASCII scatter of unsafe allowed (up) against automation kept (right)."""
        top = max((p.unsafe_allowed for p in self.points), default=0)
        rows = min(top, height)
        grid = [[" "] * (width + 1) for _ in range(rows + 1)]
        rank = {" ": 0, "o": 1, "=": 2, "*": 3}
        for p in self.points:
            x = round(p.automation * width)
            y = round(p.unsafe_allowed * rows / top) if top else 0
            mark = "*" if p == self.best else "=" if p.current else "o"
            if rank[mark] > rank[grid[y][x]]:
                grid[y][x] = mark
        label_w = len(str(top))
        lines = ["unsafe allowed"]
        for y in range(rows, -1, -1):
            value = round(y * top / rows) if rows else 0
            lines.append(f"{value:>{label_w}} |" + "".join(grid[y]).rstrip())
        lines.append(" " * label_w + " +" + "-" * (width + 1))
        axis = [" "] * (width + 1)
        for frac, text in ((0.0, "0%"), (0.5, "50%"), (1.0, "100%")):
            at = min(round(frac * width), width + 1 - len(text))
            axis[at : at + len(text)] = text
        lines.append(" " * (label_w + 2) + "".join(axis))
        what = "labelled-safe calls allowed" if self.labelled_safe else "write calls decided"
        lines.append(" " * (label_w + 2) + f"automation kept ({what} without a person)")
        lines.append(" " * (label_w + 2) + "* cheapest with zero unsafe allowed   = current policy   o other")
        return "\n".join(lines)

    def to_text(self) -> str:
        return "\n\n".join((self.headline(), self.table(), self.plot()))

    def to_svg(self, width: int = 560, height: int = 340) -> str:
        """The scatter as a self-contained SVG element (hover a point for its numbers)."""
        left, right, top_m, bottom = 56, 24, 20, 56
        pw, ph = width - left - right, height - top_m - bottom
        top = max((p.unsafe_allowed for p in self.points), default=0) or 1

        def xy(p: OperatingPoint) -> tuple[float, float]:
            return left + p.automation * pw, top_m + ph - p.unsafe_allowed / top * ph

        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="unsafe allowed against automation kept" '
            'font-family="sans-serif" font-size="11">',
            f'<line x1="{left}" y1="{top_m + ph}" x2="{left + pw}" y2="{top_m + ph}" stroke="#333"/>',
            f'<line x1="{left}" y1="{top_m}" x2="{left}" y2="{top_m + ph}" stroke="#333"/>',
        ]
        for i in range(5):
            x = left + pw * i / 4
            parts.append(
                f'<line x1="{x:.1f}" y1="{top_m + ph}" x2="{x:.1f}" y2="{top_m + ph + 4}" stroke="#333"/>'
            )
            parts.append(f'<text x="{x:.1f}" y="{top_m + ph + 16}" text-anchor="middle">{25 * i}%</text>')
        step = max(1, -(-top // 5))
        for v in range(0, top + 1, step):
            y = top_m + ph - v / top * ph
            parts.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left}" y2="{y:.1f}" stroke="#333"/>')
            parts.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{v}</text>')
        what = "labelled-safe calls allowed" if self.labelled_safe else "write calls decided"
        parts.append(
            f'<text x="{left + pw / 2:.1f}" y="{height - 12}" text-anchor="middle">'
            f"automation kept ({what} without a person)</text>"
        )
        parts.append(
            f'<text transform="translate(14 {top_m + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
            "unsafe actions allowed</text>"
        )
        ordered = sorted(self.points, key=lambda p: (p == self.best, p.current))  # marked points on top
        for p in ordered:
            x, y = xy(p)
            if p == self.best:
                style = 'r="7" fill="#1a7f37" stroke="#fff"'
            elif p.current:
                style = 'r="6" fill="none" stroke="#0550ae" stroke-width="2"'
            else:
                style = 'r="4" fill="#8c959f" fill-opacity="0.6"'
            tip = html.escape(_describe(p))
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" {style}><title>{tip}</title></circle>')
        if self.best is not None:
            x, y = xy(self.best)
            anchor = "end" if x > left + pw * 0.7 else "start"
            dx = -10 if anchor == "end" else 10
            parts.append(
                f'<text x="{x + dx:.1f}" y="{y - 10:.1f}" text-anchor="{anchor}" fill="#1a7f37">'
                f"tolerate {self.best.tolerate:g}, escalate {self.best.escalate:g}</text>"
            )
        parts.append("</svg>")
        return "\n".join(parts)

    def to_html(self) -> str:
        """A self-contained page: the headline, the plot (inline SVG) and the table of operating points."""
        e = html.escape
        head = "".join(
            f"<th>{e(h)}</th>"
            for h in (
                "tolerate",
                "escalate",
                "unsafe allowed",
                "safe allowed",
                "writes w/o person",
                "escalations",
                "",
            )
        )
        body = []
        for p in self.points:
            mark = "cheapest safe" if p == self.best else ""
            mark += (" · " if mark and p.current else "") + ("current" if p.current else "")
            cls = ' class="best"' if p == self.best else ' class="current"' if p.current else ""
            cells = (*self._cells(p), mark)
            body.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
        lines = "".join(f"<p>{e(line)}</p>" for line in self.headline().splitlines())
        return (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>headway sweep: {e(self.policy)}</title><style>"
            "body{font-family:sans-serif;margin:2em;color:#1f2328}"
            "table{border-collapse:collapse;margin-top:1em}"
            "td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #d0d7de}"
            "tr.best{background:#dafbe1;font-weight:bold}tr.current{background:#ddf4ff}"
            "</style></head><body>"
            f"<h1>Threshold sweep: {e(self.policy)}</h1>{lines}\n{self.to_svg()}\n"
            f"<table><thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(body) + "\n</tbody></table>"
            "</body></html>\n"
        )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _describe(p: OperatingPoint) -> str:
    return (
        f"tolerate {p.tolerate:g}, escalate {p.escalate:g}: {p.unsafe_allowed} unsafe allowed, "
        f"{_pct(p.automation_kept)} of safe calls and {_pct(p.writes_automated)} of writes without a person, "
        f"{_plural(p.escalations, 'escalation')}"
    )


# ---- the engine ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scored:
    """One guarded call as the gate sees it: what the thresholds apply to, kept for one run only."""

    key: LabelKey
    risk: Risk
    active: tuple[Finding, ...]
    approval: bool


@dataclass(slots=True)
class _Tally:
    unsafe_allowed: int = 0
    safe_allowed: int = 0
    writes_automated: int = 0
    waits: int = 0
    actions: Counter[Action] = field(default_factory=Counter)


def _scorer(into: list[_Scored]) -> OnCall:
    def on_call(run: Run, call_id: str, decision: Decision) -> None:
        call = run.view.call(call_id)
        if call is None:
            return
        resolved = run.policy.resolve(call.tool)
        # The approval rule applies when the findings alone would allow; it depends on the call only.
        approval = bool(resolved.approve_when) and run._approval(call, resolved) is not None
        active = tuple(f for f in decision.findings if f.severity != "note")
        into.append(_Scored((run.run_id, call_id), resolved.risk, active, approval))

    return on_call


def _decide(call: _Scored, th: Thresholds, policy: Policy) -> Action:
    action = gate_action(call.active, call.risk, th, policy.action_for)[0]
    return "escalate" if action == "allow" and call.approval else action


def _sweep(
    sources: Sequence[Source],
    policy: Policy,
    labels: Mapping[LabelKey, Label],
    grid: int,
    runs: Collection[str] | None,
) -> SweepResult:
    need_policy(policy)
    points = thresholds_grid(grid, policy.thresholds)
    tallies = [_Tally() for _ in points]
    n_runs = n_calls = n_writes = 0
    matched: set[LabelKey] = set()
    seen: set[str] = set()  # only kept when `runs` names them: bounded by that list
    for source in sources:
        scored: list[_Scored] = []
        for diff in iter_replay(source, policy, runs=runs, on_call=_scorer(scored)):
            n_runs += 1
            if runs is not None:
                seen.add(diff.run_id)
            for call in scored:
                n_calls += 1
                write = call.risk != "read"
                n_writes += write
                label = labels.get(call.key)
                if label is not None:
                    matched.add(call.key)
                for th, t in zip(points, tallies, strict=True):
                    action = _decide(call, th, policy)
                    t.actions[action] += 1
                    automated = action in _AUTOMATED
                    t.waits += not automated
                    t.writes_automated += write and automated
                    if action == "allow" and label is not None:
                        if label == "unsafe":
                            t.unsafe_allowed += 1
                        else:
                            t.safe_allowed += 1
            scored.clear()  # one run's calls at a time
    if runs is not None:
        missing_runs(runs, seen)
    safe = sum(1 for k in matched if labels[k] == "safe")
    unsafe = len(matched) - safe
    current_th = policy.thresholds
    ops = tuple(
        OperatingPoint(
            th.tolerate,
            th.escalate,
            t.unsafe_allowed,
            t.safe_allowed,
            t.safe_allowed / safe if safe else None,
            t.writes_automated / n_writes if n_writes else None,
            t.waits,
            dict(t.actions),
            current=(th.tolerate, th.escalate) == (current_th.tolerate, current_th.escalate),
        )
        for th, t in zip(points, tallies, strict=True)
    )
    current = next(p for p in ops if p.current)

    def cost(p: OperatingPoint) -> tuple[float, ...]:
        # Most automation, then fewest escalations, then more writes automated, then the smallest move
        # away from the policy's own thresholds.
        moved = abs(p.tolerate - current.tolerate) + abs(p.escalate - current.escalate)
        return (-p.automation, p.escalations, -(p.writes_automated or 0.0), moved, p.tolerate, p.escalate)

    best = min((p for p in ops if p.unsafe_allowed == 0), key=cost, default=None)
    return SweepResult(
        policy.name,
        policy.fingerprint,
        n_runs,
        n_calls,
        n_writes,
        safe,
        unsafe,
        len(labels) - len(matched),
        ops,
        best,
        current,
    )


def missing_runs(wanted: Iterable[str], seen: Collection[str]) -> None:
    """Refuse a run filter naming runs the traces do not hold (a typo would otherwise sweep nothing)."""
    missing = sorted(set(wanted) - set(seen))
    if missing:
        raise HeadwayError(f"no recorded run {', '.join(map(repr, missing))} in the given traces")


def _source_labels(source: Source) -> dict[LabelKey, Label]:
    """The recorded human outcomes of a source that has an escalation store beside its traces."""
    if isinstance(source, EscalationStore):
        return store_labels(source)  # e.g. PostgresStore: traces and escalations in one
    if isinstance(source, SQLiteStore) and str(source.path) != ":memory:":
        path: Path = Path(source.path)
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():  # SQLiteEscalations would create it: a typo must not leave a file behind
            raise FileNotFoundError(errno.ENOENT, "No trace file", str(path))
        if _is_jsonl(path):
            return {}
    else:
        return {}
    escalations = SQLiteEscalations(path)
    try:
        return store_labels(escalations)
    finally:
        escalations.close()


def sweep(
    source: Source,
    policy: Policy,
    *,
    labels: str | os.PathLike[str] | Mapping[LabelKey, Label] | None = None,
    grid: int = 11,
    runs: Collection[str] | None = None,
) -> SweepResult:
    """Sweep `policy`'s thresholds over recorded runs: unsafe actions allowed against automation kept.

    Labels are the human outcomes in the source's escalation store (when it has one) overlaid with
    `labels` (a JSONL file, see `read_labels`, or a mapping {(run_id, call_id): "safe" | "unsafe"}),
    which wins on conflicts. `grid` values per threshold, evenly spaced in [0, 1]; the policy's own
    thresholds are always one of the points.
    """
    return _sweep([source], policy, merged_labels([source], labels), grid, runs)


def merged_labels(
    sources: Iterable[Source], labels: str | os.PathLike[str] | Mapping[LabelKey, Label] | None
) -> dict[LabelKey, Label]:
    """The sources' recorded outcomes, then `labels` over them."""
    out: dict[LabelKey, Label] = {}
    for source in sources:
        out.update(_source_labels(source))
    if isinstance(labels, str | os.PathLike):
        out.update(read_labels(labels))
    elif labels is not None:
        out.update(labels)
    return out
