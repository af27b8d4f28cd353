"""Replay: re-decide recorded runs under another policy and count what would change.

Each recorded run is fed, event by event, into a fresh `Run` of the new policy over an in-memory store
(never the user's store), and every decision is compared with the recorded one. Runs stream one at a
time: memory grows with the longest run, not with the number of runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ._errors import HeadwayError
from ._policy import Policy
from ._run import Run
from ._store import MemoryStore, TraceStore
from ._types import ACTIONS, Action, Decision, Event
from .traces import _events

__all__ = ["Change", "ReplayResult", "RunDiff", "Source", "Tally", "iter_replay", "replay"]

Source = TraceStore | str | os.PathLike[str] | Iterable[Event]
# Where a compared decision was taken: on a proposed call, on its result, after a person's action, on a
# model turn, or on the final answer.
Where = Literal["call", "result", "human", "model", "end"]
STAGES: tuple[Where, ...] = ("call", "result", "human", "model", "end")
# A change is named after the new decision: what the new policy would now do where the old one did not.
CATEGORY: Mapping[Action, str] = {
    "allow": "newly_allowed",
    "block": "newly_blocked",
    "escalate": "newly_escalated",
    "clarify": "newly_clarify",
    "stop": "newly_stopped",
}
CATEGORIES: tuple[str, ...] = tuple(CATEGORY[a] for a in ("block", "allow", "escalate", "clarify", "stop"))
# Changes no finding explains: an approval rule (it escalates without one), or nothing recorded.
APPROVAL_RULE = "(approval rule)"
NO_CLASS = "(no finding)"
RUN_EXAMPLES = 20
TOTAL_EXAMPLES = 5  # per category
RUN_NOTES = 20
TEXT_RUNS = 10  # changed runs (and notes) shown one by one in the text report

# Called after each replayed tool call with the new run, the call id and its new decision (the sweep
# reads the call's findings and approval condition there, once per run).
OnCall = Callable[[Run, str, Decision], None]


@dataclass(frozen=True, slots=True)
class Change:
    """One decision the new policy takes differently: where, old -> new, the new reason and its classes.

    `kinds` are the failure classes behind the change (most severe first): findings the new decision
    has and the old one lacks, else those the old one had and the new one no longer has.
    """

    run_id: str
    stage: Where
    old: Action
    new: Action
    reason: str
    kinds: tuple[str, ...]
    call_id: str | None = None
    tool: str | None = None
    seq: int = 0

    @property
    def category(self) -> str:
        return CATEGORY[self.new]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "call_id": self.call_id,
            "tool": self.tool,
            "stage": self.stage,
            "seq": self.seq,
            "old": self.old,
            "new": self.new,
            "category": self.category,
            "kinds": list(self.kinds),
            "reason": self.reason,
        }

    def __str__(self) -> str:
        where = " ".join(x for x in (self.run_id, self.call_id, self.tool) if x)
        stage = "" if self.stage == "call" else f" ({self.stage})"
        kinds = f" [{', '.join(self.kinds)}]" if self.kinds else ""
        return f"{where}{stage}: {self.old} -> {self.new}{kinds}" + (
            f": {self.reason}" if self.reason else ""
        )


@dataclass(slots=True)
class Tally:
    """Compared and changed decisions, counted by category, transition, failure class and stage."""

    compared: int = 0
    changed: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    by_stage: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def n_changed(self) -> int:
        return sum(self.changed.values())

    def add(self, change: Change) -> None:
        self.changed[change.category] += 1
        self.transitions[f"{change.old} -> {change.new}"] += 1
        unexplained = APPROVAL_RULE if "escalate" in (change.old, change.new) else NO_CLASS
        for kind in change.kinds or (unexplained,):
            self.by_kind.setdefault(kind, Counter())[change.category] += 1
        self.by_stage.setdefault(change.stage, Counter())[change.category] += 1

    def merge(self, other: Tally) -> None:
        self.compared += other.compared
        self.changed.update(other.changed)
        self.transitions.update(other.transitions)
        for kind, counts in other.by_kind.items():
            self.by_kind.setdefault(kind, Counter()).update(counts)
        for stage, counts in other.by_stage.items():
            self.by_stage.setdefault(stage, Counter()).update(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "changed": self.n_changed,
            **{c: self.changed.get(c, 0) for c in CATEGORIES},
            "transitions": dict(sorted(self.transitions.items(), key=lambda kv: (-kv[1], kv[0]))),
            "by_kind": {k: _ordered(v) for k, v in sorted(self.by_kind.items())},
            "by_stage": {s: _ordered(self.by_stage[s]) for s in STAGES if s in self.by_stage},
        }

    def summary(self) -> str:
        """ "2 newly blocked, 1 newly escalated" (or "no change")."""
        parts = [f"{self.changed[c]} {c.replace('_', ' ')}" for c in CATEGORIES if self.changed.get(c)]
        return ", ".join(parts) or "no change"


def _ordered(counts: Counter[str]) -> dict[str, int]:
    return {c: counts[c] for c in CATEGORIES if counts.get(c)}


@dataclass(slots=True)
class RunDiff:
    """What the new policy changes in one recorded run (examples and notes are capped)."""

    run_id: str
    tally: Tally = field(default_factory=Tally)
    examples: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    n_notes: int = 0

    @property
    def changed(self) -> bool:
        return self.tally.n_changed > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            **self.tally.to_dict(),
            "examples": [c.to_dict() for c in self.examples],
            "notes": list(self.notes),
            "n_notes": self.n_notes,
        }


@dataclass(slots=True)
class ReplayResult:
    """Recorded runs re-decided under a policy: per-run diffs, totals, and a few examples per category."""

    policy: str
    fingerprint: str
    runs: list[RunDiff] = field(default_factory=list)
    total: Tally = field(default_factory=Tally)
    examples: list[Change] = field(default_factory=list)
    n_notes: int = 0

    @property
    def changed_runs(self) -> list[RunDiff]:
        return [r for r in self.runs if r.changed]

    def add(self, diff: RunDiff) -> None:
        self.runs.append(diff)
        self.total.merge(diff.tally)
        self.n_notes += diff.n_notes
        for change in diff.examples:
            if sum(e.category == change.category for e in self.examples) < TOTAL_EXAMPLES:
                self.examples.append(change)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": {"name": self.policy, "fingerprint": self.fingerprint},
            "runs_replayed": len(self.runs),
            "runs_changed": len(self.changed_runs),
            "total": self.total.to_dict(),
            "examples": [c.to_dict() for c in self.examples],
            "notes": self.n_notes,
            "runs": [r.to_dict() for r in self.runs],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, default=str)

    def to_text(self) -> str:
        """A report for a terminal: totals, transitions and failure classes, then the changed runs with
        their examples (or, past a few runs, examples per category and one line per changed run)."""
        t = self.total
        changed = self.changed_runs
        lines = [
            f"replay under policy {self.policy!r} ({self.fingerprint}): {_plural(len(self.runs), 'run')}, "
            f"{len(changed)} changed; {_plural(t.compared, 'decision')} compared, {t.n_changed} changed",
            f"total: {t.summary()}",
        ]
        if t.transitions:
            lines.append("transitions (old -> new):")
            lines += [f"  {k:<22} {n}" for k, n in t.to_dict()["transitions"].items()]
        if t.by_kind:
            lines.append("by failure class:")
            for kind, counts in sorted(t.by_kind.items()):
                shown = ", ".join(f"{n} {c.replace('_', ' ')}" for c, n in _ordered(counts).items())
                lines.append(f"  {kind:<22} {shown}")
        if len(changed) <= TEXT_RUNS:
            for r in changed:
                lines.append(f"run {r.run_id}: {r.tally.summary()}")
                lines += [f"  {c}" for c in r.examples]
                if r.tally.n_changed > len(r.examples):
                    lines.append(f"  ... and {r.tally.n_changed - len(r.examples)} more")
        else:
            lines.append("examples:")
            lines += [f"  {c}" for c in self.examples]
            lines.append("changed runs:")
            lines += [f"  {r.run_id}: {r.tally.summary()}" for r in changed[:TEXT_RUNS]]
            lines.append(f"  ... and {len(changed) - TEXT_RUNS} more (--json lists them all)")
        unchanged = len(self.runs) - len(changed)
        if unchanged:
            lines.append(f"{_plural(unchanged, 'run')} unchanged")
        if self.n_notes:
            lines.append(f"notes ({self.n_notes}):")
            lines += [f"  {r.run_id}: {n}" for r in self.runs for n in r.notes][:TEXT_RUNS]
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---- the engine ---------------------------------------------------------------------------------------


class _Clock:
    """The replay's policy clock: the recorded time of the event being replayed (checks that read
    `view.now` see the time the run happened, not the time of the replay)."""

    def __init__(self) -> None:
        self.ts = 0.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.ts, UTC)


def _classes(old: Decision, new: Decision) -> tuple[str, ...]:
    """The failure classes behind a change: findings the new decision has and the old lacks; else those
    it no longer has (a newly allowed call); else whatever either decision rests on."""

    def active(d: Decision) -> set[tuple[str, str]]:
        return {(f.check, f.kind) for f in d.findings if f.severity != "note"}

    now, was = active(new), active(old)
    for d, keys in ((new, now - was), (old, was - now), (new, now), (old, was)):
        if keys:
            kinds = {k for _, k in keys}
            return tuple(k for k in d.kinds if k in kinds)  # most severe first
    return ()


def _old_decision(data: Mapping[str, Any]) -> Decision | None:
    raw = data.get("decision")
    if not isinstance(raw, Mapping):
        return None
    try:
        d = Decision.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None
    return d if d.action in ACTIONS else None


class _RunReplay:
    """One recorded run (by id) fed into fresh Runs of the new policy; a new Run after each `end`."""

    def __init__(self, policy: Policy, run_id: str, on_call: OnCall | None) -> None:
        self.policy = policy
        self.run_id = run_id
        self.on_call = on_call
        self.diff = RunDiff(run_id)
        self.run: Run | None = None

    def _current(self, ev: Event) -> Run:
        if self.run is None or self.run.ended:
            meta = ev.data.get("metadata") if ev.type == "start" else None
            self.run = Run(
                self.policy, self.run_id, MemoryStore(), metadata=meta if isinstance(meta, Mapping) else None
            )
        return self.run

    def note(self, seq: int, text: str) -> None:
        self.diff.n_notes += 1
        if len(self.diff.notes) < RUN_NOTES:
            self.diff.notes.append(f"event {seq}: {text}")

    def compare(self, ev: Event, stage: Where, new: Decision, call_id: str | None, tool: str | None) -> None:
        old = _old_decision(ev.data)
        if old is None:
            self.note(ev.seq, f"the recorded {ev.type} event has no readable decision; not compared")
            return
        self.diff.tally.compared += 1
        if old.action == new.action:
            return
        reason = new.reason if new.action != "allow" else (new.reason or f"was: {old.reason}")
        change = Change(
            self.run_id, stage, old.action, new.action, reason, _classes(old, new), call_id, tool, ev.seq
        )
        self.diff.tally.add(change)
        if len(self.diff.examples) < RUN_EXAMPLES:
            self.diff.examples.append(change)

    def feed(self, ev: Event) -> None:
        d = ev.data
        if ev.type in ("start", "span"):
            if ev.type == "start" and (self.run is None or self.run.ended):
                self._current(ev)
            return
        run = self._current(ev)
        if ev.type == "user":
            run.user(str(d.get("text") or ""))
        elif ev.type == "model":
            self._model(ev, run)
        elif ev.type == "tool_call":
            self._tool_call(ev, run)
        elif ev.type == "tool_result":
            cid = str(d.get("call_id"))
            tool = d.get("tool")
            # Always the recorded result, even for a call the new policy would not have let run: the
            # trajectory continues as recorded (that call is already counted as changed).
            new = run.tool_result(cid, d.get("output"), error=d.get("error"), tool=tool)
            self.compare(ev, "result", new, cid, str(tool) if tool else None)
        elif ev.type == "human":
            self._human(ev, run)
        elif ev.type == "end":
            answer = d.get("final_answer")
            self.compare(ev, "end", run.end(None if answer is None else str(answer)), None, None)

    def _model(self, ev: Event, run: Run) -> None:
        d = ev.data
        old = _old_decision(d)
        calls = d.get("tool_calls")
        tokens = d.get("tokens")
        new = run.model(
            str(d.get("text") or ""),
            [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else None,
            tokens=tokens if isinstance(tokens, int) else None,
            # A final answer is only recognisable when its claims were checked (stage "end"); a final
            # turn that was allowed replays as an ordinary turn.
            final=old is not None and old.stage == "end",
        )
        self.compare(ev, "model", new, None, None)

    def _tool_call(self, ev: Event, run: Run) -> None:
        d = ev.data
        cid, tool = str(d.get("call_id")), str(d.get("tool"))
        known = run.view.call(cid)
        if known is not None and known.args == (d.get("args") or {}) and run.decision(cid) is not None:
            # Recorded twice: a restart escalated a call whose outcome it could not know. A replay
            # has no crash to recover from.
            self.note(ev.seq, f"{cid} was decided again after a restart; not replayed")
            return
        # The unparsed text when the call's arguments were not an object: parsing it again finds
        # the same problems.
        new = run.tool_call(tool, d["raw_args"] if "raw_args" in d else d.get("args"), cid)
        if self.on_call is not None:
            self.on_call(run, cid, new)
        self.compare(ev, "call", new, cid, tool)

    def _human(self, ev: Event, run: Run) -> None:
        d = ev.data
        cid, action = str(d.get("call_id")), d.get("action")
        pending = run.view.call(cid)
        if pending is None or pending.action not in ("escalate", "clarify"):
            state = "never made" if pending is None else f"decided {pending.action!r}"
            self.note(
                ev.seq, f"the recorded {action} on {cid} was not replayed: under this policy it was {state}"
            )
            return
        try:
            new = run.resolve(
                cid,
                action,  # type: ignore[arg-type]  # checked by resolve (validate_decision)
                by=str(d.get("by") or "replay"),
                message=d.get("message"),
                args=d.get("args") if action == "edit" else None,
                text=d.get("text") if action == "answer" else None,
            )
        except HeadwayError as e:
            self.note(ev.seq, f"the recorded {action} on {cid} could not be replayed: {e}")
            return
        self.compare(ev, "human", new, cid, pending.tool)


def _stream(source: Source, runs: Collection[str] | None) -> Iterator[Event]:
    if isinstance(source, str | os.PathLike | TraceStore):
        return _events(source, runs)
    events = iter(source)
    return events if runs is None else (e for e in events if e.run_id in runs)


def need_policy(policy: object) -> None:
    if not isinstance(policy, Policy):
        raise TypeError(
            f"replay and sweep need a Policy (e.g. Policy.load(path)), got {type(policy).__name__}"
        )


def _clocked(policy: Policy, clock: _Clock) -> Policy:
    """The policy as given when it has its own clock; otherwise the same policy on the recorded clock."""
    return policy if policy.now is not None else dataclasses.replace(policy, now=clock)


def iter_replay(
    source: Source,
    policy: Policy,
    *,
    runs: Collection[str] | None = None,
    on_call: OnCall | None = None,
) -> Iterator[RunDiff]:
    """Re-decide each recorded run under `policy`, one run at a time; yields each run's diff.

    The events of one run must come together, in order (as stores and `export_jsonl` give them).
    """
    need_policy(policy)
    clock = _Clock()
    replayed = _clocked(policy, clock)
    wanted = None if runs is None else frozenset(runs)
    done: set[str] = set()
    for run_id, events in itertools.groupby(_stream(source, wanted), key=lambda e: e.run_id):
        if run_id in done:
            raise HeadwayError(
                f"the events of run {run_id!r} are not together: replay reads one run at a time, in "
                "order (as trace stores and `headway.traces.export_jsonl` write them)"
            )
        done.add(run_id)
        one = _RunReplay(replayed, run_id, on_call)
        last = -1
        for ev in events:
            if ev.seq <= last:
                raise HeadwayError(f"run {run_id!r}: event {ev.seq} comes after event {last}: out of order")
            last = ev.seq
            clock.ts = ev.ts
            one.feed(ev)
        yield one.diff


def replay(
    source_or_events: Source,
    policy: Policy,
    *,
    runs: Collection[str] | None = None,
) -> ReplayResult:
    """Re-decide recorded runs under another policy and count what would change.

    `source_or_events`: a trace store, a `.db` or `.jsonl` path, or an iterable of events; `runs`: only
    these run ids. Each run is fed into a fresh Run of `policy` over an in-memory store: user and model
    turns as recorded, every tool call decided anew and compared with its recorded decision, every
    recorded result fed back (so the trajectory continues as recorded), a person's recorded action
    applied where the new run also waits for a person, and the final answer checked again.
    """
    need_policy(policy)
    result = ReplayResult(policy.name, policy.fingerprint)
    for diff in iter_replay(source_or_events, policy, runs=runs):
        result.add(diff)
    return result
