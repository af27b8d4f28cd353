"""Escalations and the exactly-once ledger: where an agent hands a call to a person, durably.

An escalation record is created when a call is escalated or needs clarifying; a person decides it once
(approve, reject with a message, edit the arguments, answer a clarification) through the API, the CLI,
the inbox or a framework resume. The store is the arbiter: `decide` is a conditional update, so two
workers (or a person and a stale resume) can never both decide the same escalation.

The ledger is keyed by (run id, call id) and guards side effects: `begin` moves a call to `executing`
atomically before a write tool runs, `finish` records the result (`executed`). A call found `executed`
is answered with its recorded result; one found `executing` has an unknown outcome (a crash, or another
worker) and goes to a person instead of running again.

Backends: `MemoryEscalations` (tests, `":memory:"` guards), `SQLiteEscalations` (beside the traces, in
the same file by default) and the PostgreSQL store in `headway.postgres`.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from ._errors import HeadwayError
from ._types import Finding

HumanAction = Literal["approve", "reject", "edit", "answer"]
HUMAN_ACTIONS: tuple[HumanAction, ...] = get_args(HumanAction)
Status = Literal["pending", "approved", "rejected", "edited", "answered"]
STATUSES: tuple[Status, ...] = get_args(Status)
_STATUS_OF: Mapping[HumanAction, Status] = {
    "approve": "approved",
    "reject": "rejected",
    "edit": "edited",
    "answer": "answered",
}
LedgerState = Literal["executing", "executed"]

# Bounds on what a person (or a forged request) may put into a decision: the inbox and the CLI take
# input from outside, and a decision is stored, shown and replayed.
MAX_MESSAGE_CHARS = 4000
MAX_ARGS_CHARS = 64_000


class EscalationConflict(HeadwayError):
    """The escalation was already decided (by someone else, or differently): `current` is what the store holds."""

    def __init__(self, message: str, current: Escalation) -> None:
        super().__init__(message)
        self.current = current


class UnknownEscalation(HeadwayError, KeyError):
    """No escalation with this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown escalation"


def escalation_id(run_id: str, call_id: str, round_: int) -> str:
    """Deterministic, so a replayed or restored run re-creates the same record instead of a second one."""
    digest = hashlib.sha256(f"{run_id}\x00{call_id}\x00{round_}".encode("utf-8", "surrogatepass"))
    return "esc_" + digest.hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Escalation:
    """One call waiting for (or decided by) a person.

    `kind` is the decision that asked for a person (`escalate`: approve or reject; `clarify`: the user's
    answer is needed). Once decided, `status` says how, `decided_by`/`decided_at` who and when, and
    `message` (reject), `new_args` (edit) or `text` (answer) carry what the person supplied.
    """

    id: str
    run_id: str
    call_id: str
    tool: str
    args: Mapping[str, Any]
    kind: Literal["escalate", "clarify"]
    reason: str
    question: str | None = None
    findings: tuple[Finding, ...] = ()
    created_at: float = 0.0
    status: Status = "pending"
    decided_by: str | None = None
    decided_at: float | None = None
    message: str | None = None
    new_args: Mapping[str, Any] | None = None
    text: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    @property
    def action(self) -> HumanAction | None:
        """The person's action (None while pending)."""
        for action, status in _STATUS_OF.items():
            if status == self.status:
                return action
        return None

    def resolution(self) -> dict[str, Any]:
        """The decision as adapters' resume payloads spell it ({"action", "by", ...})."""
        if self.pending:
            raise HeadwayError(f"escalation {self.id} is still pending")
        out: dict[str, Any] = {"action": self.action, "by": self.decided_by}
        if self.message is not None:
            out["message"] = self.message
        if self.new_args is not None:
            out["args"] = dict(self.new_args)
        if self.text is not None:
            out["text"] = self.text
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "call_id": self.call_id,
            "tool": self.tool,
            "args": dict(self.args),
            "kind": self.kind,
            "reason": self.reason,
            "question": self.question,
            "findings": [f.to_dict() for f in self.findings],
            "created_at": self.created_at,
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "message": self.message,
            "new_args": None if self.new_args is None else dict(self.new_args),
            "text": self.text,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Escalation:
        return cls(
            id=str(d["id"]),
            run_id=str(d["run_id"]),
            call_id=str(d["call_id"]),
            tool=str(d["tool"]),
            args=dict(d.get("args") or {}),
            kind=d.get("kind", "escalate"),
            reason=str(d.get("reason") or ""),
            question=d.get("question"),
            findings=tuple(Finding(**f) for f in d.get("findings") or ()),
            created_at=float(d.get("created_at") or 0.0),
            status=d.get("status", "pending"),
            decided_by=d.get("decided_by"),
            decided_at=d.get("decided_at"),
            message=d.get("message"),
            new_args=d.get("new_args"),
            text=d.get("text"),
            metadata=dict(d.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """Where one side-effecting call stands: `executing` (begun, no result yet) or `executed`."""

    run_id: str
    call_id: str
    state: LedgerState
    output: Any = None
    error: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """`begin`'s answer: `owner` True means this caller moved the call to executing and must run it;
    otherwise `entry` says what happened before (executed: replay its result; executing: unknown)."""

    owner: bool
    entry: LedgerEntry | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to notify someone of an escalation (a webhook POST)."""

    escalation_id: str
    target: str
    attempt: int
    ok: bool
    detail: str
    at: float


@runtime_checkable
class EscalationStore(Protocol):
    """Durable escalations, their decisions, notification attempts and the exactly-once ledger."""

    def create(self, escalation: Escalation) -> Escalation:
        """Store a new escalation; an existing id is kept as it is and returned (creation is idempotent)."""
        ...

    def get(self, escalation_id: str) -> Escalation | None: ...

    def list(
        self, *, status: Status | None = None, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[Escalation]:
        """Newest first."""
        ...

    def decide(
        self,
        escalation_id: str,
        action: HumanAction,
        *,
        by: str,
        message: str | None = None,
        args: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Escalation:
        """pending -> decided, atomically. Raises EscalationConflict when it was already decided and
        UnknownEscalation when there is no such id."""
        ...

    def record_delivery(self, delivery: Delivery) -> None: ...

    def deliveries(self, escalation_id: str) -> builtins.list[Delivery]: ...

    def begin(self, run_id: str, call_id: str) -> Claim: ...

    def finish(self, run_id: str, call_id: str, output: Any, error: str | None) -> None: ...

    def release(self, run_id: str, call_id: str) -> None:
        """Forget an `executing` entry (a person checked an unknown outcome and approved running again)."""
        ...

    def ledger(self, run_id: str, call_id: str) -> LedgerEntry | None: ...

    def close(self) -> None: ...


# ---- validation shared by every backend -------------------------------------------------------------


def validate_decision(
    action: object,
    by: object,
    message: object,
    args: object,
    text: object,
) -> tuple[HumanAction, str, str | None, dict[str, Any] | None, str | None]:
    """Refuse malformed decisions with a clear error before anything is written."""
    if action not in HUMAN_ACTIONS:
        raise HeadwayError(f"action must be one of {', '.join(HUMAN_ACTIONS)}, got {action!r}")
    if not isinstance(by, str) or not by.strip():
        raise HeadwayError("`by` must name who decided")
    if len(by) > 200:
        raise HeadwayError("`by` is longer than 200 characters")
    if message is not None and (not isinstance(message, str) or len(message) > MAX_MESSAGE_CHARS):
        raise HeadwayError(f"`message` must be text of at most {MAX_MESSAGE_CHARS} characters")
    if text is not None and (not isinstance(text, str) or len(text) > MAX_MESSAGE_CHARS):
        raise HeadwayError(f"`text` must be text of at most {MAX_MESSAGE_CHARS} characters")
    new_args: dict[str, Any] | None = None
    if action == "edit":
        if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
            raise HeadwayError("an edit needs the new `args` (a JSON object)")
        try:
            encoded = json.dumps(dict(args), allow_nan=False)
        except (TypeError, ValueError) as e:
            raise HeadwayError(f"edited `args` must be plain JSON ({e})") from None
        if len(encoded) > MAX_ARGS_CHARS:
            raise HeadwayError(f"edited `args` are larger than {MAX_ARGS_CHARS} characters")
        new_args = json.loads(encoded)
    elif args is not None:
        raise HeadwayError("`args` belong to an edit only")
    if action == "answer":
        if not text or not str(text).strip():
            raise HeadwayError("an answer needs the user's `text`")
    elif text is not None:
        raise HeadwayError("`text` belongs to an answer only")
    return action, by.strip(), message, new_args, text


def decided(
    esc: Escalation,
    action: HumanAction,
    by: str,
    message: str | None,
    args: dict[str, Any] | None,
    text: str | None,
    at: float,
) -> Escalation:
    return replace(
        esc,
        status=_STATUS_OF[action],
        decided_by=by,
        decided_at=at,
        message=message,
        new_args=args,
        text=text,
    )


def conflict(current: Escalation) -> EscalationConflict:
    when = ""
    if current.decided_at is not None:
        when = time.strftime(" at %Y-%m-%d %H:%M:%S UTC", time.gmtime(current.decided_at))
    return EscalationConflict(
        f"escalation {current.id} was already {current.status} by {current.decided_by}{when}", current
    )


# ---- in memory --------------------------------------------------------------------------------------


class MemoryEscalations:
    """In-process escalations and ledger (tests, `":memory:"` guards). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, Escalation] = {}
        self._deliveries: dict[str, list[Delivery]] = {}
        self._ledger: dict[tuple[str, str], LedgerEntry] = {}

    def create(self, escalation: Escalation) -> Escalation:
        with self._lock:
            return self._items.setdefault(escalation.id, escalation)

    def get(self, escalation_id: str) -> Escalation | None:
        with self._lock:
            return self._items.get(escalation_id)

    def list(
        self, *, status: Status | None = None, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[Escalation]:
        with self._lock:
            items = [
                e
                for e in self._items.values()
                if (status is None or e.status == status) and (run_id is None or e.run_id == run_id)
            ]
        items.sort(key=lambda e: (-e.created_at, e.id))
        return items[: max(0, limit)]

    def decide(
        self,
        escalation_id: str,
        action: HumanAction,
        *,
        by: str,
        message: str | None = None,
        args: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Escalation:
        with self._lock:
            esc = self._items.get(escalation_id)
            if esc is None:
                raise UnknownEscalation(f"no escalation {escalation_id!r}")
            a, who, msg, new_args, txt = validate_decision(action, by, message, args, text)
            if not esc.pending:
                raise conflict(esc)
            out = self._items[escalation_id] = decided(esc, a, who, msg, new_args, txt, time.time())
            return out

    def record_delivery(self, delivery: Delivery) -> None:
        with self._lock:
            self._deliveries.setdefault(delivery.escalation_id, []).append(delivery)

    def deliveries(self, escalation_id: str) -> builtins.list[Delivery]:
        with self._lock:
            return list(self._deliveries.get(escalation_id, ()))

    def begin(self, run_id: str, call_id: str) -> Claim:
        with self._lock:
            entry = self._ledger.get((run_id, call_id))
            if entry is not None:
                return Claim(False, entry)
            self._ledger[(run_id, call_id)] = LedgerEntry(
                run_id, call_id, "executing", updated_at=time.time()
            )
            return Claim(True)

    def finish(self, run_id: str, call_id: str, output: Any, error: str | None) -> None:
        with self._lock:
            self._ledger[(run_id, call_id)] = LedgerEntry(
                run_id, call_id, "executed", output, error, time.time()
            )

    def release(self, run_id: str, call_id: str) -> None:
        with self._lock:
            entry = self._ledger.get((run_id, call_id))
            if entry is not None and entry.state == "executing":
                del self._ledger[(run_id, call_id)]

    def ledger(self, run_id: str, call_id: str) -> LedgerEntry | None:
        with self._lock:
            return self._ledger.get((run_id, call_id))

    def close(self) -> None:
        pass


# ---- SQLite -----------------------------------------------------------------------------------------

_SQLITE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS escalations (
        id TEXT PRIMARY KEY, run_id TEXT NOT NULL, call_id TEXT NOT NULL, created_at REAL NOT NULL,
        status TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS escalations_status ON escalations (status, created_at)",
    "CREATE INDEX IF NOT EXISTS escalations_run ON escalations (run_id)",
    """CREATE TABLE IF NOT EXISTS escalation_deliveries (
        escalation_id TEXT NOT NULL, target TEXT NOT NULL, attempt INTEGER NOT NULL, ok INTEGER NOT NULL,
        detail TEXT NOT NULL, at REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS escalation_deliveries_id ON escalation_deliveries (escalation_id)",
    """CREATE TABLE IF NOT EXISTS ledger (
        run_id TEXT NOT NULL, call_id TEXT NOT NULL, state TEXT NOT NULL, output TEXT, error TEXT,
        updated_at REAL NOT NULL, PRIMARY KEY (run_id, call_id))""",
)


def encode(value: Any) -> str:
    """JSON for stored records; what JSON cannot hold (NaN, objects) is kept as its repr, never dropped."""
    return json.dumps(_sanitise(value), default=repr, ensure_ascii=False, allow_nan=False)


def _sanitise(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _sanitise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitise(v) for v in value]
    return value


class SQLiteEscalations:
    """Escalations and ledger in a SQLite file (by default the trace database itself), WAL mode.

    Every method is one short transaction: `BEGIN IMMEDIATE` takes the write lock up front, so the
    conditional update in `decide` and the insert in `begin` are atomic across threads and processes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        self.path = p if str(p) == ":memory:" else p.absolute()
        if str(p) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._tx():
            for ddl in _SQLITE_SCHEMA:
                self._conn.execute(ddl)

    def _tx(self) -> _Tx:
        return _Tx(self._lock, self._conn)

    def create(self, escalation: Escalation) -> Escalation:
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO escalations (id, run_id, call_id, created_at, status, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    escalation.id,
                    escalation.run_id,
                    escalation.call_id,
                    escalation.created_at,
                    escalation.status,
                    encode(escalation.to_dict()),
                ),
            )
            row = c.execute("SELECT data FROM escalations WHERE id = ?", (escalation.id,)).fetchone()
        return Escalation.from_dict(json.loads(row[0]))

    def get(self, escalation_id: str) -> Escalation | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM escalations WHERE id = ?", (escalation_id,)).fetchone()
        return None if row is None else Escalation.from_dict(json.loads(row[0]))

    def list(
        self, *, status: Status | None = None, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[Escalation]:
        where, params = filters(status, run_id)
        with self._lock:
            rows = self._conn.execute(
                f"SELECT data FROM escalations {where} ORDER BY created_at DESC, id LIMIT ?",
                (*params, max(0, limit)),
            ).fetchall()
        return [Escalation.from_dict(json.loads(r[0])) for r in rows]

    def decide(
        self,
        escalation_id: str,
        action: HumanAction,
        *,
        by: str,
        message: str | None = None,
        args: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Escalation:
        with self._tx() as c:
            row = c.execute("SELECT data FROM escalations WHERE id = ?", (escalation_id,)).fetchone()
            if row is None:
                raise UnknownEscalation(f"no escalation {escalation_id!r}")
            esc = Escalation.from_dict(json.loads(row[0]))
            a, who, msg, new_args, txt = validate_decision(action, by, message, args, text)
            if not esc.pending:
                raise conflict(esc)
            out = decided(esc, a, who, msg, new_args, txt, time.time())
            n = c.execute(
                "UPDATE escalations SET status = ?, data = ? WHERE id = ? AND status = 'pending'",
                (out.status, encode(out.to_dict()), escalation_id),
            ).rowcount
            if n != 1:  # cannot happen under BEGIN IMMEDIATE; kept so a future change cannot double-decide
                raise conflict(esc)
        return out

    def record_delivery(self, delivery: Delivery) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO escalation_deliveries (escalation_id, target, attempt, ok, detail, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    delivery.escalation_id,
                    delivery.target,
                    delivery.attempt,
                    int(delivery.ok),
                    delivery.detail[:2000],
                    delivery.at,
                ),
            )

    def deliveries(self, escalation_id: str) -> builtins.list[Delivery]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT escalation_id, target, attempt, ok, detail, at FROM escalation_deliveries "
                "WHERE escalation_id = ? ORDER BY at, attempt",
                (escalation_id,),
            ).fetchall()
        return [Delivery(r[0], r[1], int(r[2]), bool(r[3]), r[4], float(r[5])) for r in rows]

    def begin(self, run_id: str, call_id: str) -> Claim:
        with self._tx() as c:
            row = c.execute(
                "SELECT state, output, error, updated_at FROM ledger WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
            if row is not None:
                return Claim(False, _entry(run_id, call_id, row))
            c.execute(
                "INSERT INTO ledger (run_id, call_id, state, updated_at) VALUES (?, ?, 'executing', ?)",
                (run_id, call_id, time.time()),
            )
        return Claim(True)

    def finish(self, run_id: str, call_id: str, output: Any, error: str | None) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO ledger (run_id, call_id, state, output, error, updated_at) "
                "VALUES (?, ?, 'executed', ?, ?, ?) ON CONFLICT (run_id, call_id) DO UPDATE SET "
                "state = 'executed', output = excluded.output, error = excluded.error, "
                "updated_at = excluded.updated_at",
                (run_id, call_id, encode(output), error, time.time()),
            )

    def release(self, run_id: str, call_id: str) -> None:
        with self._tx() as c:
            c.execute(
                "DELETE FROM ledger WHERE run_id = ? AND call_id = ? AND state = 'executing'",
                (run_id, call_id),
            )

    def ledger(self, run_id: str, call_id: str) -> LedgerEntry | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT state, output, error, updated_at FROM ledger WHERE run_id = ? AND call_id = ?",
                (run_id, call_id),
            ).fetchone()
        return None if row is None else _entry(run_id, call_id, row)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"SQLiteEscalations({str(self.path)!r})"


class _Tx:
    """`with` block: the store's lock and one BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""

    def __init__(self, lock: threading.Lock, conn: sqlite3.Connection) -> None:
        self._lock = lock
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def __exit__(self, et: type[BaseException] | None, *_: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if et is not None else "COMMIT")
        finally:
            self._lock.release()


def filters(status: Status | None, run_id: str | None, mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause of `list` and its parameters; `mark` is the driver's placeholder."""
    clauses: list[str] = []
    params: list[Any] = []
    if status is not None:
        if status not in STATUSES:
            raise HeadwayError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        clauses.append(f"status = {mark}")
        params.append(status)
    if run_id is not None:
        clauses.append(f"run_id = {mark}")
        params.append(run_id)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _entry(run_id: str, call_id: str, row: Sequence[Any]) -> LedgerEntry:
    state, output, error, at = row
    return LedgerEntry(
        run_id, call_id, state, None if output is None else json.loads(output), error, float(at)
    )
