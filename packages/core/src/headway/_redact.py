"""Redaction: the values of secret or configured fields never reach traces, escalation records or
notifications. Checks still see the real values (in memory, for the run in progress); what is written
down or sent keeps "[redacted]" in their place.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

REDACTED = "[redacted]"

# Field names redacted unless defaults are turned off. Names are compared after normalising case,
# camelCase and dashes ("apiKey", "API-KEY" and "api_key" are one name), so these cover the usual spellings.
DEFAULT_REDACT: tuple[str, ...] = (
    "password",
    "passwd",
    "*_password",
    "secret",
    "*_secret",
    "token",
    "*_token",
    "api_key",
    "apikey",
    "*_api_key",
    "authorization",
    "cookie",
    "private_key",
    "card_number",
    "cvv",
    "cvc",
    "ssn",
)

# A redacted field's value is also removed wherever else it appears (a reason or a finding may quote it);
# shorter values are left alone elsewhere, since replacing "yes" or "42" everywhere would garble the text.
MIN_SCRUBBED = 6
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_MEMO = 10_000


def _field(name: str) -> str:
    return _CAMEL.sub("_", name).lower().replace("-", "_")


class Redactor:
    """Replaces the values of matching field names, at any depth, and remembers what it removed.

    Built once (per policy or notifier); which keys it hides is memoised, since field names repeat and
    the trace path runs it on every event.
    """

    def __init__(self, names: Iterable[str] = (), *, defaults: bool = True) -> None:
        if isinstance(names, str):  # a lone name would otherwise be taken letter by letter
            names = (names,)
        self.patterns = tuple(
            dict.fromkeys(_field(n) for n in (*names, *(DEFAULT_REDACT if defaults else ())))
        )
        self._memo: dict[str, bool] = {}

    def hides(self, key: object) -> bool:
        k = key if isinstance(key, str) else str(key)
        hit = self._memo.get(k)
        if hit is None:
            name = _field(k)
            hit = any(fnmatchcase(name, p) for p in self.patterns)
            if len(self._memo) < _MAX_MEMO:  # hostile payloads must not grow it without bound
                self._memo[k] = hit
        return hit

    def apply(self, value: Any, removed: list[str] | None = None) -> Any:
        """`value` with hidden fields replaced; the same object when nothing was hidden (no copy)."""
        if not self.patterns or type(value) in _SCALARS:
            return value
        return self._apply(value, removed)

    def _apply(self, value: Any, removed: list[str] | None) -> Any:
        # On every recorded event: exact type checks first (isinstance on ABCs is slow), scalars skipped.
        if type(value) is dict or isinstance(value, Mapping):
            out: dict[Any, Any] | None = None
            memo = self._memo
            for k, v in value.items():
                hidden = memo.get(k) if type(k) is str else None
                if hidden is None:
                    hidden = self.hides(k)
                if hidden:
                    new: Any = REDACTED
                    if removed is not None:
                        leaves(v, removed)
                elif type(v) in _SCALARS:
                    new = v
                else:
                    new = self._apply(v, removed)
                if new is not v and out is None:
                    out = dict(value)
                if out is not None:
                    out[k] = new
            return value if out is None else out
        if type(value) is list or isinstance(value, list | tuple):
            items: list[Any] | None = None
            for i, v in enumerate(value):
                new = v if type(v) in _SCALARS else self._apply(v, removed)
                if new is not v and items is None:
                    items = list(value[:i])
                if items is not None:
                    items.append(new)
            return value if items is None else items
        return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def leaves(value: Any, out: list[str]) -> None:
    """The texts of a removed value, so they can be removed wherever else they appear."""
    if isinstance(value, Mapping):
        for v in value.values():
            leaves(v, out)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            leaves(v, out)
    elif value is not None and not isinstance(value, bool):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        if len(text) >= MIN_SCRUBBED:
            out.append(text)


def redact(value: Any, names: Iterable[str] = (), *, defaults: bool = True) -> Any:
    """A copy of `value` with the values of fields named in `names` (exact names or fnmatch globs) replaced
    by "[redacted]" at any depth of its mappings and lists, plus `DEFAULT_REDACT` unless `defaults` is False.
    Names match regardless of case, camelCase or dashes. `value` itself is not changed."""
    return Redactor(names, defaults=defaults).apply(value, [])


def cleaner(needles: Iterable[str]) -> Callable[[str], str]:
    """A function that replaces each of these texts (removed secrets) wherever it appears in a string."""
    ordered = sorted({n for n in needles if n}, key=len, reverse=True)  # longest first: no partial leftovers

    def clean(text: str) -> str:
        for needle in ordered:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    return clean


def scrub(value: Any, clean: Callable[[str], str]) -> Any:
    """`value` with `clean` applied to every string in it (a reason or finding quoting a secret); the same
    object when nothing changed."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, Mapping):
        out = {k: scrub(v, clean) for k, v in value.items()}
        return value if all(out[k] is value[k] for k in value) else out
    if isinstance(value, list | tuple):
        items = [scrub(v, clean) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value
