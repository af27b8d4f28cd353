"""The trace store: both backends round-trip, SQLite commits when it must, and odd data never crashes."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import gc
import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from headway.traces import (
    Event,
    MemoryStore,
    RunInfo,
    SQLiteStore,
    TraceFormatError,
    TraceStore,
    export_jsonl,
    open_store,
    read_events,
    read_jsonl,
    validate_event,
)

StoreFactory = Callable[..., TraceStore]


def ev(run_id: str, seq: int, type_: str = "tool_call", ts: float | None = None, **data: Any) -> Event:
    return Event(run_id, seq, float(seq) if ts is None else ts, type_, data)  # type: ignore[arg-type]


def on_disk(path: Path, run_id: str | None = None) -> list[tuple[str, int]]:
    """What another connection sees: proves a commit, not just a write into our own transaction."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT run_id, seq FROM events ORDER BY run_id, seq").fetchall()
    return [(r, s) for r, s in rows if run_id is None or r == run_id]


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def flusher_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("headway-trace-flush")]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    made: list[TraceStore] = []

    def make(**kw: Any) -> TraceStore:
        store: TraceStore
        if request.param == "memory":
            store = MemoryStore(**{k: v for k, v in kw.items() if k == "max_field_chars"})
        else:
            store = SQLiteStore(tmp_path / f"t{len(made)}.db", **kw)
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "traces" / "run.db"


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
    # More than one page of rows, appended interleaved and out of order.
    for seq in reversed(range(700)):
        for run_id in ("b", "a", "c"):
            store.append(ev(run_id, seq))
    keys = [(e.run_id, e.seq) for e in store.iter_events()]
    assert keys == [(r, s) for r in ("a", "b", "c") for s in range(700)]
    only = [(e.run_id, e.seq) for e in store.iter_events(["c", "a", "missing"])]
    assert only == [(r, s) for r in ("a", "c") for s in range(700)]


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
    assert [(e.seq, e.data["v"]) for e in store.events("r")] == [(0, "first"), (1, "first"), (2, "new")]
    (info,) = store.runs()
    assert info.n_events == 3


def test_runs_reflect_start_and_end(make_store: StoreFactory) -> None:
    store = make_store()
    store.append(ev("open", 0, "start", ts=100.0))
    store.append(ev("open", 1, ts=101.0))
    store.append(ev("done", 0, "start", ts=50.0), durable=True)
    store.append(ev("done", 1, ts=51.0))
    store.flush()
    store.append(ev("done", 2, "end", ts=52.5))
    assert store.runs() == [
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
    with pytest.raises(ValueError, match="closed"):
        store.append(ev("r", 1))


def test_rejects_malformed_event_fields_at_append(make_store: StoreFactory) -> None:
    store = make_store()
    # The store names the field; the compiled build's Event refuses the wrong type even earlier, when built.
    with pytest.raises(TypeError, match=r"seq|int object expected"):
        store.append(Event("r", "1", 0.0, "user", {}))  # type: ignore[arg-type]
    store.append(Event("r", 1, 7, "user", {}))  # an int timestamp is fine
    assert store.events("r")[0].ts == 7.0


# --- serialisation -------------------------------------------------------------------------------------


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: Any = None


class Model(BaseModel):
    name: str
    when: datetime.date


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no")


def stored(data: Any, **kw: Any) -> Any:
    store = MemoryStore(**kw)
    store.append(Event("r", 0, 0.0, "tool_result", data))
    return store.events("r")[0].data


def test_non_json_values_are_converted() -> None:
    got = stored(
        {
            "set": {3, 1, 2},
            "bytes": b"ab\xff",
            "dt": datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC),
            "model": Model(name="n", when=datetime.date(2024, 1, 2)),
            "dc": Point(1, Point(2)),
            "enum": Colour.RED,
            "dec": Decimal("1.10"),
            "path": Path("a/b"),
            "tuple": (1, "x"),
            "obj": object(),
            "bad": BadRepr(),
        }
    )
    assert got["set"] == [1, 2, 3]
    assert got["bytes"] == "ab\\xff"
    assert got["dt"] == "2024-05-01T12:30:00+00:00"
    assert got["model"] == {"name": "n", "when": "2024-01-02"}
    assert got["dc"] == {"x": 1, "y": {"x": 2, "y": None}}
    assert (got["enum"], got["dec"], got["path"], got["tuple"]) == ("red", "1.10", "a/b", [1, "x"])
    assert got["obj"].startswith("<object object at")
    assert got["bad"] == "<unrepresentable BadRepr>"


def test_nan_inf_keys_cycles_depth_and_long_strings() -> None:
    shared = [1]
    cyclic: dict[str, Any] = {"n": 1}
    cyclic["self"] = cyclic
    loop: list[Any] = [1]
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    got = stored(
        {
            "floats": [math.nan, math.inf, -math.inf, 1.5],
            "keys": {1: "int", "1": "str", None: "none", (1, 2): "tuple", 2.5: "float"},
            "shared": [shared, shared],
            "cyclic": cyclic,
            "loop": loop,
            "deep": deep,
            "long": "x" * 25,
            "dc_cycle": Point(1, cyclic),
        },
        max_field_chars=10,
    )
    assert got["floats"] == ["NaN", "Infinity", "-Infinity", 1.5]
    assert got["keys"] == {"1": "int", "1~": "str", "null": "none", "(1, 2)": "tuple", "2.5": "float"}
    assert got["shared"] == [[1], [1]]  # shared, not cyclic: both copies kept
    assert got["cyclic"] == {"n": 1, "self": "<cycle>"}
    assert got["loop"] == [1, "<cycle>"]
    assert got["long"] == "xxxxxxxxxx…[truncated 15 chars]"
    assert got["dc_cycle"] == {"x": 1, "y": {"n": 1, "self": "<cycle>"}}
    depth, node = 0, got["deep"]
    while isinstance(node, list) and node:
        depth, node = depth + 1, node[0]
    assert 90 <= depth <= 100
    assert isinstance(node, str)
    assert "deeper" in node


def test_fast_path_keeps_the_slow_paths_answers_for_plain_data() -> None:
    # Each on its own, so the fast encoder (not a cycle elsewhere) meets it.
    assert stored({"x": math.nan, "y": -math.inf}) == {"x": "NaN", "y": "-Infinity"}
    assert stored({"big": 10**5000}) == {"big": "<int of 16610 bits>"}  # readable back, not a parse error
    assert stored({"n": 10**40}) == {"n": 10**40}
    assert stored({"s": "user\ud800"}) == {"s": "user\ud800"}  # UTF-8 cannot hold it; JSON escapes can
    assert stored({"é": "ü\u2028", "nul": "\x00"}) == {"é": "ü\u2028", "nul": "\x00"}


def test_long_strings_are_truncated_in_sqlite_too(db: Path) -> None:
    with SQLiteStore(db, max_field_chars=100) as store:
        store.append(ev("r", 0, out="y" * 10_000, small="ok"), durable=True)
        (e,) = store.events("r")
    assert e.data["out"] == "y" * 100 + "…[truncated 9900 chars]"
    assert e.data["small"] == "ok"


_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.datetimes()
)
_hashables = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5) | st.binary(max_size=5)
)
_anything = st.recursive(
    _leaves,
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=5), kids, max_size=4)
        | st.dictionaries(_hashables | st.tuples(st.integers(), st.text(max_size=3)), kids, max_size=4)
        | st.frozensets(_hashables, max_size=4)
        | st.sets(st.integers(), max_size=4)
    ),
    max_leaves=25,
)
_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=5), kids, max_size=4),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path_factory.mktemp("prop") / "p.db") as store:
        yield store


_seq = iter(range(10**9))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.text(max_size=5), _anything, max_size=5))
def test_any_nested_data_serialises_and_reads_back_as_json(
    shared_db: SQLiteStore, data: dict[str, Any]
) -> None:
    seq = next(_seq)
    mem = MemoryStore()
    mem.append(Event("p", seq, 0.0, "tool_result", data))
    shared_db.append(Event("p", seq, 0.0, "tool_result", data), durable=seq % 2 == 0)
    (from_mem,) = mem.events("p")
    from_db = shared_db.events("p")[-1]
    assert from_db.seq == seq
    assert from_db.data == from_mem.data
    assert isinstance(from_db.data, dict)
    json.dumps(from_db.data, allow_nan=False)  # strict JSON: no NaN, only string keys


@settings(max_examples=150, deadline=None)
@given(data=st.dictionaries(st.text(), _plain_json, max_size=5))
def test_plain_json_round_trips_exactly(data: dict[str, Any]) -> None:
    assert stored(data) == data


# --- SQLite durability ---------------------------------------------------------------------------------


def test_durable_append_is_committed_before_return(db: Path) -> None:
    store = SQLiteStore(db, flush_interval=60)
    store.append(ev("r", 0, "start"))
    store.append(ev("r", 1))
    assert on_disk(db) == []
    store.append(ev("r", 2, decision={"action": "allow"}), durable=True)
    assert on_disk(db) == [("r", 0), ("r", 1), ("r", 2)]
    with SQLiteStore(db) as other:
        assert [e.seq for e in other.events("r")] == [0, 1, 2]
        assert other.runs()[0].n_events == 3
    store.close()


def test_buffered_events_appear_after_flush(db: Path) -> None:
    with SQLiteStore(db, flush_interval=60) as store:
        store.append(ev("r", 0))
        assert on_disk(db) == []
        store.flush()
        assert on_disk(db) == [("r", 0)]
        store.flush()  # nothing buffered: a no-op


def test_buffered_events_appear_after_the_timer(db: Path) -> None:
    with SQLiteStore(db, flush_interval=0.05) as store:
        store.append(ev("r", 0))
        assert eventually(lambda: on_disk(db) == [("r", 0)])
        # The timer re-arms for the next batch after going idle.
        store.append(ev("r", 1))
        assert eventually(lambda: len(on_disk(db)) == 2)


def test_a_full_batch_is_written_without_waiting_for_the_timer(db: Path) -> None:
    with SQLiteStore(db, flush_interval=60, max_batch=10) as store:
        for seq in range(9):
            store.append(ev("r", seq))
        assert on_disk(db) == []
        store.append(ev("r", 9))
        assert len(on_disk(db)) == 10


def test_a_failed_commit_keeps_the_events_for_the_next_flush(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SQLiteStore(db, flush_interval=60) as store:
        store.append(ev("r", 0))
        backend = store._b
        real_write = backend._write
        calls = 0

        def fail_once(batch: list[Any]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise sqlite3.OperationalError("disk I/O error")
            real_write(batch)

        monkeypatch.setattr(backend, "_write", fail_once)
        # The decision is not on disk: the caller must learn it, so the write tool does not run.
        with pytest.raises(sqlite3.OperationalError):
            store.append(ev("r", 1, decision="allow"), durable=True)
        assert on_disk(db) == []
        store.append(ev("r", 2))
        store.flush()
        assert on_disk(db) == [("r", 0), ("r", 1), ("r", 2)]
        # A failed durable append alone, nothing else buffered, is retried by the timer.
        monkeypatch.setattr(backend, "interval", 0.05)
        calls = 0
        with pytest.raises(sqlite3.OperationalError):
            store.append(ev("r", 3), durable=True)
        assert eventually(lambda: len(on_disk(db)) == 4)


def test_an_event_sqlite_cannot_bind_is_dropped_alone(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SQLiteStore(db, flush_interval=60) as store:
        store.append(ev("ok", 0))
        store.append(ev("ok", 5, "user\ud800"))  # a lone surrogate cannot be encoded to UTF-8
        store.append(ev("bad\ud800", 0))
        store.append(ev("ok", 1), durable=True)
        assert [e.seq for e in store.events("ok")] == [0, 1]
        assert store.runs()[0].n_events == 2
    assert "cannot store" in caplog.text


def test_close_flushes_and_stops_the_flusher(db: Path) -> None:
    before = set(flusher_threads())
    store = SQLiteStore(db, flush_interval=60)
    store.append(ev("r", 0))
    assert len(set(flusher_threads()) - before) == 1
    store.close()
    assert on_disk(db) == [("r", 0)]
    assert set(flusher_threads()) <= before
    store.close()
    store.flush()
    with pytest.raises(ValueError, match="closed"):
        store.events("r")


def test_a_forgotten_store_is_flushed_when_collected(db: Path) -> None:
    before = set(flusher_threads())
    store = SQLiteStore(db, flush_interval=60)
    store.append(ev("r", 0))
    del store
    gc.collect()
    assert on_disk(db) == [("r", 0)]
    assert eventually(lambda: set(flusher_threads()) <= before)


def _run_child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_process_that_exits_without_close_still_flushes(db: Path) -> None:
    # The parent keeps its own store open on the same file meanwhile: several writers, one file.
    with SQLiteStore(db, flush_interval=60) as parent:
        parent.append(ev("parent", 0, "start"), durable=True)
        child = _run_child(
            """
            import sys
            from headway.traces import Event, SQLiteStore
            store = SQLiteStore(sys.argv[1], flush_interval=60)
            store.append(Event("child", 0, 1.0, "start", {}))
            for seq in range(1, 50):
                store.append(Event("child", seq, 1.0 + seq, "tool_call", {"n": seq}))
            store.append(Event("child", 50, 60.0, "end", {}))
            # no close(): the exit hook must flush
            """,
            str(db),
        )
        assert child.returncode == 0, child.stderr
        assert {r.run_id: r.n_events for r in parent.runs()} == {"parent": 1, "child": 51}
    with open_store(db) as reopened:  # a restarted process resumes from what earlier ones recorded
        (info,) = [r for r in reopened.runs() if r.run_id == "child"]
        assert (info.started, info.ended) == (1.0, 60.0)
        assert [e.seq for e in reopened.events("child")] == list(range(51))


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_durable_append_survives_sigkill(db: Path) -> None:
    child = _run_child(
        """
        import os, signal, sys
        from headway.traces import Event, SQLiteStore
        store = SQLiteStore(sys.argv[1], flush_interval=60)
        store.append(Event("k", 0, 0.0, "tool_call", {"read": True}))
        store.append(Event("k", 1, 1.0, "tool_call", {"decision": {"action": "allow"}}), durable=True)
        store.append(Event("k", 2, 2.0, "tool_result", {}))
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        str(db),
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert on_disk(db) == [("k", 0), ("k", 1)]  # seq 2 was only buffered: lost with the process, as expected


def test_concurrent_appends_from_threads_lose_nothing(db: Path) -> None:
    n_threads, per_thread = 8, 400
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    with SQLiteStore(db, flush_interval=0.01, max_batch=64) as store:

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
    assert counts == {"shared": n_threads * per_thread, **{f"t{t}": per_thread for t in range(n_threads)}}
    assert len(on_disk(db)) == 2 * n_threads * per_thread
    with open_store(db) as reread:
        assert [e.seq for e in reread.events("shared")] == list(range(n_threads * per_thread))


# --- opening files -------------------------------------------------------------------------------------


def test_open_store_requires_an_existing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(FileNotFoundError, match=r"nope\.db"):
        open_store(missing)
    assert not missing.exists()


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with closing(sqlite3.connect(newer)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(TraceFormatError, match="version 99"):
        open_store(newer)
    junk = tmp_path / "junk.db"
    junk.write_text("this is not sqlite, and it is long enough to have a header " * 20)
    with pytest.raises(TraceFormatError, match="not a headway trace database"):
        open_store(junk)


def test_sqlite_store_validates_its_options(db: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SQLiteStore(db, synchronous="OFF; DROP TABLE events")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="flush_interval"):
        SQLiteStore(db, flush_interval=0)


# --- JSONL and readers ---------------------------------------------------------------------------------


def _record(store: TraceStore) -> list[Event]:
    events = [
        ev("a", 0, "start", task="t"),
        ev("a", 1, args={"id": 7}, note="naïve ☃ \U0001f600"),
        ev("a", 2, "end", answer="ok"),
        ev("b", 0, "start"),
    ]
    for e in events:
        store.append(e)
    return events


def test_jsonl_export_and_import_round_trip(db: Path, tmp_path: Path) -> None:
    with SQLiteStore(db) as store:
        events = _record(store)
        out = tmp_path / "export" / "all.jsonl"
        assert export_jsonl(store, out) == 4
    assert list(read_jsonl(out)) == events
    lines = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {
        "run_id": "a",
        "seq": 0,
        "ts": 0.0,
        "type": "start",
        "data": {"task": "t"},
    }

    buf = io.StringIO()
    assert export_jsonl(db, buf, run_ids=["b"]) == 1  # from a path, filtered, into an open stream
    assert buf.getvalue().count("\n") == 1

    assert list(read_events(out)) == events
    assert list(read_events(db)) == events
    mem = MemoryStore()
    _record(mem)
    assert list(read_events(mem)) == events
    unknown = tmp_path / "trace.bin"
    unknown.write_bytes(db.read_bytes())
    assert list(read_events(unknown)) == events  # no known suffix: recognised by its header


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps(ev("a", 0, "start").to_dict())
    path.write_text(f"{good}\n\n{good[:-5]}\n", encoding="utf-8")
    events = read_jsonl(path)
    assert next(events).seq == 0
    with pytest.raises(TraceFormatError, match=r"bad\.jsonl, line 3: not valid JSON") as info:
        next(events)
    assert (info.value.path, info.value.line) == (str(path), 3)

    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(good + "\n" + json.dumps({**ev("a", 1).to_dict(), "type": "tool", "extra": 1}) + "\n")
    with pytest.raises(TraceFormatError, match=r"wrong\.jsonl, line 2: invalid event: type: .*extra: Extra"):
        list(read_jsonl(wrong))
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_validate_event() -> None:
    assert validate_event({"run_id": "r", "seq": 1, "ts": 2, "type": "user", "data": {"t": "hi"}}) == Event(
        "r", 1, 2.0, "user", {"t": "hi"}
    )
    with pytest.raises(TraceFormatError, match=r"seq: .*integer"):
        validate_event({"run_id": "r", "seq": "1", "ts": 2.0, "type": "user", "data": {}})
    with pytest.raises(TraceFormatError, match="data: Field required"):
        validate_event({"run_id": "r", "seq": 1, "ts": 2.0, "type": "user"})
    with pytest.raises(TraceFormatError, match="JSON object"):
        validate_event([1, 2])  # type: ignore[arg-type]
