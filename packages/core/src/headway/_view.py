"""What a check sees of a run: its calls, messages and milestones, through incremental indexes.

Every index is updated once per event, so a check at step 10,000 costs what it costs at step 10: no
check rescans the trajectory.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from ._normalize import (
    MAX_DEPTH,
    MAX_LEAVES,
    any_match,
    as_patterns,
    is_id_key,
    is_scalar,
    leaves,
    mentions,
    norm,
    norm_text,
    plain_names,
    stems,
    text_keys,
)
from ._types import Action, Finding

_YES_RE = re.compile(
    r"\b(yes|yeah|yep|yup|sure|ok|okay|confirm|confirmed|i confirm|correct|go ahead|please do|do it|"
    r"proceed|sounds good|that'?s right|that is right|affirmative|absolutely|definitely)\b"
)
_NO_RE = re.compile(
    r"^\W*(no(?!\s+(?:problem|worries|doubt)\b)|nope|nah|don'?t|do not|cancel|stop|never mind|nevermind)\b"
)
_HEDGE_RE = re.compile(
    r"\b(no|not|don'?t|do not|wait|hold on|hold off|stop|cancel|never ?mind|actually|but|instead|hmm|"
    r"unsure|maybe|later|change|first)\b|\?"
)


_step = attrgetter("step")
_MAX_TOOL_BITS = 256  # tools past this many share a bit: matching by glob stays correct, only coarser
_CLEAN_BITS = int("10" * (_MAX_TOOL_BITS + 1), 2)


@dataclass(slots=True, eq=False)
class ToolCall:
    """One tool call as checks see it: before it runs `output`/`error` are unset; after-checks see them."""

    tool: str
    args: dict[str, Any]
    call_id: str
    step: int
    raw_args: Any = None
    action: Action | None = None
    output: Any = None
    error: str | None = None
    done: bool = False
    flagged: bool = False
    findings: tuple[Finding, ...] = ()
    output_hash: int | None = None
    sig: str = ""  # tool and canonical arguments: what loop detection counts as "the same call"

    @property
    def name(self) -> str:
        return self.tool

    @property
    def ran(self) -> bool:
        """The call was let through (allowed or approved), so its side effect may have happened."""
        return self.action == "allow"

    @property
    def succeeded(self) -> bool:
        """It ran, returned without an error, and no after-check flagged its result."""
        return self.done and self.error is None and not self.flagged

    @property
    def failed(self) -> bool:
        return self.done and (self.error is not None or self.flagged)


@dataclass(slots=True)
class Conflict:
    """Two read results that disagree about one field of one entity, with no write in between."""

    entity: tuple[str, str]
    field: str
    before: Any
    after: Any
    steps: tuple[int, int]


class RunView:
    """Read-only view of one run for checks: `calls`, `last_output`, messages, milestones, identity."""

    def __init__(self, run_id: str, now: Callable[[], datetime] | datetime | None = None) -> None:
        self.run_id = run_id
        self._now = now
        self.user_messages: list[str] = []
        self.agent_messages: list[str] = []
        self.milestones: list[str] = []
        self.identity: str | None = None
        self.conflicts: list[Conflict] = []
        self.steps = 0
        self.tool_calls = 0
        self.tokens = 0
        self.started: float = 0.0
        self.last_write_step = -1
        # Recent writes: (step, the id-like arguments they named as (field, value), the words of their
        # other arguments). A write that names an order changes that order and maybe other kinds of
        # entity (its customer), not other orders; a write that names no entity by an id argument (a
        # ticket, a message) changes only what its text mentions. Only the tail matters.
        self._writes: list[tuple[int, frozenset[tuple[str, str]], frozenset[str]]] = []
        self._dropped_write = -1  # the latest write no longer kept
        # Conversation order of texts: (seq, "user"|"agent", normalised text). Only the tail is consulted.
        self._dialogue: list[tuple[int, str, str]] = []
        self._confirmation_memo: tuple[int, tuple[str, str] | None] | None = None
        self._user_text = ""
        self._user_keys: set[str] = set()
        self._calls: list[ToolCall] = []
        self._by_id: dict[str, ToolCall] = {}
        self._by_tool: dict[str, list[ToolCall]] = defaultdict(list)
        self._ran_tools: dict[str, None] = {}  # names of the tools that ran, in first-run order
        # (tool, arg name, value key) -> calls that ran with that argument value, oldest first.
        self._by_arg: dict[tuple[str, str, str], list[ToolCall]] = defaultdict(list)
        # value key -> tool -> whether a clean (unflagged, error-free) result of that tool showed it.
        # Encoded as a bitmask over this run's tool numbers (bit 2i: tool i showed it, 2i+1: cleanly),
        # because a long run indexes tens of thousands of values and a dict per value would dominate memory.
        self._values: dict[str, int] = {}
        self._tool_no: dict[str, int] = {}
        # value key -> steps of flagged results that showed it (only for values seen in flagged results).
        self._flagged_steps: dict[str, list[int]] = {}
        # (id field, value key) -> latest (step, tool, entity dict) per tool.
        self._entities: dict[tuple[str, str], dict[str, tuple[int, str, Mapping[str, Any]]]] = defaultdict(
            dict
        )
        # (id field, value key) -> field -> (value key, step, raw value) of the latest read observation.
        # (id field, value key) -> (step, fields) of the latest successful observation of that entity.
        self._observed: dict[tuple[str, str], tuple[int, Mapping[Any, Any]]] = {}
        self._conflicted: dict[tuple[str, str], list[Conflict]] = defaultdict(list)
        # argument stem -> (step, tool, candidate value keys, raw values) of the latest multi-candidate list.
        self._candidates: dict[str, tuple[int, str, tuple[str, ...], tuple[Any, ...]]] = {}
        # (id field, id value) of a listed candidate -> the words of its record no other candidate in
        # that list has ("rent" for the rent payment): a user who says one of them has named it.
        self._distinct: dict[tuple[str, str], frozenset[str]] = {}

    # ---- reading (the API custom checks use) -------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The policy clock: `Policy(now=...)` when set (fixed or callable), else the current UTC time."""
        if self._now is None:
            return datetime.now(UTC)
        if isinstance(self._now, datetime):
            return self._now
        return self._now()

    def calls(
        self, tool: str | Sequence[str] | None = None, *, include_blocked: bool = False
    ) -> list[ToolCall]:
        """Earlier calls that ran (or every attempt with `include_blocked`), oldest first."""
        if tool is None:
            pool = self._calls
        else:
            names = self._tools_named(as_patterns(tool))
            if len(names) == 1:
                pool = self._by_tool[names[0]]
            else:
                pool = sorted((c for t in names for c in self._by_tool[t]), key=_step)
        return [c for c in pool if include_blocked or c.ran]

    def _tools_named(self, pats: tuple[str, ...]) -> list[str]:
        """The tools called so far that these names or globs match. A plain name is looked up, not
        matched against every tool: checks ask at every write, and a long run calls many tools."""
        if plain_names(pats):
            return [p for p in dict.fromkeys(pats) if p in self._by_tool]
        return [t for t in self._by_tool if any_match(pats, t)]

    def call(self, call_id: str) -> ToolCall | None:
        return self._by_id.get(call_id)

    def last_call(self, tool: str | Sequence[str], *, succeeded: bool = False) -> ToolCall | None:
        pats = as_patterns(tool)
        best: ToolCall | None = None
        for name, calls in self._by_tool.items():
            if not any_match(pats, name):
                continue
            for c in reversed(calls):
                if c.ran and (c.succeeded or not succeeded):
                    if best is None or c.step > best.step:
                        best = c
                    break
        return best

    def last_output(self, tool: str | Sequence[str], **match: Any) -> Any:
        """The latest successful output about an entity from any of these tools (a name, list or glob).

        With no `match`, the whole output of the latest successful call. With `match` (field=value),
        the latest entity dict whose fields hold those values, found anywhere inside an output (write
        tools often return the updated entity); or, failing that, the whole output of the latest call
        made with those argument values. Outputs are parsed JSON when the tool returned JSON text.
        """
        pats = as_patterns(tool)
        if not match:
            last = self.last_call(pats, succeeded=True)
            return None if last is None else last.output
        hit = self._latest_entity(pats, match)
        by_args = next((c for c in reversed(self.calls_with(pats, match)) if c.succeeded), None)
        if hit is not None and (by_args is None or hit[0] >= by_args.step):
            return hit[2]
        return None if by_args is None else by_args.output

    def conflicts_for(self, id_field: str, value: Any) -> list[Conflict]:
        """Disagreements between read results about this entity (e.g. two lookups, two statuses)."""
        k = norm(value)
        return [] if k is None else list(self._conflicted.get((id_field, k), ()))

    def user_said(self, value: Any) -> bool:
        """Whether the user's own words contain this value (normalised; numbers by value)."""
        k = norm(value)
        return k is not None and (k in self._user_keys or mentions(self._user_text, k))

    def seen_in_outputs(self, value: Any, tools: Sequence[str] | None = None) -> bool:
        """Whether a tool output (of these tools, if given) contained this value."""
        k = norm(value)
        if k is None or k not in self._values:
            return False
        if not tools:
            return True
        mask = self._values[k]
        pats = tuple(tools)
        return any(mask >> (2 * i) & 1 and any_match(pats, t) for t, i in self._tool_no.items())

    def only_flagged(self, value: Any) -> list[int] | None:
        """Steps of flagged results a value came from, when no clean source (user or tool) showed it."""
        k = norm(value)
        if k is None or k not in self._values or k in self._user_keys or mentions(self._user_text, k):
            return None
        if self._values[k] & _CLEAN_BITS:
            return None
        return sorted(self._flagged_steps.get(k, ()))

    def candidates(self, arg: str) -> tuple[int, str, tuple[str, ...], tuple[Any, ...]] | None:
        """The latest tool output that listed several values for this argument: (step, tool, keys, values)."""
        best = None
        for stem in stems(arg):
            c = self._candidates.get(stem)
            if c is not None and (best is None or c[0] > best[0]):
                best = c
        return best

    def confirmation(self) -> tuple[str, str] | None:
        # Every write's `confirmed` check asks; the answer changes only when the dialogue does.
        key = self._dialogue[-1][0] if self._dialogue else -1
        memo = self._confirmation_memo
        if memo is not None and memo[0] == key:
            return memo[1]
        found = self._confirmation()
        self._confirmation_memo = (key, found)
        return found

    def _confirmation(self) -> tuple[str, str] | None:
        """(proposal, answer) when the user's latest message is an explicit yes to the agent's proposal.

        The proposal is the agent's last text before that answer; a question the agent asked after it
        is a new, unanswered proposal, so it cancels the confirmation. The user's answers to headway's
        own clarifying questions come after the yes without replacing it, unless they hedge or refuse.
        """
        answer_i = self._last_user_index(("user",))
        if answer_i is None:
            return None
        answer = self._dialogue[answer_i][2]
        if not _YES_RE.search(answer) or _HEDGE_RE.search(answer):
            return None
        for _, role, text in self._dialogue[answer_i + 1 :]:
            if (role == "agent" and "?" in text) or (
                role == "answer" and (_HEDGE_RE.search(text) or _NO_RE.search(text))
            ):
                return None
        for _, role, text in reversed(self._dialogue[:answer_i]):
            if role == "agent":
                return text, answer
            if role in ("user", "answer"):
                # Two user turns in a row: the yes answers the earlier agent text only if the user
                # said nothing else in between; be strict and treat it as unconfirmed.
                return None
        return None

    def refused(self) -> bool:
        """The user's latest message is an explicit "no" (or cancel / stop / don't)."""
        i = self._last_user_index()
        return i is not None and _NO_RE.search(self._dialogue[i][2]) is not None

    # ---- updating (the Run calls these) --------------------------------------------------------------

    def _last_user_index(self, roles: tuple[str, ...] = ("user", "answer")) -> int | None:
        for i in range(len(self._dialogue) - 1, -1, -1):
            if self._dialogue[i][1] in roles:
                return i
        return None

    def _add_user(self, seq: int, text: str, *, answer: bool = False) -> None:
        """A user message; `answer` marks the user's reply to a question headway asked (clarify)."""
        self.user_messages.append(text)
        n = norm_text(text)
        self._dialogue.append((seq, "answer" if answer else "user", n))
        self._user_text = f"{self._user_text}\n{n}" if self._user_text else n
        self._user_keys |= text_keys(text)
        self._trim_dialogue()

    def _add_agent(self, seq: int, text: str) -> None:
        if text.strip():
            self.agent_messages.append(text)
            self._dialogue.append((seq, "agent", norm_text(text)))
            self._trim_dialogue()

    def _trim_dialogue(self) -> None:
        # Confirmation only looks at the last exchange; keep the window small so memory stays flat.
        if len(self._dialogue) > 64:
            del self._dialogue[:32]

    def _seen(self, key: str) -> bool:
        """Whether a normalised value was said by the user or shown by any tool output."""
        return key in self._values or key in self._user_keys

    def _add_call(self, call: ToolCall) -> None:
        self._calls.append(call)
        self._by_id[call.call_id] = call
        self._by_tool[call.tool].append(call)

    def _mark_ran(self, call: ToolCall, write: bool) -> None:
        self._ran_tools[call.tool] = None
        for name, value in call.args.items():
            k = norm(value)
            if k is not None:
                self._by_arg[(call.tool, name, k)].append(call)
        if write:
            self.last_write_step = call.step
            named = frozenset(
                (name.casefold(), k)
                for name, value in call.args.items()
                if is_id_key(name) and (k := norm(value)) is not None
            )
            mentioned: frozenset[str] = frozenset()
            if not named:
                words: set[str] = set()
                for _, leaf in leaves(call.args, limit=200):
                    if isinstance(leaf, str) and len(leaf) <= 4000:
                        words |= text_keys(leaf)
                mentioned = frozenset(words)
            self._writes.append((call.step, named, mentioned))
            if len(self._writes) > 64:
                self._dropped_write = self._writes[31][0]
                del self._writes[:32]

    def _add_result(self, call: ToolCall, read: bool) -> list[Conflict]:
        """Index a result's values, entities and candidate lists in one walk; returns new conflicts."""
        out = call.output
        new_conflicts: list[Conflict] = []
        keys: set[str] = set()
        if isinstance(out, str):
            keys = text_keys(out)
            k = norm(out)
            if k is not None and len(k) <= 200:
                keys.add(k)
        else:
            if isinstance(out, list) and len(out) >= 2:
                # A bare list is a common tool shape ([{"order_id": "A1"}, {"order_id": "A2"}]): its
                # entries are candidates just as a list under a key is.
                self._index_candidates(call, call.tool, out)
            # One bounded, iterative walk (no recursion: payloads may be arbitrarily deep).
            stack: list[tuple[Any, int]] = [(out, 0)]
            budget = MAX_LEAVES
            while stack and budget > 0:
                v, depth = stack.pop()
                budget -= 1
                if type(v) is dict or isinstance(v, Mapping):
                    self._index_dict(call, v, read, new_conflicts, keys, stack, depth)
                elif isinstance(v, list | tuple):
                    if depth < MAX_DEPTH:
                        stack.extend((sub, depth + 1) for sub in v[:budget])
                else:
                    self._add_key(keys, v)
        clean = not call.flagged and call.error is None
        values = self._values
        no = self._tool_no.get(call.tool)
        if no is None:
            no = self._tool_no[call.tool] = min(len(self._tool_no), _MAX_TOOL_BITS)
        bits = (3 if clean else 1) << (2 * no)
        for k in keys:
            values[k] = values.get(k, 0) | bits
        if not clean:
            for k in keys:
                steps = self._flagged_steps.setdefault(k, [])
                if len(steps) < 8:
                    steps.append(call.step)
        return new_conflicts

    @staticmethod
    def _add_key(keys: set[str], value: Any) -> str | None:
        k = norm(value)
        if k is not None:
            keys.add(k)
            if type(value) is str and " " in k and len(k) <= 200:
                keys |= text_keys(value)
        return k

    def _index_dict(
        self,
        call: ToolCall,
        d: Mapping[Any, Any],
        read: bool,
        conflicts: list[Conflict],
        keys: set[str],
        stack: list[tuple[Any, int]],
        depth: int,
    ) -> None:
        # The hottest loop of a result: one pass per field, exact type tests before isinstance, names
        # bound locally. Scalars are indexed; containers go on the caller's stack.
        primary: tuple[str, str] | None = None
        fields: list[tuple[str, str | None, Any]] = []
        add = keys.add
        entities = self._entities
        n = 0
        for key, value in d.items():
            n += 1
            if n > MAX_LEAVES:
                break
            if type(key) is not str:
                key = str(key)
            if key[-1:].isdigit():
                add(key.casefold())  # keys like "credit_card_123" name things a call may use
            tv = type(value)
            if tv is str or tv is int or tv is float or is_scalar(value):
                k = self._add_key(keys, value)
            else:
                if depth < MAX_DEPTH and isinstance(value, Mapping | list | tuple):
                    stack.append((value, depth + 1))
                if tv is list and len(value) >= 2:
                    self._index_candidates(call, key, value)
                continue
            fields.append((key, k, value))
            if k is not None and is_id_key(key):
                ent = (key, k)
                entities[ent][call.tool] = (call.step, call.tool, d)
                if primary is None:
                    primary = ent
        if primary is None or not call.succeeded:
            return
        prev = self._observed.get(primary)
        self._observed[primary] = (call.step, d)
        if not read or prev is None or self._changed_since(prev[0], primary):
            return  # a write since the last look may legitimately have changed the entity
        before = prev[1]
        for key, k, value in fields:
            if key == primary[0] or k is None or key not in before:
                continue
            old = before[key]
            old_k = norm(old)
            if old_k is not None and old_k != k:
                c = Conflict(primary, key, old, value, (prev[0], call.step))
                conflicts.append(c)
                self.conflicts.append(c)
                self._conflicted[primary].append(c)

    def _changed_since(self, step: int, entity: tuple[str, str]) -> bool:
        """Whether a write after `step` may have changed this entity: one that named it, one that named
        entities of another kind only, one that named none by id but mentions it, or one that names
        nothing at all (`sync_all()`, `close_stale_tickets()`): its reach is unknown, so assume it."""
        if step < self._dropped_write:
            return True  # a write no longer kept came after it: assume it changed
        field, value = entity[0].casefold(), entity[1]
        for at, named, mentioned in reversed(self._writes):
            if at <= step:
                break
            if named:
                if (field, value) in named or all(f != field for f, _ in named):
                    return True
            elif not mentioned or value in mentioned:
                return True
        return False

    def _index_candidates(self, call: ToolCall, key: str, values: list[Any]) -> None:
        raws: list[Any] = []
        if all(isinstance(v, Mapping) for v in values):
            # A list of entities: each entity's id fields are candidates for arguments of that name.
            by_field: dict[str, list[Any]] = defaultdict(list)
            for v in values:
                for f, fv in v.items():
                    if isinstance(f, str) and is_id_key(f) and norm(fv) is not None:
                        by_field[f.casefold()].append(fv)
            for f, vs in by_field.items():
                self._set_candidates(call, f, vs)
            if by_field and len(values) <= 50:
                self._describe(values, by_field)
            return
        raws = [v for v in values if norm(v) is not None and not isinstance(v, bool)]
        if len(raws) >= 2:
            self._set_candidates(call, key.casefold(), raws)

    def _describe(self, records: list[Any], by_field: Mapping[str, list[Any]]) -> None:
        words = [
            {w for f, v in r.items() if isinstance(v, str) and len(v) <= 200 for w in text_keys(v)}
            for r in records
        ]
        # A word sets a record apart when no other record has it: it occurs in exactly one record.
        records_with = Counter(w for ws in words for w in ws)
        for i, record in enumerate(records):
            mine = frozenset(w for w in words[i] if records_with[w] == 1 and len(w) >= 3 and w.isalpha())
            for f, fv in record.items():
                if isinstance(f, str) and f.casefold() in by_field and (k := norm(fv)) is not None:
                    self._distinct[(f.casefold(), k)] = mine

    def described(self, field: str, key: str) -> bool:
        """Whether the user's words name a listed candidate by what sets it apart (its subject, its
        item), not by its id: "my rent payment" names the one scheduled transaction about rent."""
        words = self._distinct.get((field.casefold(), key))
        return words is not None and not words.isdisjoint(self._user_keys)

    def _set_candidates(self, call: ToolCall, key: str, raws: list[Any]) -> None:
        keys = tuple(dict.fromkeys(k for k in (norm(v) for v in raws) if k is not None))
        if len(keys) >= 2:
            self._candidates[key] = (call.step, call.tool, keys, tuple(raws))

    def _latest_entity(
        self, pats: tuple[str, ...], match: Mapping[str, Any]
    ) -> tuple[int, str, Mapping[str, Any]] | None:
        want = [(f, norm(v)) for f, v in match.items()]
        best: tuple[int, str, Mapping[str, Any]] | None = None
        for field_name, k in want:
            if k is None or (field_name, k) not in self._entities:
                continue
            for tool, hit in self._entities[(field_name, k)].items():
                if best is not None and hit[0] <= best[0]:
                    continue
                if not any_match(pats, tool):
                    continue
                entity = hit[2]
                if len(want) == 1 or all(norm(entity.get(f)) == fk for f, fk in want):
                    best = hit
            break
        return best

    def calls_with(self, tools: Sequence[str], args: Mapping[str, Any]) -> list[ToolCall]:
        """Calls that ran, of these tools, whose arguments had these values (indexed, not scanned)."""
        items = [(f, norm(v)) for f, v in args.items()]
        if not items or any(k is None for _, k in items):
            return []
        (first_field, first_key), rest = items[0], items[1:]
        assert first_key is not None
        out: list[ToolCall] = []
        for tool in self._tools_named(tuple(tools)):
            hits = self._by_arg.get((tool, first_field, first_key), ())
            # The index holds the first value; only the others are compared.
            out.extend(
                hits if not rest else [c for c in hits if all(norm(c.args.get(f)) == k for f, k in rest)]
            )
        # Sorted: an approved call is indexed when it is approved, not at its step.
        return sorted(out, key=_step)
