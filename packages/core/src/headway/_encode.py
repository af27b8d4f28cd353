"""Event data to JSON text for the trace stores: never raises, whatever the data holds.

Kept apart from the stores so it can be compiled (every event passes here on the agent's path; the
stores' Protocols and finalizers cannot be compiled).
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import json.encoder
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence, Set
from decimal import Decimal
from pathlib import PurePath
from typing import Any, cast

from pydantic_core import to_json as _to_json

from ._normalize import safe_repr
from ._types import Event, EventType

MAX_DEPTH = 100
DEFAULT_MAX_FIELD_CHARS = 1_000_000

# run_id, seq, ts, type, data as JSON text: what a row of the events table holds.
_Row = tuple[str, int, float, str, str]


def _default(o: Any) -> Any:
    """Shallow JSON stand-in for a value json cannot encode; the encoder recurses into what it returns."""
    if isinstance(o, Mapping):
        return dict(o)
    if isinstance(o, Set):
        items = list(o)
        try:
            # Sets have no order; sorting keeps the same set serialising to the same text.
            return sorted(items)
        except TypeError:
            return items
    if isinstance(o, bytes | bytearray | memoryview):
        return bytes(o).decode("utf-8", "backslashreplace")
    if isinstance(o, datetime.date | datetime.time | datetime.timedelta):
        return str(o) if isinstance(o, datetime.timedelta) else o.isoformat()
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, Decimal | uuid.UUID | PurePath):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name, None) for f in dataclasses.fields(o)}
    if callable(getattr(type(o), "model_dump", None)):  # pydantic v2 models, without importing pydantic
        return o.model_dump(mode="json")
    if isinstance(o, Sequence) and not isinstance(o, str):
        return list(o)
    return safe_repr(o)


def _make_ascii_encoder() -> Callable[[object], str]:
    # json.dumps builds a new encoder per call; building the C one once saves ~0.5 µs per event.
    # markers=None (no cycle bookkeeping) also makes it stateless, so threads can share it: a cycle
    # then ends in RecursionError and takes the slow path, which names it.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (e.g. PyPy)
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_default).encode
    chunks = make(None, _default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False)

    def encode(o: object) -> str:
        return "".join(chunks(o, 0))

    return encode


# The slow path's encoder: ASCII output keeps lone surrogates (which UTF-8 cannot hold) as escapes.
_ascii_encode = _make_ascii_encoder()

# Python refuses to parse integers of more than 4300 digits (sys.int_max_str_digits): a trace holding one
# could not be read back, so such text goes the slow way, which writes those integers as strings.
_LONG_DIGITS = re.compile(rb"\d{4300}")


def _fast_encode(data: object) -> str:
    """pydantic-core's serialiser (Rust, already a dependency): about 3x faster than the C json encoder
    on event data, which matters because every event is encoded on the agent's path. Anything it refuses
    (cycles, depth, surrogates, odd keys) raises and takes the slow path. Sets keep their iteration
    order here (only the slow path sorts them); tool payloads are JSON-shaped and rarely hold one."""
    raw = _to_json(data, inf_nan_mode="strings", fallback=_default)
    if len(raw) > 4300 and _LONG_DIGITS.search(raw):
        raise ValueError("an integer too long to read back")
    return raw.decode()


def encode_data(data: object, max_field_chars: int = DEFAULT_MAX_FIELD_CHARS) -> str:
    """Serialise event data to compact JSON text; never raises, whatever `data` holds.

    Plain data goes straight through the fast encoder. Only when that fails (cycles, odd keys, deep
    nesting) or the text is longer than `max_field_chars` do we walk the structure in Python.
    """
    try:
        text = _fast_encode(data)
    except Exception:
        return _slow_encode(data, max_field_chars)
    if len(text) > max_field_chars:
        return _slow_encode(data, max_field_chars)
    return text


def _slow_encode(data: object, limit: int) -> str:
    try:
        return _ascii_encode(_sanitise(data, limit, 0, set()))
    except Exception as exc:
        # Only a container mutated by another thread while we walk it gets here; keep a trace of it.
        return _ascii_encode({"<unserialisable>": _clip(safe_repr(data), limit), "error": safe_repr(exc)})


def _clip(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    return f"{s[:limit]}…[truncated {len(s) - limit} chars]"


def _float(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(x)


def _int(x: int) -> int | str:
    # Python refuses to print ints beyond ~4300 digits; JSON readers would choke well before that.
    if x.bit_length() > 14_000:
        return f"<int of {x.bit_length()} bits>"
    return int(x)


def _key(k: object, limit: int) -> str:
    if isinstance(k, str):
        return _clip(str(k), limit)
    if k is None or isinstance(k, bool):
        return json.dumps(k)
    if isinstance(k, int):
        return str(_int(k))
    if isinstance(k, float):
        return str(_float(k))
    try:
        converted = _default(k)
    except Exception:
        converted = None
    return _clip(converted if isinstance(converted, str) else safe_repr(k), limit)


def _sanitise(o: object, limit: int, depth: int, ancestors: set[int]) -> Any:
    """A JSON-safe copy of `o`. `ancestors` holds ids of the containers above us: a cycle, not a shared ref."""
    if o is None or o is True or o is False:
        return o
    if isinstance(o, str):
        return _clip(o, limit)
    if isinstance(o, int):
        return _int(o)
    if isinstance(o, float):
        return _float(o)
    if depth >= MAX_DEPTH:
        return f"<nested deeper than {MAX_DEPTH}>"
    oid = id(o)
    if oid in ancestors:
        return "<cycle>"
    ancestors.add(oid)
    try:
        if isinstance(o, dict | list | tuple):
            return _sanitise_container(o, limit, depth, ancestors)
        try:
            converted = _default(o)
        except Exception:
            converted = None
        if converted is None or converted is o:
            # model_dump(mode="json") can fail where mode="python" works; otherwise a repr keeps something.
            converted = _python_dump(o)
        return _sanitise(converted, limit, depth + 1, ancestors)
    finally:
        ancestors.discard(oid)


def _python_dump(o: object) -> object:
    dump = getattr(o, "model_dump", None)
    if callable(dump):
        try:
            return dump()
        except Exception:
            pass
    return safe_repr(o)


def _sanitise_container(
    o: dict[Any, Any] | list[Any] | tuple[Any, ...], limit: int, depth: int, ancestors: set[int]
) -> Any:
    if isinstance(o, dict):
        out: dict[str, Any] = {}
        for k, v in list(o.items()):
            key = _key(k, limit)
            while key in out:  # {1: .., "1": ..} must not lose a value
                key += "~"
            out[key] = _sanitise(v, limit, depth + 1, ancestors)
        return out
    return [_sanitise(v, limit, depth + 1, ancestors) for v in list(o)]


def _row(event: Event, limit: int) -> _Row:
    run_id, seq, ts, type_ = event.run_id, event.seq, event.ts, event.type
    if type(run_id) is not str or type(seq) is not int or type(ts) is not float or type(type_) is not str:
        run_id, seq, ts, type_ = _coerce(event)
    return (run_id, seq, ts, type_, encode_data(event.data, limit))


def _coerce(event: Event) -> tuple[str, int, float, EventType]:
    """Accept ints for ts and str subclasses; anything else is a caller bug, reported here, not at flush."""
    run_id, seq, ts = event.run_id, event.seq, event.ts
    if not isinstance(run_id, str) or not isinstance(event.type, str):
        raise TypeError(f"Event.run_id and Event.type must be str, got {run_id!r} and {event.type!r}")
    if isinstance(seq, bool) or not isinstance(seq, int):
        raise TypeError(f"Event.seq must be an int, got {seq!r}")
    if isinstance(ts, bool) or not isinstance(ts, int | float):
        raise TypeError(f"Event.ts must be a float, got {ts!r}")
    return str(run_id), int(seq), float(ts), cast(EventType, str(event.type))
