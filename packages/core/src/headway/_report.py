"""The failure-taxonomy report: one streaming pass over recorded runs that ranks failure classes by
frequency x severity, with decisions per tool, the milestone funnel and example runs per class.

Memory is constant in the number of runs: a run's state lives only until its events end. Reading our own
SQLite store skips `Event` objects and most JSON: SQLite extracts the few fields the report needs.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib
import json
import json.scanner
import os
import re
import sqlite3
import time
import urllib.parse
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._errors import HeadwayError
from ._store import SCHEMA_VERSION, TraceFormatError, TraceStore, is_postgres_dsn, is_postgres_url
from ._types import ACTIONS, KINDS, SEVERITIES, SEVERITY_WEIGHT
from .traces import _is_jsonl, validate_event

__all__ = [
    "MEANINGS",
    "OUTCOMES",
    "ClassRank",
    "Example",
    "FunnelStep",
    "Progress",
    "Report",
    "Source",
    "TimeBucket",
    "ToolStats",
    "report",
]

# The taxonomy of DESIGN.md, shown beside each class so a report reads without the design document.
MEANINGS: Mapping[str, str] = {
    "loop": "the same call, or a short cycle of calls, repeated without new information",
    "stall": "many steps, no new milestone",
    "budget": "a step, time or token budget ran out",
    "invalid_args": "arguments fail schema or bounds",
    "unmet_precondition": "a required earlier step (lookup, authentication, status) is missing",
    "unconfirmed": "a write without the user's explicit yes",
    "ungrounded": "an argument the user never gave and no tool returned: a plausible assumption",
    "ambiguous": "several candidates fit and the agent picked one without asking",
    "silent_tool_error": "a 'successful' result that is wrong: error payload, empty, contradicts the call",
    "ignored_tool_error": "the agent went on as if a failed call had succeeded",
    "repeated_side_effect": "a write repeated that must happen once",
    "policy_violation": "a user-defined rule was broken",
    "unsupported_claim": "the final answer claims an outcome that no tool result supports",
    "abandoned": "the run ended before the milestones it needed; a subtask was left half done",
}
# How a run ended: its end allowed, its end flagged (not allowed), stopped by a decision, waiting for a
# person, idle past `stale_after` without ending (classed `abandoned`), or still open.
OUTCOMES = ("completed", "flagged", "stopped", "waiting", "abandoned", "open")

Source = TraceStore | str | os.PathLike[str]
# progress(source, done, total): every few thousand events; events for stores, bytes for JSONL files.
Progress = Callable[[str, int, int | None], None]

EXAMPLES = 5
STALE_AFTER = 86_400.0
# JSONL lines may come in any order: a run is finished once this many events went by without it (so
# memory stays bounded), or SETTLE events after its `end` (late lines of an ended run still count).
WINDOW = 50_000
SETTLE = 2_000
_PAGE = 2_000
_TICK = 8_192
_DECIDED = frozenset({"tool_call", "tool_result", "human", "model", "end"})
_EVENT_TYPES = frozenset({"start", "user", "model", "tool_call", "tool_result", "human", "end", "span"})
# Keyed by plain str: recorded traces may hold values the Literal types do not know.
_SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
_WEIGHT: dict[str, float] = dict(SEVERITY_WEIGHT.items())
_KIND_INDEX: dict[str, int] = {k: i for i, k in enumerate(KINDS)}
_ABANDONED_WEIGHT = SEVERITY_WEIGHT["medium"]  # the weight the end check gives a run ending short
_BUCKETS = (3_600, 6 * 3_600, 86_400, 7 * 86_400, 30 * 86_400)
_MAX_BUCKETS = 72

# One event as the report reads it: run_id, seq, ts, type, tool, action, findings, milestones, error,
# call_id, human action. findings/milestones are JSON text from SQLite or lists from elsewhere.
_Rec = tuple[str, int, float, str, Any, Any, Any, Any, Any, Any, Any]


# ---- the report ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    """A run that shows a class, with its most severe finding of that class."""

    run_id: str
    severity: str
    message: str


@dataclass(frozen=True, slots=True)
class ClassRank:
    """One failure class: runs that show it (once each), its findings, worst severity, and the score it is
    ranked by: the sum over those runs of the worst severity weight (frequency x severity)."""

    kind: str
    meaning: str
    runs: int
    findings: int
    severity: str
    score: float
    examples: tuple[Example, ...]


@dataclass(frozen=True, slots=True)
class ToolStats:
    """Decisions about one tool: on its proposed calls and on its results, by action; its errors, the
    people's decisions on it, and its findings by class."""

    tool: str
    calls: int
    decisions: dict[str, int]
    results: dict[str, int]
    errors: int
    human: dict[str, int]
    findings: dict[str, int]


@dataclass(frozen=True, slots=True)
class FunnelStep:
    """A milestone: runs that reached it, runs that reached every earlier one but not this one (they
    stalled here), and what those last touched: their last tool call and their last milestone."""

    milestone: str
    reached: int
    stalled: int
    last_tools: tuple[tuple[str, int], ...]
    last_milestones: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class TimeBucket:
    """Runs started in [start, start + bucket) and, per class, how many of them show it."""

    start: float
    runs: int
    classes: dict[str, int]


@dataclass(frozen=True, slots=True)
class Report:
    """Failure classes ranked by frequency x severity, decisions per tool, the milestone funnel (in
    policy order when given, else in the order runs reach them) and failures over time."""

    sources: tuple[str, ...]
    events: int
    runs: int
    first_ts: float | None
    last_ts: float | None
    outcomes: dict[str, int]
    classes: tuple[ClassRank, ...]
    tools: tuple[ToolStats, ...]
    funnel: tuple[FunnelStep, ...]
    through: int  # runs that reached every milestone of the funnel
    bucket_seconds: int
    timeline: tuple[TimeBucket, ...]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def report(
    sources: Source | Iterable[Source],
    *,
    milestones: Sequence[str] | None = None,
    stale_after: float = STALE_AFTER,
    now: float | None = None,
    examples: int = EXAMPLES,
    progress: Progress | None = None,
) -> Report:
    """Read every source once (SQLite trace files, JSONL exports, `postgresql://` DSNs, open stores) and
    build the report; many sources merge (a run id seen in two sources is counted in each).

    `milestones` is the funnel's order (a policy's milestone names); a run that never ended and has been
    idle more than `stale_after` seconds before `now` is `abandoned`. A malformed line or row raises
    `TraceFormatError` naming the file and line (or run and seq).
    """
    if isinstance(sources, str | os.PathLike) or not isinstance(sources, Iterable):
        sources = [sources]
    tally = _Tally(time.time() if now is None else now, stale_after, examples)
    labels: list[str] = []
    for source in sources:
        label, records, ordered = _open(source, progress)
        labels.append(label)
        tally.consume(records, ordered)
    return tally.result(tuple(labels), milestones)


# ---- reading sources ------------------------------------------------------------------------------------


def _open(source: Source, progress: Progress | None) -> tuple[str, Iterator[_Rec], bool]:
    """A label, the records and whether they come grouped by run (stores) or in any order (JSONL)."""
    if isinstance(source, str) and is_postgres_dsn(source):
        label = redact_dsn(source)
        return label, _postgres(source, label, progress), True
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if _is_jsonl(path):
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, "No JSONL trace file", str(path))
            return str(path), _jsonl(path, progress), False
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "No trace database", str(path))
        return str(path), _sqlite(path, progress), True
    return repr(source), _store(source, repr(source), progress, close=False), True


# A keyword DSN's password: `password=secret` or `password = 'it\'s secret'` (libpq's quoting); an
# unterminated quote hides the rest of the DSN.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S+)")


def redact_dsn(dsn: str) -> str:
    """The DSN to show in labels and messages: its password, wherever libpq would read it from, as ***."""
    if not is_postgres_url(dsn):
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is not None:
        userinfo, _, hostport = parts.netloc.rpartition("@")  # hostport as written: [::1]:5432 stays so
        parts = parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:***@{hostport}")
    if parts.query:  # ?password=... works too
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if any(k == "password" for k, _ in query):
            hidden = [(k, "***" if k == "password" else v) for k, v in query]
            parts = parts._replace(query=urllib.parse.urlencode(hidden, safe="*/"))
    return urllib.parse.urlunsplit(parts)


def _postgres(dsn: str, label: str, progress: Progress | None) -> Iterator[_Rec]:
    try:
        # Imported by name: the report works without the PostgreSQL backend and its driver.
        module = importlib.import_module("headway.postgres")
        store: TraceStore = module.PostgresStore(dsn)
    except ImportError as e:
        missing = isinstance(e, ModuleNotFoundError) and e.name == "headway.postgres"
        raise HeadwayError("this headway has no PostgreSQL store" if missing else str(e)) from None
    except Exception as e:  # the driver's errors (no server, bad password) are not ours to name
        raise HeadwayError(f"cannot open the PostgreSQL store {label}: {type(e).__name__}: {e}") from None
    yield from _store(store, label, progress, close=True)


def _store(store: TraceStore, label: str, progress: Progress | None, *, close: bool) -> Iterator[_Rec]:
    try:
        for n, e in enumerate(store.iter_events(), 1):
            yield _record(e.run_id, e.seq, e.ts, e.type, e.data)
            if progress is not None and n % _TICK == 0:
                progress(label, n, None)
    finally:
        if close:
            store.close()


def _record(run_id: str, seq: int, ts: float, type_: str, data: Mapping[str, Any]) -> _Rec:
    """The fields the report reads from one event's data (anything else in it is never looked at)."""
    if type_ not in _DECIDED:
        return (run_id, seq, ts, type_, None, None, None, None, None, None, None)
    decision = data.get("decision")
    if type(decision) is not dict and not isinstance(decision, Mapping):  # the exact check is cheaper
        decision = {}
    tool = (data.get("tool") or decision.get("tool")) if type_ != "model" and type_ != "end" else None
    action, call_id = decision.get("action"), data.get("call_id")
    findings = decision.get("findings")
    milestones = data.get("milestones") if type_ == "tool_result" else None
    return (
        run_id,
        seq,
        ts,
        type_,
        tool if tool is None or type(tool) is str else _scalar(tool),
        action if type(action) is str else _scalar(action),
        findings if type(findings) is list and findings else None,
        milestones if type(milestones) is list and milestones else None,
        data.get("error") if type_ == "tool_result" else None,
        call_id if call_id is None or type(call_id) is str else _scalar(call_id),
        _scalar(data.get("action")) if type_ == "human" else None,
    )


def _scalar(value: Any) -> Any:
    """A value to count by: what SQLite's `->>` gives for it (a foreign writer's object becomes JSON text)."""
    if value is None or type(value) is str or type(value) is int or type(value) is float:
        return value
    return json.dumps(value, separators=(",", ":"), default=str)


# SQLite pulls out what the report needs, so Python never parses a tool's output or arguments.
_DECIDED_SQL = "type IN ('tool_call', 'tool_result', 'human', 'model', 'end')"
_FIELDS = f"""run_id, seq, ts, type,
    CASE WHEN type IN ('tool_call', 'tool_result', 'human')
        THEN coalesce(data ->> '$.tool', data ->> '$.decision.tool') END,
    CASE WHEN {_DECIDED_SQL} THEN data ->> '$.decision.action' END,
    CASE WHEN {_DECIDED_SQL} AND json_array_length(data, '$.decision.findings') > 0
        THEN data -> '$.decision.findings' END,
    CASE WHEN type = 'tool_result' AND json_array_length(data, '$.milestones') > 0
        THEN data -> '$.milestones' END,
    CASE WHEN type = 'tool_result' THEN data ->> '$.error' END,
    CASE WHEN {_DECIDED_SQL} THEN data ->> '$.call_id' END,
    CASE WHEN type = 'human' THEN data ->> '$.action' END"""
_FIRST = f"SELECT {_FIELDS} FROM events ORDER BY run_id, seq LIMIT ?"
_NEXT = f"SELECT {_FIELDS} FROM events WHERE (run_id, seq) > (?, ?) ORDER BY run_id, seq LIMIT ?"
_RAW_FIRST = "SELECT run_id, seq, ts, type, data FROM events ORDER BY run_id, seq LIMIT ?"
_RAW_NEXT = (
    "SELECT run_id, seq, ts, type, data FROM events WHERE (run_id, seq) > (?, ?) ORDER BY run_id, seq LIMIT ?"
)


def _sqlite(path: Path, progress: Progress | None) -> Iterator[_Rec]:
    # Only reads (never creates, migrates or writes); not `mode=ro`, which would leave the -wal and -shm
    # files of a WAL database behind: the last connection to close removes them, if it may write.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise TraceFormatError(f"{path} is not a headway trace database: {exc}", path=str(path)) from exc
        if version != SCHEMA_VERSION:
            raise TraceFormatError(
                f"{path} is not a headway trace database (schema version {version}, this headway reads "
                f"{SCHEMA_VERSION})",
                path=str(path),
            )
        total = conn.execute("SELECT count(*) FROM events").fetchone()[0] if progress else None
        key: tuple[Any, ...] = ()
        done = 0
        while True:
            # Keyset pages, each its own short read: a long report never holds back the writers' checkpoints.
            try:
                rows: list[Any] = conn.execute(_NEXT if key else _FIRST, (*key, _PAGE)).fetchall()
            except sqlite3.OperationalError as exc:
                if "JSON" not in str(exc):
                    raise
                rows = _parsed_page(conn, key, path)  # names the bad row, or finds SQLite was too strict
            yield from rows
            done += len(rows)
            if progress is not None:
                progress(str(path), done, total)
            if len(rows) < _PAGE:
                return
            key = (rows[-1][0], rows[-1][1])
    finally:
        conn.close()


def _parsed_page(conn: sqlite3.Connection, key: tuple[Any, ...], path: Path) -> list[_Rec]:
    out: list[_Rec] = []
    for run_id, seq, ts, type_, text in conn.execute(_RAW_NEXT if key else _RAW_FIRST, (*key, _PAGE)):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise TraceFormatError(f"{path}: run {run_id!r} seq {seq}: data is not JSON ({exc})") from exc
        out.append(_record(run_id, seq, ts, type_, data if isinstance(data, dict) else {}))
    return out


def _jsonl(path: Path, progress: Progress | None) -> Iterator[_Rec]:
    total = path.stat().st_size if progress else None
    # The decoder's C scanner without json.loads' wrapping: ~1.7x faster; json.loads explains failures.
    scan, done = json.scanner.make_scanner(json.JSONDecoder()), 0  # type: ignore[arg-type]
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            done += len(raw)
            if progress is not None and lineno % _TICK == 0:
                progress(str(path), done, total)
            try:
                line = raw.decode()
                obj, end = scan(line, 0)
                if end != len(line) - 1 and line[end:].strip():
                    raise StopIteration(end)  # trailing text: let json.loads say what is wrong
            except (StopIteration, ValueError, RecursionError):
                if not raw.strip():
                    continue
                obj = _loads(raw, path, lineno)
            # The checks `validate_event` makes, inline: pydantic per line would cost more than the report.
            if type(obj) is dict and len(obj) == 5:
                run_id, seq, ts, type_, data = (
                    obj.get("run_id"),
                    obj.get("seq"),
                    obj.get("ts"),
                    obj.get("type"),
                    obj.get("data"),
                )
                if (
                    type(run_id) is str
                    and run_id
                    and type(seq) is int
                    and seq >= 0
                    and (type(ts) is float or type(ts) is int)
                    and type_ in _EVENT_TYPES
                    and type(data) is dict
                ):
                    yield _record(run_id, seq, float(ts), type_, data)
                    continue
            try:
                e = validate_event(obj)
            except TraceFormatError as exc:
                raise TraceFormatError(f"{path}, line {lineno}: {exc}", path=str(path), line=lineno) from exc
            yield _record(e.run_id, e.seq, e.ts, e.type, e.data)
        if progress is not None:
            progress(str(path), done, total)


def _loads(raw: bytes, path: Path, lineno: int) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad JSON or bad UTF-8
        raise TraceFormatError(
            f"{path}, line {lineno}: not valid JSON: {exc}", path=str(path), line=lineno
        ) from exc


# ---- the tally ------------------------------------------------------------------------------------------


class _Run:
    """What the report keeps of one run while its events stream by."""

    __slots__ = (
        "end_action",
        "ended",
        "first",
        "kinds",
        "last",
        "last_tool",
        "pending",
        "reached",
        "run_id",
        "stopped",
        "tool_seq",
        "touched",
    )

    def __init__(self, run_id: str, ts: float) -> None:
        self.run_id = run_id
        self.first = self.last = ts
        self.kinds: dict[str, tuple[float, str, str]] | None = None  # kind -> (weight, severity, message)
        # Kept by seq, not by arrival: lines of a JSONL file may come in any order.
        self.reached: dict[str, int] | None = None  # milestone -> seq it was first reached at
        self.last_tool: str | None = None
        self.tool_seq = -1
        self.pending: Counter[Any] | None = None  # call id -> escalations not yet answered by a person
        self.ended = self.stopped = False
        self.end_action: Any = None
        self.touched = 0


class _ClassTally:
    __slots__ = ("examples", "findings", "runs", "score", "worst")

    def __init__(self) -> None:
        self.runs = self.findings = 0
        self.score = 0.0
        self.worst = -1
        self.examples: list[tuple[float, float, str, str, str]] = []  # weight, -start, run, severity, message


class _ToolTally:
    __slots__ = ("calls", "decisions", "errors", "findings", "human", "results")

    def __init__(self) -> None:
        self.calls = self.errors = 0
        self.decisions: dict[Any, int] = {}
        self.results: dict[Any, int] = {}
        self.human: dict[Any, int] = {}
        self.findings: dict[Any, int] = {}


class _Tally:
    def __init__(self, now: float, stale_after: float, examples: int) -> None:
        self.now, self.stale_after, self.max_examples = now, stale_after, examples
        self.events = self.runs = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.outcomes: Counter[str] = Counter()
        self.classes: dict[str, _ClassTally] = {}
        self.tools: dict[Any, _ToolTally] = {}
        self.reached: Counter[str] = Counter()
        self.rank_sum: Counter[str] = Counter()
        # (milestones reached, sorted; last tool; last milestone) -> runs: enough to build the funnel in an
        # order known only at the end, in memory bounded by the variety of runs, not their number.
        self.patterns: Counter[tuple[tuple[str, ...], str | None, str | None]] = Counter()
        self.hours: dict[int, Counter[str]] = {}
        self.hour_runs: Counter[int] = Counter()

    def consume(self, records: Iterator[_Rec], ordered: bool) -> None:
        """Tally one source. `ordered`: events come grouped by run (a store), so a run is finished when
        the next begins; otherwise when it has been idle for a while (WINDOW, SETTLE) or the input ends."""
        loads, tools, finish = json.loads, self.tools, self._finish
        open_runs: OrderedDict[str, _Run] = OrderedDict()  # unordered sources: least recently seen first
        cur: _Run | None = None
        cur_id: str | None = None
        n = self.events
        sweep = n + _TICK
        for run_id, seq, ts, type_, tool, action, findings, milestones, error, call_id, human in records:
            n += 1
            if type_ == "span":  # a framework's own span: nothing the taxonomy reads
                continue
            if run_id != cur_id or cur is None:
                if ordered:
                    if cur is not None:
                        finish(cur)
                    cur = _Run(run_id, ts)
                else:
                    if cur is not None:
                        cur.touched = n
                    cur = open_runs.get(run_id)
                    if cur is None:
                        cur = open_runs[run_id] = _Run(run_id, ts)
                    else:
                        open_runs.move_to_end(run_id)
                    cur.touched = n
                    if n >= sweep:
                        self._evict(open_runs, n)
                        sweep = n + _TICK
                cur_id = run_id
            if ts > cur.last:
                cur.last = ts
            elif ts < cur.first:
                cur.first = ts
            if type_ == "tool_call":
                t = tools.get(tool)
                if t is None:
                    t = tools[tool] = _ToolTally()
                t.calls += 1
                t.decisions[action] = t.decisions.get(action, 0) + 1
                if seq >= cur.tool_seq:
                    cur.last_tool, cur.tool_seq = tool, seq
                if action == "escalate" or action == "clarify":
                    if cur.pending is None:
                        cur.pending = Counter()
                    cur.pending[call_id] += 1
            elif type_ == "tool_result":
                t = tools.get(tool)
                if t is None:
                    t = tools[tool] = _ToolTally()
                t.results[action] = t.results.get(action, 0) + 1
                if error:
                    t.errors += 1
                if milestones:
                    self._reach(cur, seq, loads(milestones) if type(milestones) is str else milestones)
            elif type_ == "human":
                t = tools.get(tool)
                if t is None:
                    t = tools[tool] = _ToolTally()
                t.human[human] = t.human.get(human, 0) + 1
                if cur.pending is None:
                    cur.pending = Counter()
                cur.pending[call_id] -= 1
                continue  # its findings are the call's, checked again: counted once, on the call
            elif type_ == "end":
                cur.ended, cur.end_action = True, action
            if action == "stop":
                cur.stopped = True
            if findings:
                self._findings(cur, tool, loads(findings) if type(findings) is str else findings)
        self.events = n
        if cur is not None and ordered:
            finish(cur)
        for run in open_runs.values():
            finish(run)

    def _evict(self, open_runs: OrderedDict[str, _Run], n: int) -> None:
        """Finish the runs of an unordered source that have gone quiet (the front is the longest idle)."""
        stale, settled = n - WINDOW, n - SETTLE
        done = []
        for run_id, run in open_runs.items():
            if run.touched >= settled:
                break
            if run.ended or run.touched < stale:
                done.append(run_id)
        for run_id in done:
            self._finish(open_runs.pop(run_id))

    @staticmethod
    def _reach(run: _Run, seq: int, milestones: Any) -> None:
        if run.reached is None:
            run.reached = {}
        for m in milestones if isinstance(milestones, list) else ():
            if isinstance(m, str) and seq < run.reached.get(m, seq + 1):
                run.reached[m] = seq

    def _findings(self, run: _Run, tool: Any, findings: Any) -> None:
        if not isinstance(findings, list):
            return
        classes = self.classes
        t = self.tools.get(tool) if tool is not None else None
        kinds = run.kinds
        if kinds is None:
            kinds = run.kinds = {}
        for f in findings:
            if not isinstance(f, dict):
                continue
            kind, severity = f.get("kind"), f.get("severity")
            if not isinstance(kind, str):
                continue
            c = classes.get(kind)
            if c is None:
                c = classes[kind] = _ClassTally()
            c.findings += 1
            rank = _SEVERITY_RANK.get(severity, -1) if isinstance(severity, str) else -1
            if rank > c.worst:
                c.worst = rank
            if t is not None:
                t.findings[kind] = t.findings.get(kind, 0) + 1
            weight = _WEIGHT.get(severity, 0.0) if isinstance(severity, str) else 0.0
            seen = kinds.get(kind)
            if seen is None or weight > seen[0]:
                kinds[kind] = (weight, str(severity), str(f.get("message", "")))

    def _finish(self, run: _Run) -> None:
        self.runs += 1
        if self.first_ts is None or run.first < self.first_ts:
            self.first_ts = run.first
        if self.last_ts is None or run.last > self.last_ts:
            self.last_ts = run.last
        if run.stopped:
            outcome = "stopped"
        elif run.ended:
            outcome = "completed" if run.end_action == "allow" else "flagged"
        elif run.pending and any(n > 0 for n in run.pending.values()):
            outcome = "waiting"
        elif self.now - run.last > self.stale_after:
            outcome = "abandoned"
            kinds = run.kinds if run.kinds is not None else {}
            run.kinds = kinds
            if "abandoned" not in kinds:
                where = f" after {run.last_tool}" if run.last_tool else ""
                kinds["abandoned"] = (_ABANDONED_WEIGHT, "medium", f"the run stopped{where} and never ended")
        else:
            outcome = "open"
        self.outcomes[outcome] += 1
        hour = int(run.first // 3_600)
        self.hour_runs[hour] += 1
        if run.kinds:
            per_hour = self.hours.get(hour)
            if per_hour is None:
                per_hour = self.hours[hour] = Counter()
            for kind, (weight, severity, message) in run.kinds.items():
                c = self.classes.get(kind)
                if c is None:
                    c = self.classes[kind] = _ClassTally()
                    c.worst = _SEVERITY_RANK.get(severity, -1)
                c.runs += 1
                c.score += weight
                per_hour[kind] += 1
                self._example(c, weight, run, severity, message)
        reached = sorted(run.reached, key=run.reached.__getitem__) if run.reached else []
        for i, m in enumerate(reached):
            self.reached[m] += 1
            self.rank_sum[m] += i
        self.patterns[(tuple(sorted(reached)), run.last_tool, reached[-1] if reached else None)] += 1

    def _example(self, c: _ClassTally, weight: float, run: _Run, severity: str, message: str) -> None:
        # The most severe runs, the earliest started first among equals (whatever order they were read
        # in); a few per class, so memory stays bounded.
        entry = (weight, -run.first, run.run_id, severity, message)
        if len(c.examples) < self.max_examples:
            c.examples.append(entry)
            return
        low = min(range(len(c.examples)), key=lambda i: c.examples[i][:2])
        if c.examples and entry[:2] > c.examples[low][:2]:
            c.examples[low] = entry

    # ---- building the report ----------------------------------------------------------------------------

    def result(self, sources: tuple[str, ...], order: Sequence[str] | None) -> Report:
        classes = sorted(
            (
                ClassRank(
                    kind=kind,
                    meaning=MEANINGS.get(kind, ""),
                    runs=c.runs,
                    findings=c.findings,
                    severity=SEVERITIES[c.worst] if c.worst >= 0 else "unknown",
                    score=round(c.score, 6),
                    examples=tuple(
                        Example(run_id, severity, message)
                        for _, _, run_id, severity, message in sorted(c.examples, reverse=True)
                    ),
                )
                for kind, c in self.classes.items()
            ),
            key=lambda r: (-r.score, -r.runs, -r.findings, _kind_order(r.kind)),
        )
        tools = sorted(
            (
                ToolStats(
                    tool=str(tool),
                    calls=t.calls,
                    decisions=_by_action(t.decisions),
                    results=_by_action(t.results),
                    errors=t.errors,
                    human={str(k): v for k, v in sorted(t.human.items(), key=lambda kv: -kv[1])},
                    findings={str(k): v for k, v in sorted(t.findings.items(), key=lambda kv: -kv[1])},
                )
                for tool, t in self.tools.items()
                if tool is not None
            ),
            key=lambda t: (-t.calls, t.tool),
        )
        steps, through = self._funnel(order)
        bucket, timeline = self._timeline()
        return Report(
            sources=sources,
            events=self.events,
            runs=self.runs,
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            outcomes={o: self.outcomes[o] for o in OUTCOMES},
            classes=tuple(classes),
            tools=tuple(tools),
            funnel=steps,
            through=through,
            bucket_seconds=bucket,
            timeline=timeline,
        )

    def _funnel(self, order: Sequence[str] | None) -> tuple[tuple[FunnelStep, ...], int]:
        given = list(dict.fromkeys(order or ()))
        # Milestones no order names go after, in the order runs reach them (mean position within a run).
        rest = sorted(
            (m for m in self.reached if m not in given),
            key=lambda m: (self.rank_sum[m] / self.reached[m], -self.reached[m], m),
        )
        names = given + rest
        stalled: dict[str, list[Counter[str]]] = {m: [Counter(), Counter(), Counter()] for m in names}
        through = 0
        for (reached, last_tool, last_milestone), n in self.patterns.items():
            have = set(reached)
            missing = next((m for m in names if m not in have), None)
            if missing is None:
                through += n
                continue
            count, by_tool, by_milestone = stalled[missing]
            count["runs"] += n
            by_tool[last_tool or "(no tool call)"] += n
            by_milestone[last_milestone or "(none)"] += n
        steps = tuple(
            FunnelStep(
                milestone=m,
                reached=self.reached[m],
                stalled=stalled[m][0]["runs"],
                last_tools=_top(stalled[m][1]),
                last_milestones=_top(stalled[m][2]),
            )
            for m in names
        )
        return steps, through

    def _timeline(self) -> tuple[int, tuple[TimeBucket, ...]]:
        if not self.hour_runs:
            return _BUCKETS[0], ()
        lo, hi = min(self.hour_runs), max(self.hour_runs)
        # The finest bucket that keeps the chart readable; empty buckets stay, so gaps show as gaps.
        size = next((b for b in _BUCKETS if (hi - lo) * 3_600 // b < _MAX_BUCKETS), _BUCKETS[-1])
        hours_per = size // 3_600
        first = (lo * 3_600 // size) * size
        buckets: dict[int, tuple[Counter[str], list[int]]] = {}
        for hour in range(lo, hi + 1):
            runs = self.hour_runs.get(hour, 0)
            start = (hour // hours_per) * size if hours_per else hour * 3_600
            classes, total = buckets.setdefault(start, (Counter(), [0]))
            total[0] += runs
            classes.update(self.hours.get(hour, {}))
        out = tuple(
            TimeBucket(
                start=float(start),
                runs=total[0],
                classes=dict(sorted(classes.items(), key=lambda kv: _kind_order(kv[0]))),
            )
            for start, (classes, total) in sorted(buckets.items())
            if start >= first
        )
        return size, out


def _top(counts: Counter[str], n: int = 3) -> tuple[tuple[str, int], ...]:
    # Ties by name, not by which run was read first: the same traces give the same report in any order.
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def _kind_order(kind: str) -> tuple[int, str]:
    return (_KIND_INDEX[kind], "") if kind in _KIND_INDEX else (len(KINDS), kind)


def _by_action(counts: Mapping[Any, int]) -> dict[str, int]:
    known: dict[str, int] = {a: counts.get(a, 0) for a in ACTIONS}
    known.update({str(a): n for a, n in counts.items() if a not in known})  # a foreign writer's actions
    return known
