"""Recorded runs by id, from wherever they were kept: a TraceStore, a SQLite file, a JSONL export, or a
PostgreSQL DSN. What regression export, trajectory fixtures and evaluation read their runs from.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ._errors import HeadwayError
from ._store import TraceStore, is_postgres_dsn
from ._types import Event
from .traces import open_store, read_jsonl

Source = TraceStore | str | os.PathLike[str]

_SHOWN_IDS = 10
_SQLITE_MAGIC = b"SQLite format 3\x00"


def load_run(source: Source, run_id: str | None = None) -> list[Event]:
    """The events of one recorded run, in order. Without `run_id` the source must hold exactly one run.

    Raises HeadwayError naming the runs the source does hold when `run_id` is not among them.
    """
    runs = recorded_runs(source, None if run_id is None else [run_id])
    if run_id is None:
        if len(runs) != 1:
            raise HeadwayError(f"{_name(source)} holds {len(runs)} runs; say which: {_ids(list(runs))}")
        return next(iter(runs.values()))
    if run_id not in runs:
        raise HeadwayError(f"no run {run_id!r} in {_name(source)} (its runs: {_ids(_run_ids(source))})")
    return runs[run_id]


def recorded_runs(source: Source, run_ids: list[str] | None = None) -> dict[str, list[Event]]:
    """Every run of the source (or only `run_ids`), each run's events in `seq` order."""
    out: dict[str, list[Event]] = {}
    with _opened(source) as opened:
        if isinstance(opened, Path):
            wanted = None if run_ids is None else set(run_ids)
            events: Iterable[Event] = (e for e in read_jsonl(opened) if wanted is None or e.run_id in wanted)
        else:
            events = opened.iter_events(run_ids)
        for e in events:
            out.setdefault(e.run_id, []).append(e)
    for run in out.values():
        run.sort(key=lambda e: e.seq)  # a JSONL file may interleave runs
    return out


def _run_ids(source: Source) -> list[str]:
    """The ids of the runs a source holds (a store answers from its index, without reading events)."""
    with _opened(source) as opened:
        if isinstance(opened, Path):
            return list(dict.fromkeys(e.run_id for e in read_jsonl(opened)))
        return [r.run_id for r in opened.runs()]


@contextmanager
def _opened(source: Source) -> Iterator[TraceStore | Path]:
    """The source as a store (closed afterwards when opened here) or, for JSON Lines, its path."""
    if not isinstance(source, str | os.PathLike):
        yield source
        return
    target = os.fspath(source)
    if is_postgres_dsn(target):
        # By name: the PostgreSQL backend is an extra (and imports psycopg).
        try:
            store: TraceStore = importlib.import_module("headway.postgres").PostgresStore(target)
        except ImportError as e:
            raise HeadwayError(str(e)) from None
    else:
        path = Path(target)
        if not path.exists():
            raise HeadwayError(f"no trace store or file at {path}")
        if not _is_sqlite(path):
            yield path
            return
        store = open_store(path)
    try:
        yield store
    finally:
        store.close()


def _is_sqlite(path: Path) -> bool:
    if path.is_dir():
        raise HeadwayError(f"{path} is a directory, not a trace store or file")
    with path.open("rb") as f:
        return f.read(len(_SQLITE_MAGIC)) == _SQLITE_MAGIC


def _name(source: Source) -> str:
    return os.fspath(source) if isinstance(source, str | os.PathLike) else type(source).__name__


def _ids(ids: list[str]) -> str:
    if not ids:
        return "none"
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return ", ".join(repr(i) for i in ids[:_SHOWN_IDS]) + more
