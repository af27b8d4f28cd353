"""Recorded runs, read back: open a trace database, stream its events, export and import JSONL.

Every source reads back as a stream of `Event`s; JSONL from elsewhere is validated line by line.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._store import MemoryStore, RunInfo, SQLiteStore, TraceFormatError, TraceStore, encode_data
from ._types import Event, EventType

__all__ = [
    "Event",
    "MemoryStore",
    "RunInfo",
    "SQLiteStore",
    "TraceFormatError",
    "TraceStore",
    "export_jsonl",
    "open_store",
    "read_events",
    "read_jsonl",
    "validate_event",
]

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
_DB_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3"})
_SQLITE_MAGIC = b"SQLite format 3\x00"

_Source = TraceStore | str | os.PathLike[str]


def open_store(path: str | os.PathLike[str]) -> SQLiteStore:
    """Open an existing trace database, e.g. to resume or inspect runs recorded by an earlier process."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, "No trace database", str(p))
    return SQLiteStore(p)


def read_events(source: _Source) -> Iterator[Event]:
    """Stream every event of a store, a `.db` file or a `.jsonl` file, ordered by run then seq for stores.

    A path with another suffix is recognised by its first bytes. A missing file raises at once, not at
    the first `next()`.
    """
    return _events(source, None)


def export_jsonl(
    source: _Source,
    dest: str | os.PathLike[str] | IO[str],
    run_ids: Iterable[str] | None = None,
) -> int:
    """Write events as JSON Lines, one `{"run_id","seq","ts","type","data"}` object per line.

    `dest` is a path (parent directories are created) or an open text stream, left open. Returns the
    number of events written.
    """
    events = _events(source, run_ids)
    if isinstance(dest, str | os.PathLike):
        out = Path(dest)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", encoding="utf-8", newline="\n") as f:
            return _write_lines(events, f)
    return _write_lines(events, dest)


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[Event]:
    """Stream the events of a JSON Lines file; a bad line raises `TraceFormatError` naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(errno.ENOENT, "No JSONL trace file", str(p))
    return _read_jsonl(p)


class _EventRecord(BaseModel):
    # Strict: a foreign "seq": "3" or "ts": true is a writer's bug worth reporting, not coercing.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    run_id: str = Field(min_length=1)
    seq: int = Field(ge=0)
    ts: float
    type: EventType
    data: dict[str, Any]


def validate_event(obj: Mapping[str, Any]) -> Event:
    """Check one event-shaped mapping (e.g. a parsed JSONL line) and build the `Event`.

    Extra keys are refused and `type` must be one of the known event types; the `TraceFormatError`
    lists every problem by field.
    """
    if not isinstance(obj, Mapping):
        raise TraceFormatError(f"an event must be a JSON object, got {type(obj).__name__}")
    try:
        rec = _EventRecord.model_validate(dict(obj))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<event>'}: {err['msg']}" for err in exc.errors()
        )
        raise TraceFormatError(f"invalid event: {problems}") from exc
    return Event(rec.run_id, rec.seq, rec.ts, rec.type, rec.data)


def _events(source: _Source, run_ids: Iterable[str] | None) -> Iterator[Event]:
    if not isinstance(source, str | os.PathLike):
        return source.iter_events(run_ids)
    p = Path(source)
    if _is_jsonl(p):
        events = read_jsonl(p)
        if run_ids is None:
            return events
        wanted = frozenset(run_ids)
        return (e for e in events if e.run_id in wanted)
    store = open_store(p)
    return _drain(store, store.iter_events(run_ids))


def _is_jsonl(p: Path) -> bool:
    suffix = p.suffix.lower()
    if suffix in _JSONL_SUFFIXES or suffix in _DB_SUFFIXES:
        return suffix in _JSONL_SUFFIXES
    if not p.exists():
        raise FileNotFoundError(errno.ENOENT, "No trace file", str(p))
    with p.open("rb") as f:
        return f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC


def _drain(store: SQLiteStore, events: Iterator[Event]) -> Iterator[Event]:
    try:
        yield from events
    finally:
        store.close()


def _write_lines(events: Iterator[Event], f: IO[str]) -> int:
    n = 0
    for e in events:
        # max_field_chars is unbounded: the store already truncated when it recorded the event.
        f.write(encode_data(e.to_dict(), max_field_chars=2**62))
        f.write("\n")
        n += 1
    return n


def _read_jsonl(p: Path) -> Iterator[Event]:
    with p.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except (ValueError, RecursionError) as exc:  # ValueError covers bad JSON and bad UTF-8
                raise TraceFormatError(
                    f"{p}, line {lineno}: not valid JSON: {exc}", path=str(p), line=lineno
                ) from exc
            try:
                event = validate_event(obj)
            except TraceFormatError as exc:
                raise TraceFormatError(f"{p}, line {lineno}: {exc}", path=str(p), line=lineno) from exc
            yield event
