"""PostgreSQL backend: traces, escalations and the exactly-once ledger in one database, shared by many
agent worker processes. `PostgresStore(dsn)` is both a `TraceStore` and an `EscalationStore`.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

try:
    import psycopg
    from psycopg import conninfo
    from psycopg.pq import TransactionStatus
    from psycopg.rows import TupleRow
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f'headway.postgres needs psycopg 3: pip install "headway[postgres]" ({exc})') from exc

from ._encode import DEFAULT_MAX_FIELD_CHARS, _Row
from ._escalations import (
    Claim,
    Delivery,
    Escalation,
    HumanAction,
    LedgerEntry,
    Status,
    UnknownEscalation,
    _entry,
    conflict,
    decided,
    encode,
    filters,
    validate_decision,
)
from ._store import _PAGE, RunInfo, TraceFormatError, _BatchedStore, _Batcher, _event
from ._types import Event

__all__ = ["PostgresStore"]

_log = logging.getLogger("headway.traces")

# Bump when the tables change; the database keeps its version in headway_meta.
SCHEMA_VERSION = 1
# pg_advisory_xact_lock key ("headway" in ASCII): processes starting at once create the tables one at a time,
# because concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalogue.
_SCHEMA_LOCK = 0x68656164776179
_INT8 = 2**63

# run_id is COLLATE "C" so runs sort by code point, as SQLite's BINARY and Python's sorted() do.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS headway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS headway_events (
        run_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, ts DOUBLE PRECISION NOT NULL,
        type TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq))""",
    # `started` reads as coalesce(start_ts, first_ts): the start event's time, else the earliest event's.
    # Kept apart so one upsert can merge a batch without knowing what the row held.
    """CREATE TABLE IF NOT EXISTS headway_runs (
        run_id TEXT COLLATE "C" PRIMARY KEY, start_ts DOUBLE PRECISION, first_ts DOUBLE PRECISION NOT NULL,
        ended DOUBLE PRECISION, n_events BIGINT NOT NULL, last_ts DOUBLE PRECISION NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS headway_escalations (
        id TEXT COLLATE "C" PRIMARY KEY, run_id TEXT NOT NULL, call_id TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS headway_escalations_status ON headway_escalations (status, created_at)",
    "CREATE INDEX IF NOT EXISTS headway_escalations_run ON headway_escalations (run_id)",
    """CREATE TABLE IF NOT EXISTS headway_deliveries (
        escalation_id TEXT NOT NULL, target TEXT NOT NULL, attempt INTEGER NOT NULL, ok BOOLEAN NOT NULL,
        detail TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS headway_deliveries_id ON headway_deliveries (escalation_id)",
    """CREATE TABLE IF NOT EXISTS headway_ledger (
        run_id TEXT NOT NULL, call_id TEXT NOT NULL, state TEXT NOT NULL, output TEXT, error TEXT,
        updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (run_id, call_id))""",
)

# One statement, one round trip per batch: insert the events (duplicates of (run_id, seq) ignored, the
# first one kept) and fold the rows actually inserted into the per-run summary.
_WRITE = """
WITH ins AS (
    INSERT INTO headway_events (run_id, seq, ts, type, data)
    SELECT * FROM unnest(%s::text[], %s::int8[], %s::float8[], %s::text[], %s::text[])
    ON CONFLICT DO NOTHING
    RETURNING run_id, seq, ts, type
)
INSERT INTO headway_runs AS r (run_id, start_ts, first_ts, ended, n_events, last_ts)
SELECT run_id,
    (array_agg(ts ORDER BY seq DESC) FILTER (WHERE type = 'start'))[1],
    min(ts),
    (array_agg(ts ORDER BY seq DESC) FILTER (WHERE type = 'end'))[1],
    count(*),
    max(ts)
FROM ins GROUP BY run_id ORDER BY run_id
ON CONFLICT (run_id) DO UPDATE SET
    start_ts = coalesce(excluded.start_ts, r.start_ts),
    first_ts = least(r.first_ts, excluded.first_ts),
    ended = coalesce(excluded.ended, r.ended),
    n_events = r.n_events + excluded.n_events,
    last_ts = greatest(r.last_ts, excluded.last_ts)
"""
_COLUMNS = "SELECT run_id, seq, ts, type, data FROM headway_events"
_LEDGER = "SELECT state, output, error, updated_at FROM headway_ledger WHERE run_id = %s AND call_id = %s"

_Conn = psycopg.Connection[TupleRow]


def _unstorable(row: _Row) -> str | None:
    """Why PostgreSQL would refuse this row, checked up front: one bad value must not fail the whole batch.
    (`data` is ASCII JSON from `encode_data`; only the raw strings and seq can be out of bounds.)"""
    for s in (row[0], row[3]):
        if "\x00" in s:
            return "text holds a NUL character"
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as exc:
            return str(exc)
    if not -_INT8 <= row[1] < _INT8:
        return "seq does not fit in 64 bits"
    return None


class _Pool:
    """A few connections shared by threads; each borrower has one to itself for the length of a `with`.

    Connections are in autocommit mode: single statements commit at once, and `conn.transaction()`
    groups the few that must go together.
    """

    def __init__(self, dsn: str, size: int) -> None:
        self.dsn = dsn
        self.closed = False
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[_Conn] = []
        self._pid = os.getpid()

    @contextmanager
    def connection(self) -> Iterator[_Conn]:
        with self._slots:
            conn = self._take()
            try:
                yield conn
            finally:
                self._give(conn)

    def _take(self) -> _Conn:
        with self._lock:
            if self.closed:
                raise ValueError("PostgresStore is closed")
            self._after_fork()
            if self._idle:
                return self._idle.pop()
        return psycopg.connect(self.dsn, autocommit=True)

    def _give(self, conn: _Conn) -> None:
        # A broken connection, or one left mid-statement by an interrupt, is not handed out again.
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            with self._lock:
                if not self.closed and os.getpid() == self._pid:
                    self._idle.append(conn)
                    return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._after_fork()
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _after_fork(self) -> None:
        """In a forked child, drop the idle connections inherited from the parent. Caller holds _lock.

        Their sockets belong to the parent's sessions: using them would mix two processes' traffic, and
        closing them (even by garbage collection) would tell the server to end the parent's sessions. So
        each socket is first swapped for /dev/null, where the goodbye message goes instead.
        """
        if os.getpid() == self._pid:
            return
        with open(os.devnull, "wb") as null:
            for conn in self._idle:
                os.dup2(null.fileno(), conn.fileno())
                conn.close()
        self._idle, self._pid = [], os.getpid()


def _create_schema(pool: _Pool, where: str) -> None:
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        row = conn.execute("SELECT to_regclass('headway_meta') IS NOT NULL").fetchone()
        version = 0
        if row is not None and row[0]:
            got = conn.execute("SELECT value FROM headway_meta WHERE key = 'schema_version'").fetchone()
            version = 0 if got is None else int(got[0])
        if version > SCHEMA_VERSION:
            raise TraceFormatError(
                f"{where} uses headway's PostgreSQL schema version {version}; this headway reads up to "
                f"{SCHEMA_VERSION}: upgrade headway to use it",
                path=where,
            )
        if version == SCHEMA_VERSION:
            return
        for ddl in _SCHEMA:
            conn.execute(ddl)
        conn.execute(
            "INSERT INTO headway_meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )


class _Backend(_Batcher):
    """The trace side of a `PostgresStore`: the shared batching engine over a connection pool. Reads
    need no lock: each borrows a connection."""

    def __init__(self, dsn: str, flush_interval: float, max_batch: int, limit: int, pool_size: int) -> None:
        params = conninfo.conninfo_to_dict(dsn)
        params.pop("password", None)
        self.display = conninfo.make_conninfo("", **params)  # the DSN without its password, for messages
        super().__init__(f"PostgreSQL ({self.display})", flush_interval, max_batch, limit)
        self.pool = _Pool(dsn, pool_size)
        try:
            _create_schema(self.pool, self.where)
        except BaseException:
            self.pool.close()
            raise

    def _disconnect(self) -> None:
        self.pool.close()

    def _write(self, batch: list[_Row]) -> None:
        rows: list[_Row] = []
        for r in batch:
            problem = _unstorable(r)
            if problem is None:
                rows.append(r)
            else:
                _log.error(
                    "headway: dropping an event PostgreSQL cannot store (run %r seq %r): %s",
                    r[0],
                    r[1],
                    problem,
                )
        if not rows:
            return
        # Key order: two processes writing the same keys take their locks in the same order, so they
        # cannot deadlock. The sort is stable, so of two events with the same key the first appended wins.
        rows.sort(key=lambda r: (r[0], r[1]))
        run_ids, seqs, tss, types, datas = (list(col) for col in zip(*rows, strict=True))
        with self.pool.connection() as conn:
            conn.execute(_WRITE, (run_ids, seqs, tss, types, datas))

    # reading

    def fetch(self, query: str, params: tuple[Any, ...]) -> list[TupleRow]:
        with self.pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def events(self, run_id: str) -> list[Event]:
        self.visible(run_id)
        rows = self.fetch(f"{_COLUMNS} WHERE run_id = %s ORDER BY seq", (run_id,))
        return [_event(r, self.where) for r in rows]

    def iter_events(self, run_ids: list[str] | None) -> Iterator[Event]:
        # Keyset pages, a connection borrowed only while one is fetched: constant memory, and a slow or
        # abandoned consumer holds nothing.
        if run_ids is None:
            key: tuple[Any, ...] = ()
            query = f"{_COLUMNS} ORDER BY run_id, seq LIMIT %s"
            while True:
                rows = self.fetch(query, (*key, _PAGE))
                for r in rows:
                    yield _event(r, self.where)
                if len(rows) < _PAGE:
                    return
                query = f"{_COLUMNS} WHERE (run_id, seq) > (%s, %s) ORDER BY run_id, seq LIMIT %s"
                key = (rows[-1][0], rows[-1][1])
        else:
            for run_id in sorted(set(run_ids)):
                seq = -_INT8
                while True:
                    rows = self.fetch(
                        f"{_COLUMNS} WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                        (run_id, seq, _PAGE),
                    )
                    for r in rows:
                        yield _event(r, self.where)
                    if len(rows) < _PAGE:
                        break
                    seq = rows[-1][1]

    def runs(self) -> list[RunInfo]:
        self.visible()
        rows = self.fetch(
            "SELECT run_id, coalesce(start_ts, first_ts) AS started, ended, n_events, last_ts "
            "FROM headway_runs ORDER BY started, run_id",
            (),
        )
        return [RunInfo(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows]


def _escalation(data: str) -> Escalation:
    return Escalation.from_dict(json.loads(data))


class PostgresStore(_BatchedStore):
    """Traces, escalations and the exactly-once ledger in one PostgreSQL database, safe across threads and
    processes. Needs `pip install "headway[postgres]"`.

    Traces behave as in `SQLiteStore`: events are buffered and written in batches (at `max_batch`,
    `flush_interval` seconds after the first one, on `flush()`/`close()`, before a read of a run with
    buffered events, at interpreter exit) and `append(..., durable=True)` commits before it returns.
    Escalations behave as in `SQLiteEscalations`: `decide` is a conditional update, so of several workers
    deciding the same escalation exactly one succeeds. The tables (`headway_*`) are created on first
    connect in the DSN's default schema. `pool_size` bounds the connections this store holds.
    """

    def __init__(
        self,
        dsn: str,
        *,
        flush_interval: float = 0.2,
        max_batch: int = 512,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
        pool_size: int = 4,
    ) -> None:
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0, got {flush_interval!r}")
        if max_batch < 1 or max_field_chars < 1 or pool_size < 1:
            raise ValueError("max_batch, max_field_chars and pool_size must be at least 1")
        backend = _Backend(dsn, flush_interval, max_batch, max_field_chars, pool_size)
        super().__init__(backend)
        self._pg = backend  # typed as the PostgreSQL backend: reads of escalations borrow its pool
        self._pool = backend.pool

    # ---- EscalationStore ----------------------------------------------------------------------------

    def create(self, escalation: Escalation) -> Escalation:
        e = escalation
        with self._pool.connection() as conn:
            row = conn.execute(
                "INSERT INTO headway_escalations (id, run_id, call_id, created_at, status, data) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING data",
                (e.id, e.run_id, e.call_id, e.created_at, e.status, encode(e.to_dict())),
            ).fetchone()
            if row is None:  # it existed: whoever created it first wins, as it stands now
                row = conn.execute("SELECT data FROM headway_escalations WHERE id = %s", (e.id,)).fetchone()
        assert row is not None  # escalations are never deleted
        return _escalation(row[0])

    def get(self, escalation_id: str) -> Escalation | None:
        rows = self._pg.fetch("SELECT data FROM headway_escalations WHERE id = %s", (escalation_id,))
        return _escalation(rows[0][0]) if rows else None

    def list(
        self, *, status: Status | None = None, run_id: str | None = None, limit: int = 100
    ) -> builtins.list[Escalation]:
        where, params = filters(status, run_id, "%s")
        rows = self._pg.fetch(
            f"SELECT data FROM headway_escalations {where} ORDER BY created_at DESC, id LIMIT %s",
            (*params, max(0, limit)),
        )
        return [_escalation(r[0]) for r in rows]

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
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT data FROM headway_escalations WHERE id = %s", (escalation_id,)
            ).fetchone()
            if row is None:
                raise UnknownEscalation(f"no escalation {escalation_id!r}")
            esc = _escalation(row[0])
            a, who, msg, new_args, txt = validate_decision(action, by, message, args, text)
            if not esc.pending:
                raise conflict(esc)
            out = decided(esc, a, who, msg, new_args, txt, time.time())
            # The store is the arbiter: of several workers that all read `pending`, the first UPDATE wins
            # and the others, re-checking the row once the winner commits, match nothing.
            won = conn.execute(
                "UPDATE headway_escalations SET status = %s, data = %s WHERE id = %s AND status = 'pending' "
                "RETURNING data",
                (out.status, encode(out.to_dict()), escalation_id),
            ).fetchone()
            if won is None:
                now = conn.execute(
                    "SELECT data FROM headway_escalations WHERE id = %s", (escalation_id,)
                ).fetchone()
                raise conflict(esc if now is None else _escalation(now[0]))
        return _escalation(won[0])

    def record_delivery(self, delivery: Delivery) -> None:
        d = delivery
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO headway_deliveries (escalation_id, target, attempt, ok, detail, at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (d.escalation_id, d.target, d.attempt, bool(d.ok), d.detail[:2000], d.at),
            )

    def deliveries(self, escalation_id: str) -> builtins.list[Delivery]:
        rows = self._pg.fetch(
            "SELECT escalation_id, target, attempt, ok, detail, at FROM headway_deliveries "
            "WHERE escalation_id = %s ORDER BY at, attempt",
            (escalation_id,),
        )
        return [Delivery(r[0], r[1], int(r[2]), bool(r[3]), r[4], float(r[5])) for r in rows]

    def begin(self, run_id: str, call_id: str) -> Claim:
        with self._pool.connection() as conn:
            while True:
                # The insert is the claim: of several callers exactly one gets a row back.
                mine = conn.execute(
                    "INSERT INTO headway_ledger (run_id, call_id, state, updated_at) "
                    "VALUES (%s, %s, 'executing', %s) ON CONFLICT DO NOTHING RETURNING 1",
                    (run_id, call_id, time.time()),
                ).fetchone()
                if mine is not None:
                    return Claim(True)
                row = conn.execute(_LEDGER, (run_id, call_id)).fetchone()
                if row is not None:
                    return Claim(False, _entry(run_id, call_id, row))
                # Released between our insert and our read: the call is free again, so claim it afresh.

    def finish(self, run_id: str, call_id: str, output: Any, error: str | None) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO headway_ledger (run_id, call_id, state, output, error, updated_at) "
                "VALUES (%s, %s, 'executed', %s, %s, %s) ON CONFLICT (run_id, call_id) DO UPDATE SET "
                "state = 'executed', output = excluded.output, error = excluded.error, "
                "updated_at = excluded.updated_at",
                (run_id, call_id, encode(output), error, time.time()),
            )

    def release(self, run_id: str, call_id: str) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "DELETE FROM headway_ledger WHERE run_id = %s AND call_id = %s AND state = 'executing'",
                (run_id, call_id),
            )

    def ledger(self, run_id: str, call_id: str) -> LedgerEntry | None:
        rows = self._pg.fetch(_LEDGER, (run_id, call_id))
        return _entry(run_id, call_id, rows[0]) if rows else None

    # ---- both ---------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"PostgresStore({self._pg.display!r})"
