"""Where runs are recorded: the `TraceStore` protocol and its in-memory and SQLite implementations.

Appends serialise at once and never fail on odd data; SQLite batches read events and commits durable ones.
"""

from __future__ import annotations

import json
import json.encoder
import logging
import os
import re
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, cast, runtime_checkable

from ._encode import DEFAULT_MAX_FIELD_CHARS, _Row, _row, encode_data
from ._types import Event, EventType

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "RunInfo",
    "SQLiteStore",
    "TraceFormatError",
    "TraceStore",
    "encode_data",
]

_log = logging.getLogger("headway.traces")

# Bump when the tables change and add a step to `_migrate`; files carry it in `PRAGMA user_version`.
SCHEMA_VERSION = 1
_PAGE = 500


class TraceFormatError(ValueError):
    """A trace file or database that headway cannot read: malformed line, foreign schema, newer version."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


# libpq's keyword form ("host=/run/pg dbname=headway"), which would otherwise become a SQLite file name.
_KEYWORD_DSN = re.compile(r"^\s*(host|hostaddr|dbname|user|port|service)\s*=")


def is_postgres_url(target: str) -> bool:
    """Whether a store argument is a `postgresql://` (or `postgres://`) URL."""
    return target.startswith(("postgresql://", "postgres://"))


def is_postgres_dsn(target: str) -> bool:
    """Whether a store argument names a PostgreSQL database rather than a file: a URL
    (`is_postgres_url`), or libpq's keyword form (`host=... dbname=...`)."""
    return is_postgres_url(target) or _KEYWORD_DSN.match(target) is not None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Summary of one recorded run: when it started and ended, how many events, the last event's time.

    `started` is the `start` event's timestamp (the first recorded event's if there was none); `ended` is
    the `end` event's, or None while the run is open or was abandoned.
    """

    run_id: str
    started: float
    ended: float | None
    n_events: int
    last_ts: float


@runtime_checkable
class TraceStore(Protocol):
    """Where a Run records its events. Implementations are thread-safe."""

    def append(self, event: Event, *, durable: bool = False) -> None:
        """Record `event`. With `durable=True` it and everything buffered before it are committed on return."""
        ...

    def flush(self) -> None:
        """Commit everything buffered."""
        ...

    def close(self) -> None:
        """Flush and release resources; calling it again does nothing."""
        ...

    def events(self, run_id: str) -> list[Event]:
        """All events of one run, in `seq` order (buffered ones included)."""
        ...

    def iter_events(self, run_ids: Iterable[str] | None = None) -> Iterator[Event]:
        """Stream events of the given runs (all runs by default), ordered by run_id then seq."""
        ...

    def runs(self) -> list[RunInfo]:
        """One summary per recorded run, oldest first."""
        ...


def _event(row: tuple[Any, ...], where: object) -> Event:
    run_id, seq, ts, type_, data = row
    try:
        decoded = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise TraceFormatError(f"{where}: run {run_id!r} seq {seq}: data is not JSON ({exc})") from exc
    return Event(run_id, seq, ts, cast(EventType, type_), decoded)


def _closed_error(what: object) -> ValueError:
    return ValueError(f"trace store {what} is closed")


# --- in memory ---------------------------------------------------------------------------------------


class MemoryStore:
    """Keeps events in memory, serialised like SQLite would, so both stores read back the same values.

    For tests and short-lived runs; `durable` means nothing here. Reads still work after `close()`.
    """

    def __init__(self, *, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> None:
        if max_field_chars < 1:
            raise ValueError("max_field_chars must be at least 1")
        self._limit = max_field_chars
        self._lock = threading.Lock()
        self._rows: dict[str, dict[int, _Row]] = {}
        # run_id -> [started, ended, n_events, last_ts]
        self._info: dict[str, list[Any]] = {}
        self._closed = False

    def append(self, event: Event, *, durable: bool = False) -> None:
        row = _row(event, self._limit)
        run_id, seq, ts, type_, _ = row
        with self._lock:
            if self._closed:
                raise _closed_error("MemoryStore")
            rows = self._rows.get(run_id)
            if rows is None:
                rows = self._rows[run_id] = {}
                self._info[run_id] = [ts, None, 0, ts]
            elif seq in rows:
                return
            rows[seq] = row
            info = self._info[run_id]
            info[2] += 1
            if ts > info[3]:
                info[3] = ts
            if type_ == "start":
                info[0] = ts
            elif type_ == "end":
                info[1] = ts

    def flush(self) -> None:
        pass

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def events(self, run_id: str) -> list[Event]:
        with self._lock:
            rows = sorted(self._rows.get(run_id, {}).values(), key=lambda r: r[1])
        return [_event(r, "MemoryStore") for r in rows]

    def iter_events(self, run_ids: Iterable[str] | None = None) -> Iterator[Event]:
        with self._lock:
            ids = sorted(self._rows if run_ids is None else set(run_ids))
        for run_id in ids:
            yield from self.events(run_id)

    def runs(self) -> list[RunInfo]:
        with self._lock:
            infos = [RunInfo(rid, i[0], i[1], i[2], i[3]) for rid, i in self._info.items()]
        return sorted(infos, key=lambda r: (r.started, r.run_id))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- SQLite ------------------------------------------------------------------------------------------

_INSERT = "INSERT OR IGNORE INTO events (run_id, seq, ts, type, data) VALUES (?, ?, ?, ?, ?)"
_UPSERT_RUN = """
INSERT INTO runs (run_id, started, ended, n_events, last_ts)
VALUES (:run_id, :started, :ended, :n, :last_ts)
ON CONFLICT (run_id) DO UPDATE SET
    started = CASE WHEN :has_start THEN excluded.started ELSE runs.started END,
    ended = coalesce(excluded.ended, runs.ended),
    n_events = runs.n_events + excluded.n_events,
    last_ts = max(runs.last_ts, excluded.last_ts)
"""
# When a batch held duplicates we cannot tell which rows were new, so count again from the events table.
_RECOUNT_RUN = """
INSERT INTO runs (run_id, started, ended, n_events, last_ts)
SELECT :run_id,
    coalesce(
        (SELECT ts FROM events WHERE run_id = :run_id AND type = 'start' ORDER BY seq DESC LIMIT 1),
        min(ts)),
    (SELECT ts FROM events WHERE run_id = :run_id AND type = 'end' ORDER BY seq DESC LIMIT 1),
    count(*), max(ts)
FROM events WHERE run_id = :run_id
ON CONFLICT (run_id) DO UPDATE SET
    started = excluded.started, ended = excluded.ended, n_events = excluded.n_events, last_ts = excluded.last_ts
"""
_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS events (
        run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,
        PRIMARY KEY (run_id, seq))""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT PRIMARY KEY, started REAL, ended REAL, n_events INTEGER NOT NULL, last_ts REAL)""",
)
_SYNCHRONOUS = ("OFF", "NORMAL", "FULL")
# A value that cannot be bound (e.g. a lone surrogate in run_id): skip that row rather than the batch.
_BIND_ERRORS = (sqlite3.InterfaceError, sqlite3.ProgrammingError, OverflowError, UnicodeEncodeError)


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: we issue BEGIN IMMEDIATE ourselves so a writer takes the lock up front and
    # busy_timeout, not a deadlock between two upgrading readers, decides who waits.
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if exc.sqlite_errorname in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            raise TraceFormatError(f"{path} is not a headway trace database: {exc}", path=str(path)) from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = _user_version(conn)
    if version == SCHEMA_VERSION:
        return
    _check_version(version, path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)  # another process may have migrated while we waited for the lock
        _check_version(version, path)
        if version < 1:
            for ddl in _SCHEMA_V1:
                conn.execute(ddl)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_version(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise TraceFormatError(
            f"{path} uses trace schema version {version}; this headway reads up to {SCHEMA_VERSION}: "
            "upgrade headway to read it",
            path=str(path),
        )


# Empty intervals the flusher polls through before it sleeps until an append wakes it (2 s at 0.2 s).
_QUIET_POLLS = 10


class _Batcher:
    """Buffered, ordered batch writes for a trace store backend: the buffer, the flusher thread, retries.

    Subclasses write a batch in one transaction (`_write`) and release their connections
    (`_disconnect`). Kept apart from the store object so the flusher thread and the exit hook reference
    this, and a store nobody holds any more is collected (its finalizer flushes it).

    Two locks: `buf_lock` guards the buffer and is all a buffered append takes; `io_lock` serialises
    writes and is taken before `buf_lock`. A durable append buffers its row too, then returns once a
    write that held it has committed, so it never commits ahead of events buffered before it; threads
    that queue while a write is in flight share the next one (group commit).
    """

    def __init__(self, where: str, flush_interval: float, max_batch: int, limit: int) -> None:
        self.where = where
        self.interval = flush_interval
        self.max_batch = max_batch
        self.limit = limit
        self.io_lock = threading.Lock()
        self.buf_lock = threading.Lock()
        self.cond = threading.Condition(self.buf_lock)
        self.buf: list[_Row] = []
        self.buf_runs: set[str] = set()  # run ids with buffered events: reading one of them flushes first
        self.first_at = 0.0  # monotonic time the oldest buffered event arrived
        self.taken = 0  # batches taken from the buffer so far (under buf_lock)
        self.written = 0  # the latest batch written (under io_lock): every row appended before it is in
        self.closed = False
        self.thread: threading.Thread | None = None
        # The flusher sleeps without a deadline only after a quiet spell: only then does an append need to
        # wake it. Waking it for the first row after every commit costs the agent's thread a GIL handoff
        # in the middle of its next commit (~30 µs a write pair); while rows keep coming, it polls once
        # per interval instead and picks new rows up when it wakes.
        self.idle = False

    def _write(self, batch: list[_Row]) -> None:
        raise NotImplementedError

    def _disconnect(self) -> None:
        raise NotImplementedError

    def events(self, run_id: str) -> list[Event]:
        raise NotImplementedError

    def iter_events(self, run_ids: list[str] | None) -> Iterator[Event]:
        raise NotImplementedError

    def runs(self) -> list[RunInfo]:
        raise NotImplementedError

    # writing

    def append(self, event: Event, durable: bool) -> None:
        row = _row(event, self.limit)
        with self.buf_lock:
            if self.closed:
                raise _closed_error(self.where)
            self.buf.append(row)
            self.buf_runs.add(row[0])
            n = len(self.buf)
            batch = self.taken + 1  # the batch this row goes out in (a later one if that write fails)
            if n == 1:
                self.first_at = time.monotonic()
                if self.thread is None:
                    self._start_thread()
                elif self.idle and not durable:  # a durable row is written below, by this thread
                    self.cond.notify()
        if durable:
            with self.io_lock:
                if self.written < batch:
                    if self.closed:  # closed meanwhile, and its final write failed
                        raise _closed_error(self.where)
                    self._flush_locked()
        elif n >= self.max_batch:
            # Written here rather than handed to the flusher: measured, a handoff in a tight loop costs
            # GIL ping-pong (10+ ms stalls) where this costs one ~1 ms commit per batch, and it bounds memory.
            self.flush()

    def flush(self) -> None:
        with self.io_lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        """Write the buffer in one transaction. Caller holds io_lock."""
        with self.buf_lock:
            if self.closed or not self.buf:
                return
            batch, self.buf = self.buf, []
            self.buf_runs = set()
            self.taken += 1
            number = self.taken
        try:
            self._write(batch)
        except BaseException:
            # Put the rows back in front of anything appended meanwhile, so a later flush retries them in
            # order; first_at restarts so a failing disk or server is retried once per interval, not in a spin.
            with self.buf_lock:
                self.buf[:0] = batch
                self.buf_runs.update(r[0] for r in batch)
                self.first_at = time.monotonic()
                if self.thread is None:
                    self._start_thread()
                self.cond.notify()  # the flusher may be asleep with no deadline: the buffer was empty
            raise
        # Batches are taken in order and a failed one goes back to the front of the buffer, so this write
        # held every row appended before it was taken that no earlier write committed.
        self.written = number

    # the flusher thread

    def _start_thread(self) -> None:
        # Daemon: a forgotten store must not keep the process alive; the exit hook flushes instead.
        self.thread = threading.Thread(
            target=self._flusher, name=f"headway-trace-flush:{self.where}", daemon=True
        )
        self.thread.start()

    def _flusher(self) -> None:
        quiet = 0  # intervals in a row that found the buffer empty
        while True:
            with self.cond:
                while True:
                    if self.closed:
                        return
                    if not self.buf:
                        if quiet < _QUIET_POLLS:
                            quiet += 1
                            self.cond.wait(self.interval)
                        else:
                            self.idle = True
                            self.cond.wait()
                            self.idle = False
                        continue
                    quiet = 0
                    delay = self.first_at + self.interval - time.monotonic()
                    if delay <= 0:
                        break
                    self.cond.wait(delay)
            try:
                self.flush()
            except Exception:
                _log.exception("headway: could not flush traces to %s; will retry", self.where)

    # reading

    def visible(self, run_id: str | None = None) -> None:
        """Commit buffered events before a read: all of them, or only if `run_id` has some."""
        with self.io_lock:
            self._visible_locked(run_id)

    def _visible_locked(self, run_id: str | None = None) -> None:
        if self.closed:
            raise _closed_error(self.where)
        if run_id is not None:
            # A Guard asks for every new run id (to restore runs from other processes): committing the
            # whole buffer each time would cost a commit per run.
            with self.buf_lock:
                if run_id not in self.buf_runs:
                    return
        self._flush_locked()

    # closing

    def close(self) -> None:
        with self.io_lock:
            with self.buf_lock:
                if self.closed:
                    return
                self.closed = True
                batch, self.buf = self.buf, []
                self.buf_runs = set()
                self.taken += 1
                self.cond.notify_all()
            try:
                if batch:
                    self._write(batch)
                self.written = self.taken
            finally:
                self._disconnect()
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)


class _Backend(_Batcher):
    """The SQLite side of a `SQLiteStore`: one connection, used under `io_lock`."""

    def __init__(
        self, path: Path, flush_interval: float, max_batch: int, synchronous: str, limit: int
    ) -> None:
        super().__init__(str(path), flush_interval, max_batch, limit)
        self.path = path
        self.conn = _connect(path, synchronous)

    def _disconnect(self) -> None:
        self.conn.close()

    def _write(self, batch: list[_Row]) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            groups: dict[str, list[_Row]] = {}
            for r in batch:
                g = groups.get(r[0])
                if g is None:
                    groups[r[0]] = [r]
                else:
                    g.append(r)
            for run_id, rows in groups.items():
                try:
                    inserted = conn.executemany(_INSERT, rows).rowcount
                except _BIND_ERRORS:
                    inserted = self._insert_one_by_one(rows)
                if inserted == len(rows):
                    self._upsert_run(run_id, rows)
                elif inserted != 0:
                    conn.execute(_RECOUNT_RUN, {"run_id": run_id})
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _insert_one_by_one(self, rows: list[_Row]) -> int:
        """Insert what can be bound and log the rest. Returns -1 (recount: rows the failed executemany
        already wrote now look like duplicates) or 0 if nothing was stored."""
        stored = False
        for r in rows:
            try:
                self.conn.execute(_INSERT, r)
                stored = True
            except _BIND_ERRORS as exc:
                _log.error(
                    "headway: dropping an event that SQLite cannot store (run %r seq %r): %s", r[0], r[1], exc
                )
        return -1 if stored else 0

    def _upsert_run(self, run_id: str, rows: list[_Row]) -> None:
        started: float | None = None
        ended: float | None = None
        lo = hi = rows[0][2]
        for _, _, ts, type_, _ in rows:
            if ts > hi:
                hi = ts
            elif ts < lo:
                lo = ts
            if type_ == "start":
                started = ts
            elif type_ == "end":
                ended = ts
        self.conn.execute(
            _UPSERT_RUN,
            {
                "run_id": run_id,
                "started": lo if started is None else started,
                "ended": ended,
                "n": len(rows),
                "last_ts": hi,
                "has_start": started is not None,
            },
        )

    # reading

    def events(self, run_id: str) -> list[Event]:
        with self.io_lock:
            if self.closed:
                raise _closed_error(self.path)
            # Flush only when this run has buffered events: a Guard asks for every new run id (to restore
            # runs from other processes), and committing the whole buffer each time would cost ~1 ms.
            self._visible_locked(run_id)
            rows = self.conn.execute(
                "SELECT run_id, seq, ts, type, data FROM events WHERE run_id = ? ORDER BY seq", (run_id,)
            ).fetchall()
        return [_event(r, self.path) for r in rows]

    def iter_events(self, run_ids: Iterable[str] | None) -> Iterator[Event]:
        # Keyset pages, each under the lock only while it is fetched: constant memory, and a slow or
        # abandoned consumer never holds up writers.
        if run_ids is None:
            query = "SELECT run_id, seq, ts, type, data FROM events ORDER BY run_id, seq LIMIT ?"
            key: tuple[Any, ...] = ()
            after = (
                "SELECT run_id, seq, ts, type, data FROM events WHERE (run_id, seq) > (?, ?) "
                "ORDER BY run_id, seq LIMIT ?"
            )
            while True:
                rows = self._page(query, (*key, _PAGE))
                for r in rows:
                    yield _event(r, self.path)
                if len(rows) < _PAGE:
                    return
                query, key = after, (rows[-1][0], rows[-1][1])
        else:
            for run_id in sorted(set(run_ids)):
                seq = -(2**63)
                while True:
                    rows = self._page(
                        "SELECT run_id, seq, ts, type, data FROM events WHERE run_id = ? AND seq > ? "
                        "ORDER BY seq LIMIT ?",
                        (run_id, seq, _PAGE),
                    )
                    for r in rows:
                        yield _event(r, self.path)
                    if len(rows) < _PAGE:
                        break
                    seq = rows[-1][1]

    def _page(self, query: str, params: tuple[Any, ...]) -> list[tuple[str, int, float, str, str]]:
        with self.io_lock:
            if self.closed:
                raise _closed_error(self.path)
            return self.conn.execute(query, params).fetchall()

    def runs(self) -> list[RunInfo]:
        with self.io_lock:
            self._visible_locked()
            rows = self.conn.execute(
                "SELECT run_id, started, ended, n_events, last_ts FROM runs ORDER BY started, run_id"
            ).fetchall()
        return [RunInfo(*r) for r in rows]


def _close_at_exit(backend: _Batcher) -> None:
    try:
        backend.close()
    except Exception:
        _log.exception("headway: could not flush traces to %s at exit", backend.where)


class _BatchedStore:
    """The public face of a batching backend (SQLite, PostgreSQL): every TraceStore method forwards to
    it. The store holds the backend, not the other way round, so a store nobody holds is collected and
    its finalizer flushes the backend (or, failing that, the exit hook does)."""

    def __init__(self, backend: _Batcher) -> None:
        self._b = backend
        self._finalizer = weakref.finalize(self, _close_at_exit, backend)

    def append(self, event: Event, *, durable: bool = False) -> None:
        self._b.append(event, durable)

    def flush(self) -> None:
        self._b.flush()

    def close(self) -> None:
        self._finalizer.detach()
        self._b.close()

    def events(self, run_id: str) -> list[Event]:
        return self._b.events(run_id)

    def iter_events(self, run_ids: Iterable[str] | None = None) -> Iterator[Event]:
        ids = None if run_ids is None else list(run_ids)
        self._b.visible()  # eagerly, so the stream starts with what was appended before this call
        return self._b.iter_events(ids)

    def runs(self) -> list[RunInfo]:
        return self._b.runs()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class SQLiteStore(_BatchedStore):
    """The default store: one SQLite file in WAL mode, shared safely by threads and processes.

    Read-tool events are buffered and committed in batches (at `max_batch` events, `flush_interval`
    seconds after the first one, on `flush()`/`close()`, at interpreter exit, or by the next durable
    append); `append(..., durable=True)` commits before it returns. `synchronous="NORMAL"` survives a
    killed process; `"FULL"` also survives power loss, at the cost of an fsync per commit.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ".headway/traces.db",
        *,
        flush_interval: float = 0.2,
        max_batch: int = 512,
        synchronous: Literal["OFF", "NORMAL", "FULL"] = "NORMAL",
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
    ) -> None:
        if synchronous not in _SYNCHRONOUS:  # interpolated into a PRAGMA: never let anything else through
            raise ValueError(f"synchronous must be one of {_SYNCHRONOUS}, got {synchronous!r}")
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0, got {flush_interval!r}")
        if max_batch < 1 or max_field_chars < 1:
            raise ValueError("max_batch and max_field_chars must be at least 1")
        p = Path(path)
        self.path = p if str(p) == ":memory:" else p.absolute()
        super().__init__(_Backend(self.path, flush_interval, max_batch, synchronous, max_field_chars))

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"
