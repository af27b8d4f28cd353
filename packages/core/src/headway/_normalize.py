"""Value normalisation shared by grounding, matching and indexing.

Two values are "the same" for headway when they normalise to the same key: numbers compare by value
("$1,200.00" == 1200), strings by case-folded, whitespace-collapsed text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

# Bounds that keep one event's indexing cost flat however big or deep a payload is.
MAX_LEAVES = 2_000
MAX_DEPTH = 32
MAX_TEXT_TOKENS = 400

_NUMBER_RE = re.compile(r"^[-+]?[$€£]?\s*\d[\d,]*(?:\.\d+)?$|^[-+]?[$€£]?\s*\.\d+$")
_NUMBER_IN_TEXT_RE = re.compile(r"(?<![\w.])[-+]?[$€£]?\d[\d,]*(?:\.\d+)?(?![\w])")
_TOKEN_RE = re.compile(r"[\w@.+-]+")
_WS_RE = re.compile(r"\s+")
_DIGIT_RE = re.compile(r"\d")


def number_key(x: float) -> str | None:
    """Canonical text of a finite number: 40, 40.0 and 4e1 all give "40"."""
    if not math.isfinite(x):
        return None
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


# Keys of recent strings: the same values (statuses, ids, names) come back in result after result, and a
# lookup costs a tenth of normalising again. Bounded, and simply cleared when full.
_NORM_MEMO: dict[str, str | None] = {}
_NORM_MEMO_MAX = 4096
_MISSING = object()


def norm(value: Any) -> str | None:
    """Normalisation key of a scalar, or None when the value cannot be compared (None, NaN, containers)."""
    tp = type(value)
    if tp is str:
        hit = _NORM_MEMO.get(value, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        key = _norm_str(value)
        if len(value) <= 200:
            if len(_NORM_MEMO) >= _NORM_MEMO_MAX:
                _NORM_MEMO.clear()
            _NORM_MEMO[value] = key
        return key
    if isinstance(value, str):
        return _norm_str(value)
    if tp is int:
        return str(value)
    if tp is float:
        return number_key(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return number_key(value)
    return None


def _norm_str(value: str) -> str | None:
    s = value.strip().casefold()
    if "  " in s or "\n" in s or "\t" in s or "\r" in s:
        s = _WS_RE.sub(" ", s)
    if s and (s[0].isdigit() or s[0] in "-+$€£.") and _NUMBER_RE.match(s):
        try:
            return number_key(float(s.lstrip("+$€£ ").replace(",", "").replace("$", "").replace(" ", "")))
        except ValueError:
            return s
    return s or None


def is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def leaves(value: Any, limit: int = MAX_LEAVES) -> Iterator[tuple[str | None, Any]]:
    """(key, scalar) pairs of a nested payload, depth-first, bounded in depth and count."""
    stack: list[tuple[str | None, Any, int]] = [(None, value, 0)]
    seen = 0
    while stack and seen < limit:
        key, v, depth = stack.pop()
        if isinstance(v, Mapping):
            if depth < MAX_DEPTH:
                stack.extend((str(k), sub, depth + 1) for k, sub in reversed(list(v.items())[:limit]))
        elif isinstance(v, list | tuple):
            if depth < MAX_DEPTH:
                stack.extend((key, sub, depth + 1) for sub in reversed(v[:limit]))
        else:
            seen += 1
            yield key, v


def dicts(value: Any, limit: int = MAX_LEAVES) -> Iterator[Mapping[str, Any]]:
    """Every mapping inside a payload (the payload itself first), bounded like `leaves`."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    seen = 0
    while stack and seen < limit:
        v, depth = stack.pop()
        if isinstance(v, Mapping):
            seen += 1
            yield v
            if depth < MAX_DEPTH:
                subs: list[Any] = list(v.values())  # (reversed(list(...)) crashes mypyc 1.x on Any)
                subs.reverse()
                stack.extend((sub, depth + 1) for sub in subs if isinstance(sub, Mapping | list))
        elif isinstance(v, list | tuple) and depth < MAX_DEPTH:
            stack.extend((sub, depth + 1) for sub in reversed(v[:limit]) if isinstance(sub, Mapping | list))


def text_keys(text: str) -> set[str]:
    """Normalised tokens and numbers of free text: what a user or a plain-text tool output 'said'."""
    out: set[str] = set()
    has_digit = _DIGIT_RE.search(text) is not None
    if has_digit:
        for raw in _NUMBER_IN_TEXT_RE.findall(text)[:MAX_TEXT_TOKENS]:
            k = norm(raw)
            if k:
                out.add(k)
    for tok in _TOKEN_RE.findall(text.casefold())[:MAX_TEXT_TOKENS]:
        tok = tok.strip(".")
        if not tok:
            continue
        out.add(tok)
        # A case-folded word is its own key; only numeric tokens ("40.00" -> "40") normalise further.
        if has_digit and (tok[0].isdigit() or tok[0] in "-+"):
            k = norm(tok)
            if k:
                out.add(k)
    return out


def mentions(text: str, value_key: str) -> bool:
    """Whether normalised free text names a normalised value (word-bounded, so "A1" is not in "A10")."""
    if not value_key:
        return False
    if value_key in text:
        pattern = _MENTION_RE.get(value_key)
        if pattern is None:
            if len(_MENTION_RE) >= 2048:  # bounded: values come from tool outputs
                _MENTION_RE.clear()
            pattern = _MENTION_RE[value_key] = re.compile(r"(?<![\w])" + re.escape(value_key) + r"(?![\w])")
        return pattern.search(text) is not None
    return False


_MENTION_RE: dict[str, re.Pattern[str]] = {}


def norm_text(text: str) -> str:
    """Free text prepared for `mentions`: case-folded, numbers written canonically."""
    folded = text.casefold()
    if "  " in folded or "\n" in folded or "\t" in folded or "\r" in folded:
        folded = _WS_RE.sub(" ", folded)
    if _DIGIT_RE.search(folded) is None:
        return folded
    return _NUMBER_IN_TEXT_RE.sub(lambda m: norm(m.group()) or m.group(), folded)


def parse_payload(value: Any) -> Any:
    """A tool output as data: JSON text is parsed, models are dumped, anything else is kept or stringified."""
    tp = type(value)
    if tp is dict or tp is list:
        return value  # the common case, before isinstance on ABCs (the slowest test here)
    if isinstance(value, str):
        s = value.lstrip()
        if s[:1] in ("{", "["):
            try:
                return json.loads(value)
            except (ValueError, RecursionError):
                return value
        return value
    if value is None or isinstance(value, int | float | bool | Mapping | list | tuple):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:
            return safe_repr(value)
    return safe_repr(value)


def safe_repr(value: Any) -> str:
    """repr() that never raises (an object's own __repr__ may)."""
    try:
        return repr(value)
    except Exception:
        return f"<unrepresentable {type(value).__qualname__}>"


_FLAT = (str, int, float, bool, type(None))


def canonical(value: Any) -> str:
    """A stable text form of arguments, for "the same call" comparisons."""
    if type(value) is dict and all(type(v) in _FLAT for v in value.values()):
        # Flat arguments (the common case): repr of the sorted items is several times cheaper than JSON.
        try:
            return repr(sorted(value.items()))
        except TypeError:
            pass  # keys of mixed types do not sort
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=safe_repr)
    except (ValueError, TypeError, RecursionError):
        return safe_repr(value)


@lru_cache(maxsize=4096)
def name_matches(pattern: str, name: str) -> bool:
    """Tool-name matching: exact name or a shell-style glob ("get_*")."""
    return pattern == name or fnmatchcase(name, pattern)


@lru_cache(maxsize=1024)
def plain_names(patterns: tuple[str, ...]) -> bool:
    """Whether each of these names one tool exactly (no glob among them)."""
    return not any(ch in p for p in patterns for ch in "*?[")


_ANY_MATCH: dict[tuple[tuple[str, ...], str], bool] = {}


def any_match(patterns: tuple[str, ...], name: str) -> bool:
    """Whether a name matches any of these patterns; memoised (checks ask the same question per call)."""
    key = (patterns, name)
    hit = _ANY_MATCH.get(key)
    if hit is None:
        hit = any(p == name or fnmatchcase(name, p) for p in patterns)
        if len(_ANY_MATCH) < 65_536:  # bounded: tool names come from the model
            _ANY_MATCH[key] = hit
    return hit


def as_patterns(tools: str | Sequence[str] | None) -> tuple[str, ...]:
    if tools is None:
        return ()
    if isinstance(tools, str):
        return (tools,)
    return tuple(tools)


_ID_KEYS: dict[str, bool] = {}


def is_id_key(key: str) -> bool:
    """Fields that identify an entity: `id`, `*_id`, emails, numbers and codes."""
    hit = _ID_KEYS.get(key)
    if hit is None:
        k = key.casefold()
        hit = k == "id" or k.endswith(("_id", "id", "_number", "_no", "_code", "email", "_key"))
        if len(_ID_KEYS) < 10_000:  # field names repeat; the bound keeps hostile payloads from growing it
            _ID_KEYS[key] = hit
    return hit


def stems(arg: str) -> tuple[str, ...]:
    """Output keys that may list candidates for an argument: order_id <- order_id, order_ids, order, orders."""
    a = arg.casefold()
    base = a
    for suffix in ("_ids", "_id", "_name", "_number", "_code"):
        if a.endswith(suffix):
            base = a[: -len(suffix)]
            break
    return tuple(dict.fromkeys((a, a + "s", base, base + "s")))


# ---- errors inside results ---------------------------------------------------------------------------

_ERROR_TEXT_RE = re.compile(
    r"^\s*(error|exception|traceback|failed|failure|fatal)\b|traceback \(most recent call last\)|"
    r"internal server error|\b(5\d\d|4\d\d) (bad request|not found|unauthorized|forbidden|error)\b",
    re.IGNORECASE,
)
_ERROR_STATUS = {"error", "failed", "failure", "fail", "exception"}


_ERROR_KEYS = ("error", "errors", "exception", "error_message")
_ERROR_FIELDS = frozenset((*_ERROR_KEYS, "status", "state", "result", "success", "ok", "status_code", "code"))


def error_in(output: Any) -> str | None:
    """The error a "successful" tool result carries (`{"error": ...}`, `status: failed`, an error text),
    or None. Here rather than in checks: it runs on every result, and this module is compiled."""
    if type(output) is dict:
        if _ERROR_FIELDS.isdisjoint(output):
            return None  # most results: no field that could carry an error, one set operation
    elif isinstance(output, str):
        m = _ERROR_TEXT_RE.search(output[:2000])
        return output[:200] if m else None
    elif not isinstance(output, Mapping):
        return None
    # Only the top-level object speaks for the call: a nested "error" may be data (a past incident).
    d = output
    for key in _ERROR_KEYS:
        v = d.get(key)
        if v:
            return f"{key}: {json.dumps(v, default=repr)[:200]}"
    for key in ("status", "state", "result"):
        v = d.get(key)
        if isinstance(v, str) and v.strip().casefold() in _ERROR_STATUS:
            return f"{key}: {v}"
    if d.get("success") is False or d.get("ok") is False:
        return "success: false" if d.get("success") is False else "ok: false"
    code = d.get("status_code", d.get("code"))
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return f"code: {code}"
    return None
