"""Outcome claims in a final answer ("I have refunded ...", "ticket created") and the tools behind them.

Claim phrases are declared per tool (`Tool(claims=[...])`) or derived from the tool's name: the verb's
past participle, so `refund_order` is claimed by "refunded" and `create_ticket` by "created ... ticket".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ._normalize import norm

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
# A sentence ends at . ! ? or a line break, but not at the point of a number ("$28.99").
_SENTENCE_RE = re.compile(r"(?:[^.!?\n]|(?<=\d)\.(?=\d))+[.!?]?")


# Where a claim's clause ends inside a sentence: "I refunded A1, but A2 is still pending", "refunded
# $25 for A2 and created a ticket" (an "and" that starts another action, not "A1 and A2").
_CLAUSE_RE = re.compile(
    r";|,\s+(?:and|but|so|while)\s+|\s+but\s+|\s+and\s+(?=(?:i|we|also|then)\b|\w+ed\b)", re.IGNORECASE
)
# What a claim says it was about: amounts of money, and tokens that mix letters and digits (order A1,
# ticket T-17), the way entities are named. Plain numbers ("3-5 days", dates) are not taken as names.
_AMOUNT_RE = re.compile(
    r"[$€£]\s?(\d[\d,]*(?:\.\d+)?)|\b(\d[\d,]*(?:\.\d+)?)\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b",
    re.IGNORECASE,
)
_STATE_RE = re.compile(r"\balready\b|\b(?:is|was|were|are)\s+(?:now\s+)?\w+ed\b", re.IGNORECASE)
_AGENT_RE = re.compile(r"\b(?:i|we|i've|we've|i'm|i\s+have|we\s+have)\b", re.IGNORECASE)
_NAME_RE = re.compile(r"(?<![\w-])(?=[\w-]*\d)(?=[\w-]*[^\W\d_])[\w-]{2,40}(?![\w-])")


@dataclass(frozen=True, slots=True)
class Claim:
    """A sentence of an answer that asserts a tool's outcome as done.

    `word` is the claim phrase as written ("refunded"); `amounts` and `names` are the normalised amounts
    and entity-like tokens of the clause that makes the claim: what the claim says it was about.
    """

    tool: str
    sentence: str
    word: str
    amounts: frozenset[str]
    names: frozenset[str]
    # Reports a state rather than an act of the agent's ("order K1 has already been refunded", a list
    # entry "K1 (refunded)"): a tool output showing that state backs it.
    state: bool = False


def _about(clause: str) -> tuple[frozenset[str], frozenset[str]]:
    amounts = {norm(a or b) for a, b in _AMOUNT_RE.findall(clause)}
    spans = [m.span() for m in _AMOUNT_RE.finditer(clause)]
    names = {
        m.group(0).casefold()
        for m in _NAME_RE.finditer(clause)
        if not any(a <= m.start() < b for a, b in spans)  # "$28.99" is an amount, not a name
    }
    return frozenset(a for a in amounts if a), frozenset(names)


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


def claimed(answer: str, tools: Iterable[tuple[str, tuple[str, ...] | None]]) -> list[Claim]:
    """The claims of an answer: for each tool, every sentence that asserts its outcome as done.

    A sentence that negates, conditions or defers the outcome ("could not be refunded", "will be
    refunded once approved") is not a claim.
    """
    sentences = [s.strip() for s in _SENTENCE_RE.findall(answer) if s.strip()]
    out: list[Claim] = []
    for tool, declared in tools:
        for s in sentences:
            for pattern in claim_patterns(tool, declared):
                m = pattern.search(s)
                if m and not _NEGATED_RE.search(s[: m.start()].casefold()):
                    before = s[: m.start()]
                    if before.count("(") > before.count(")"):
                        # A list entry, "A2 (chair, refunded)": the entry is what it is about.
                        opened = before.rfind("(")
                        start = max(s.rfind(sep, 0, opened) for sep in ",;:") + 1
                        close = s.find(")", m.end())
                        clause, state = s[start : close if close >= 0 else len(s)], True
                    else:
                        clause = _clause(s, m.start())
                        state = _STATE_RE.search(clause) is not None and _AGENT_RE.search(clause) is None
                    out.append(Claim(tool, s, m.group(0).casefold(), *_about(clause), state=state))
                    break
    return out


def _clause(sentence: str, at: int) -> str:
    start = 0
    for m in _CLAUSE_RE.finditer(sentence):
        if m.start() > at:
            return sentence[start : m.start()]
        start = m.end()
    return sentence[start:]
