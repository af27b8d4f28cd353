"""Outcome claims in a final answer ("I have refunded ...", "ticket created") and the tools behind them.

Claim phrases are declared per tool (`Tool(claims=[...])`) or derived from the tool's name: the verb's
past participle, so `refund_order` is claimed by "refunded" and `create_ticket` by "created ... ticket".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

_IRREGULAR = {
    "send": "sent",
    "make": "made",
    "pay": "paid",
    "write": "written|wrote",
    "give": "given|gave",
    "set": "set",
    "reset": "reset",
    "put": "put",
    "buy": "bought",
    "sell": "sold",
    "cancel": "cancell?ed",
    "transfer": "transferred",
    "submit": "submitted",
    "ship": "shipped",
    "refund": "refunded",
    "book": "booked",
    "rebook": "rebooked",
    "do": "done|did",
}
# Verbs that read rather than act: their tools make no claimable outcome.
_NON_CLAIM_VERBS = {
    "get",
    "list",
    "find",
    "search",
    "lookup",
    "look",
    "read",
    "check",
    "fetch",
    "query",
    "show",
    "view",
}
_NEGATED_RE = re.compile(
    r"\b(not|\w*n['’]t|never|unable|cannot|couldn't|can't|won't|failed|fail|will|would|could|should|can|may|might|"
    r"once|if|pending|awaiting|until|to be|going to|about to|yet|no)\b"
)
_SENTENCE_RE = re.compile(r"[^.!?\n]+[.!?]?")


def _participle(verb: str) -> str:
    if verb in _IRREGULAR:
        return _IRREGULAR[verb]
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and len(verb) > 1 and verb[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


@lru_cache(maxsize=1024)
def claim_patterns(tool: str, declared: tuple[str, ...] | None) -> tuple[re.Pattern[str], ...]:
    """Compiled claim regexes for a tool: the declared ones, or one derived from its name."""
    if declared is not None:
        return tuple(re.compile(p, re.IGNORECASE) for p in declared)
    words = [w for w in re.split(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])", tool) if w]
    if not words:
        return ()
    verb = words[0].casefold()
    if verb in _NON_CLAIM_VERBS:
        return ()
    return (re.compile(r"\b(" + _participle(verb) + r")\b", re.IGNORECASE),)


def claimed(answer: str, tools: Iterable[tuple[str, tuple[str, ...] | None]]) -> list[tuple[str, str]]:
    """(tool, sentence) for each tool whose outcome a sentence of the answer asserts as done.

    A sentence that negates, conditions or defers the outcome ("could not be refunded", "will be
    refunded once approved") is not a claim.
    """
    sentences = [s.strip() for s in _SENTENCE_RE.findall(answer) if s.strip()]
    out: list[tuple[str, str]] = []
    for tool, declared in tools:
        for pattern in claim_patterns(tool, declared):
            for s in sentences:
                m = pattern.search(s)
                if m and not _NEGATED_RE.search(s[: m.start()].casefold()):
                    out.append((tool, s))
                    break
            else:
                continue
            break
    return out
