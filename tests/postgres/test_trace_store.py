"""PostgresStore as a trace store: the same events in give the same events out as SQLiteStore, and it
commits when it must (durable appends, batches, timer, flush, close, exit)."""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench._pg import Server
from headway.postgres import PostgresStore
from headway.traces import Event, MemoryStore, RunInfo, SQLiteStore, TraceFormatError, TraceStore

StoreFactory = Callable[..., TraceStore]


def ev(run_id: str, seq: int, type_: str = "tool_call", ts: float | None = None, **data: Any) -> Event:
    return Event(run_id, seq, float(seq) if ts is None else ts, type_, data)  # type: ignore[arg-type]


def committed(dsn: str) -> list[tuple[str, int]]:
    """What another connection sees: proves a commit, not just a write the store holds."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT run_id, seq FROM headway_events ORDER BY run_id, seq").fetchall()
    return [(r[0], r[1]) for r in rows]


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def flusher_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("headway-trace-flush")}


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Both backends, so every test here is also a conformance check against SQLite."""
    made: list[TraceStore] = []
    dsn = request.getfixturevalue("dsn") if request.param == "postgres" else ""

    def make(**kw: Any) -> TraceStore:
        store: TraceStore
        if request.param == "postgres":
            store = PostgresStore(dsn, **kw)
        else:
            store = SQLiteStore(tmp_path / f"t{len(made)}.db", **kw)
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


# --- both stores ---------------------------------------------------------------------------------------


def test_round_trip_in_seq_order(make_store: StoreFactory) -> None:
    store = make_store()
    events = [ev("r1", 0, "start", task="refund"), ev("r1", 1, a=1, b=[1, 2], c={"d": None}, e="é☃", f=1.5)]
    later = ev("r1", 3, "end", answer="done")
    store.append(later)
    for e in events:
        store.append(e, durable=e.type == "start")
    store.append(ev("r1", 2, "tool_result", out="ok"))
    got = store.events("r1")
    assert [e.seq for e in got] == [0, 1, 2, 3]
    assert got[0] == events[0]
    assert got[1] == events[1]
    assert got[3] == later
    assert store.events("nope") == []


def test_iter_events_orders_by_run_then_seq_and_filters(make_store: StoreFactory) -> None:
    store = make_store()
    # More than one page of rows, appended interleaved and out of order; "B" < "a" < "é" by code point.
    runs = ("é", "a", "B")
    for seq in reversed(range(600)):
        for run_id in runs:
            store.append(ev(run_id, seq))
    keys = [(e.run_id, e.seq) for e in store.iter_events()]
    assert keys == [(r, s) for r in sorted(runs) for s in range(600)]
    only = [(e.run_id, e.seq) for e in store.iter_events(["é", "B", "missing"])]
    assert only == [(r, s) for r in ("B", "é") for s in range(600)]


def test_duplicate_run_id_seq_is_ignored(make_store: StoreFactory) -> None:
    store = make_store()
    store.append(ev("r", 0, "start", v="first"))
    store.append(ev("r", 1, v="first"))
    store.flush()
    # A resumed run re-appends what it already recorded, alone, durably, and mixed with new events.
    store.append(ev("r", 1, v="second"))
    store.append(ev("r", 1, v="third"), durable=True)
    store.append(ev("r", 0, "start", v="second"))
    store.append(ev("r", 2, v="new"))
    store.append(ev("r", 3, v="first in a batch"))
    store.append(ev("r", 3, v="second in the same batch"))
    assert [(e.seq, e.data["v"]) for e in store.events("r")] == [
        (0, "first"),
        (1, "first"),
        (2, "new"),
        (3, "first in a batch"),
    ]
    (info,) = store.runs()
    assert info.n_events == 4


def test_runs_reflect_start_and_end(make_store: StoreFactory) -> None:
    store = make_store()
    store.append(ev("open", 0, "start", ts=100.0))
    store.append(ev("open", 1, ts=101.0))
    store.append(ev("done", 0, "start", ts=50.0), durable=True)
    store.append(ev("done", 1, ts=51.0))
    store.flush()
    store.append(ev("done", 2, "end", ts=52.5))
    store.append(ev("nostart", 3, ts=7.0))
    store.append(ev("nostart", 4, ts=8.0))
    assert store.runs() == [
        RunInfo("nostart", started=7.0, ended=None, n_events=2, last_ts=8.0),
        RunInfo("done", started=50.0, ended=52.5, n_events=3, last_ts=52.5),
        RunInfo("open", started=100.0, ended=None, n_events=2, last_ts=101.0),
    ]


def test_data_is_serialised_at_append_time(make_store: StoreFactory) -> None:
    store = make_store()
    data: dict[str, Any] = {"items": [1]}
    store.append(Event("r", 0, 0.0, "tool_call", data))
    data["items"].append(2)
    data["added"] = True
    assert store.events("r")[0].data == {"items": [1]}


def test_append_after_close_raises_and_close_is_idempotent(make_store: StoreFactory) -> None:
    store = make_store()
    store.append(ev("r", 0))
    store.close()
    store.close()
    store.flush()
    with pytest.raises(ValueError, match="closed"):
        store.append(ev("r", 1))
    with pytest.raises(ValueError, match="closed"):
        store.events("r")


def test_rejects_malformed_event_fields_at_append(make_store: StoreFactory) -> None:
    store = make_store()
    # The store names the field; the compiled build's Event refuses the wrong type even earlier, when built.
    with pytest.raises(TypeError, match=r"seq|int object expected"):
        store.append(Event("r", "1", 0.0, "user", {}))  # type: ignore[arg-type]
    store.append(Event("r", 1, 7, "user", {}))  # an int timestamp is fine
    assert store.events("r")[0].ts == 7.0


def test_an_event_the_database_cannot_store_is_dropped_alone(
    make_store: StoreFactory, caplog: pytest.LogCaptureFixture
) -> None:
    store = make_store(flush_interval=60)
    store.append(ev("ok", 0))
    store.append(ev("ok", 5, "user\ud800"))  # a lone surrogate cannot be encoded to UTF-8
    store.append(ev("bad\ud800", 0))
    store.append(ev("ok", 1), durable=True)
    assert [e.seq for e in store.events("ok")] == [0, 1]
    assert store.runs()[0].n_events == 2
    assert "cannot store" in caplog.text


# --- the same events in, the same events out -----------------------------------------------------------


ODD = {
    "floats": [math.nan, math.inf, -math.inf, -0.0, 0.1 + 0.2, 5e-324, 1.7976931348623157e308],
    "ints": [2**63, -(2**64), 10**30],
    "text": "naïve ☃ \U0001f600 \x00 \u2028 \ud800",
    "keys": {1: "int", "1": "str", None: "none", (1, 2): "tuple"},
    "bytes": b"ab\xff",
    "nested": {"a": [{"b": ({"c"},)}]},
}


def _scenario(store: TraceStore) -> None:
    """Buffered and durable appends, duplicates, unicode run ids, odd floats and timestamps."""
    store.append(ev("ünïcode ☃", 0, "start", ts=1e9 + 0.123456789, **ODD))
    store.append(ev("ünïcode ☃", 1, ts=1e9 + 1.5, note="\U0001f600"), durable=True)
    store.append(ev("ünïcode ☃", 1, ts=0.0, note="duplicate"))
    store.append(ev("Zeta", 0, "start", ts=5.0))
    for seq in range(1, 40):
        store.append(ev("Zeta", seq, ts=5.0 + seq / 3, n=seq, big=seq * 10**20), durable=seq % 7 == 0)
    store.append(ev("Zeta", 40, "end", ts=math.inf, answer="x" * 50))
    store.append(ev("alpha", 2, ts=-1.5))
    store.append(ev("alpha", 1, ts=-2.5, odd=ODD["floats"]))
    store.flush()
    store.append(ev("alpha", 1, ts=0.0, v="dup after flush"), durable=True)


def test_postgres_reads_back_exactly_what_sqlite_does(dsn: str, tmp_path: Path) -> None:
    with (
        SQLiteStore(tmp_path / "t.db", max_field_chars=30) as lite,
        PostgresStore(dsn, max_field_chars=30) as pg,
    ):
        _scenario(lite)
        _scenario(pg)
        for run_id in ("ünïcode ☃", "Zeta", "alpha", "missing"):
            assert pg.events(run_id) == lite.events(run_id)
        assert list(pg.iter_events()) == list(lite.iter_events())
        assert list(pg.iter_events(["alpha", "Zeta"])) == list(lite.iter_events(["alpha", "Zeta"]))
        assert pg.runs() == lite.runs()
        first, end = pg.events("ünïcode ☃")[0], pg.events("Zeta")[-1]
    # Not vacuous: the odd values really were converted on the way in.
    assert first.data["floats"][:3] == ["NaN", "Infinity", "-Infinity"]
    assert end.data["answer"] == "x" * 30 + "…[truncated 20 chars]"


_anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.datetimes(),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=5), kids, max_size=4)
        | st.dictionaries(st.integers() | st.none() | st.floats(), kids, max_size=4)
        | st.frozensets(st.integers() | st.text(max_size=3), max_size=4)
    ),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def shared_pg(pg_server: Server) -> Iterator[PostgresStore]:
    with PostgresStore(pg_server.create_database("headway_prop")) as store:
        yield store
    pg_server.drop_database("headway_prop")


_seq = iter(range(10**9))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.text(max_size=5), _anything, max_size=5))
def test_any_nested_data_reads_back_as_the_memory_store_does(
    shared_pg: PostgresStore, data: dict[str, Any]
) -> None:
    seq = next(_seq)
    mem = MemoryStore()
    mem.append(Event("p", seq, 0.0, "tool_result", data))
    shared_pg.append(Event("p", seq, 0.0, "tool_result", data), durable=seq % 2 == 0)
    (from_mem,) = mem.events("p")
    from_pg = shared_pg.events("p")[-1]
    assert from_pg.seq == seq
    assert from_pg.data == from_mem.data
    json.dumps(from_pg.data, allow_nan=False)  # strict JSON: no NaN, only string keys


# --- when it commits -----------------------------------------------------------------------------------


def test_durable_append_is_committed_before_return(dsn: str) -> None:
    with PostgresStore(dsn, flush_interval=60) as store:
        store.append(ev("r", 0, "start"))
        store.append(ev("r", 1))
        assert committed(dsn) == []
        store.append(ev("r", 2, decision={"action": "allow"}), durable=True)
        assert committed(dsn) == [("r", 0), ("r", 1), ("r", 2)]
        with PostgresStore(dsn) as other:
            assert [e.seq for e in other.events("r")] == [0, 1, 2]
            assert other.runs()[0].n_events == 3


def test_buffered_events_appear_after_flush_the_timer_or_a_full_batch(dsn: str) -> None:
    with PostgresStore(dsn, flush_interval=60, max_batch=10) as store:
        store.append(ev("r", 0))
        assert committed(dsn) == []
        store.flush()
        assert committed(dsn) == [("r", 0)]
        store.flush()  # nothing buffered: a no-op
        for seq in range(1, 10):
            store.append(ev("r", seq))
        assert len(committed(dsn)) == 1
        store.append(ev("r", 10))
        assert len(committed(dsn)) == 11
    with PostgresStore(dsn, flush_interval=0.05) as store:
        store.append(ev("t", 0))
        assert eventually(lambda: ("t", 0) in committed(dsn))
        store.append(ev("t", 1))  # the timer re-arms for the next batch after going idle
        assert eventually(lambda: ("t", 1) in committed(dsn))


def test_reading_a_run_commits_its_buffered_events_first(dsn: str) -> None:
    with PostgresStore(dsn, flush_interval=60) as store:
        store.append(ev("mine", 0))
        store.append(ev("other", 0))
        assert store.events("unrelated") == []
        assert committed(dsn) == []  # a read of another run does not pay for a commit
        assert [e.seq for e in store.events("mine")] == [0]
        assert committed(dsn) == [("mine", 0), ("other", 0)]


def test_a_failed_write_keeps_the_events_for_the_next_flush(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(dsn, flush_interval=60) as store:
        store.append(ev("r", 0))
        backend = store._b
        real_write = backend._write
        calls = 0

        def fail_once(batch: list[Any]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            real_write(batch)

        monkeypatch.setattr(backend, "_write", fail_once)
        # The decision is not stored: the caller must learn it, so the write tool does not run.
        with pytest.raises(psycopg.OperationalError):
            store.append(ev("r", 1, decision="allow"), durable=True)
        assert committed(dsn) == []
        store.append(ev("r", 2))
        store.flush()
        assert committed(dsn) == [("r", 0), ("r", 1), ("r", 2)]
        # A failed durable append alone, nothing else buffered, is retried by the timer.
        monkeypatch.setattr(backend, "interval", 0.05)
        calls = 0
        with pytest.raises(psycopg.OperationalError):
            store.append(ev("r", 3), durable=True)
        assert eventually(lambda: len(committed(dsn)) == 4)


def test_a_broken_connection_is_replaced(dsn: str) -> None:
    with PostgresStore(dsn, pool_size=1) as store:
        store.append(ev("r", 0), durable=True)
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(psycopg.OperationalError):
            store.events("r")  # the query that finds the connection dead fails...
        store.append(ev("r", 1), durable=True)  # ...and the next one gets a new connection
        assert [e.seq for e in store.events("r")] == [0, 1]


def test_close_flushes_and_stops_the_flusher(dsn: str) -> None:
    before = flusher_threads()
    store = PostgresStore(dsn, flush_interval=60)
    store.append(ev("r", 0))
    assert len(flusher_threads() - before) == 1
    store.close()
    assert committed(dsn) == [("r", 0)]
    assert flusher_threads() <= before


def test_a_forgotten_store_is_flushed_when_collected(dsn: str) -> None:
    before = flusher_threads()
    store = PostgresStore(dsn, flush_interval=60)
    store.append(ev("r", 0))
    del store
    gc.collect()
    assert committed(dsn) == [("r", 0)]
    assert eventually(lambda: flusher_threads() <= before)


def _run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_process_that_exits_without_close_still_flushes(dsn: str) -> None:
    # The parent keeps its own store open on the same database meanwhile: several writers, one database.
    with PostgresStore(dsn, flush_interval=60) as parent:
        parent.append(ev("parent", 0, "start"), durable=True)
        child = _run_child(
            """
            import sys
            from headway.postgres import PostgresStore
            from headway.traces import Event
            store = PostgresStore(sys.argv[1], flush_interval=60)
            store.append(Event("child", 0, 1.0, "start", {}))
            for seq in range(1, 50):
                store.append(Event("child", seq, 1.0 + seq, "tool_call", {"n": seq}))
            store.append(Event("child", 50, 60.0, "end", {}))
            # no close(): the exit hook must flush
            """,
            dsn,
        )
        assert child.returncode == 0, child.stderr
        assert {r.run_id: r.n_events for r in parent.runs()} == {"parent": 1, "child": 51}
        (info,) = [r for r in parent.runs() if r.run_id == "child"]
        assert (info.started, info.ended) == (1.0, 60.0)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_durable_append_survives_sigkill(dsn: str) -> None:
    child = _run_child(
        """
        import os, signal, sys
        from headway.postgres import PostgresStore
        from headway.traces import Event
        store = PostgresStore(sys.argv[1], flush_interval=60)
        store.append(Event("k", 0, 0.0, "tool_call", {"read": True}))
        store.append(Event("k", 1, 1.0, "tool_call", {"decision": {"action": "allow"}}), durable=True)
        store.append(Event("k", 2, 2.0, "tool_result", {}))
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        dsn,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert committed(dsn) == [("k", 0), ("k", 1)]  # seq 2 was only buffered: lost with the process


def test_concurrent_appends_from_threads_lose_nothing(dsn: str) -> None:
    n_threads, per_thread = 8, 300
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    with PostgresStore(dsn, flush_interval=0.01, max_batch=64) as store:

        def work(t: int) -> None:
            try:
                barrier.wait()
                for i in range(per_thread):
                    store.append(ev(f"t{t}", i, payload=i), durable=i % 25 == 0)
                    store.append(ev("shared", t * per_thread + i))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        counts = {r.run_id: r.n_events for r in store.runs()}
        assert [e.seq for e in store.events("shared")] == list(range(n_threads * per_thread))
    assert counts == {"shared": n_threads * per_thread, **{f"t{t}": per_thread for t in range(n_threads)}}


# --- opening -------------------------------------------------------------------------------------------


def test_options_are_validated(dsn: str) -> None:
    with pytest.raises(ValueError, match="flush_interval"):
        PostgresStore(dsn, flush_interval=0)
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore(dsn, pool_size=0)


def test_a_newer_schema_is_refused_and_the_password_never_shown(dsn: str) -> None:
    PostgresStore(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE headway_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(TraceFormatError, match="version 99"):
        PostgresStore(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE headway_meta SET value = '1' WHERE key = 'schema_version'")
    with PostgresStore(dsn + " password=hunter2") as store:
        assert "hunter2" not in repr(store)
        assert "dbname=" in repr(store)


def test_stores_started_at_once_in_many_threads_create_the_schema_once(dsn: str) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            barrier.wait()
            PostgresStore(dsn).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
