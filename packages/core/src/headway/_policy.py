"""The policy a Guard enforces: tools and their checks, milestones, thresholds and budgets.

A Policy is immutable once built; per-tool resolution (globs, several matching entries) is cached.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._normalize import name_matches
from ._redact import Redactor
from ._types import ACTIONS, KINDS, RISKS, Action, Finding, Kind, Risk, Severity

if TYPE_CHECKING:
    from ._view import RunView, ToolCall

CheckResult = None | str | Finding | Sequence[Finding]


@runtime_checkable
class Check(Protocol):
    """A tool validator: a callable over (call, view) that returns None (pass), a message or findings.

    Before a call it sees the proposed call; after it, `call.output` / `call.error` are set.
    """

    name: str
    kind: Kind
    severity: Severity

    def __call__(self, call: ToolCall, view: RunView, /) -> CheckResult: ...


ApproveWhen = Callable[["ToolCall"], bool]

RISK_WEIGHT: Mapping[Risk, float] = {"read": 0.3, "write": 0.7, "irreversible": 1.0}

# What each failure class asks for when its score is past `Thresholds.tolerate`: the remedy the agent
# can apply itself comes first (block tells the model what is missing; clarify asks the user).
DEFAULT_ACTIONS: Mapping[Kind, Action] = {
    "loop": "block",
    "stall": "block",
    "budget": "stop",
    "invalid_args": "block",
    "unmet_precondition": "block",
    "unconfirmed": "block",
    "ungrounded": "clarify",
    "ambiguous": "clarify",
    "silent_tool_error": "block",
    "ignored_tool_error": "escalate",
    "repeated_side_effect": "block",
    "policy_violation": "block",
    "unsupported_claim": "block",
    "abandoned": "block",
}


@dataclass(frozen=True, slots=True)
class Tool:
    """How one tool (a name or a glob such as "get_*") is governed.

    `risk` sets how findings weigh and how a crashing check fails (closed for write/irreversible);
    `before` / `after` checks run around each call; `approve_when(call)` sends an otherwise allowed call
    to a human; `claims` are regexes for outcomes a final answer may claim (default: from the name);
    `idempotent` tools may be re-run after a crash with an unknown outcome.
    """

    name: str
    risk: Risk = "write"
    before: Sequence[Check] = ()
    after: Sequence[Check] = ()
    approve_when: ApproveWhen | None = None
    claims: Sequence[str] | None = None
    idempotent: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError("Tool name must be a non-empty string (a tool name or a glob like 'get_*')")
        if self.risk not in RISKS:
            raise ValueError(f"Tool {self.name!r}: risk must be one of {RISKS}, got {self.risk!r}")
        object.__setattr__(self, "before", tuple(self.before))
        object.__setattr__(self, "after", tuple(self.after))
        for c in (*self.before, *self.after):
            if not callable(c):
                raise TypeError(f"Tool {self.name!r}: checks must be callables, got {c!r}")


@dataclass(frozen=True, slots=True)
class Milestone:
    """A progress checkpoint: reached when tool `after` (name/glob/list) succeeds, or `when(view)` holds.

    `required` milestones must be reached before the run ends, or the run is `abandoned`.
    """

    name: str
    after: str | Sequence[str] | None = None
    when: Callable[[RunView], bool] | None = None
    required: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.after is None and self.when is None:
            raise ValueError(f"Milestone {self.name!r} needs `after` (a tool) or `when` (a predicate)")
        if self.after is not None and not isinstance(self.after, str):
            object.__setattr__(self, "after", tuple(self.after))


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The autonomy gate's numbers. A decision's risk score is max(severity weight x tool risk weight).

    Below `tolerate` a finding is recorded and the call allowed; from `escalate` up a human decides,
    whatever the finding's own remedy. Sweeping these trades automation against unsafe actions.
    """

    tolerate: float = 0.1
    escalate: float = 0.95

    def __post_init__(self) -> None:
        if not 0 <= self.tolerate <= self.escalate:
            raise ValueError(
                f"Thresholds need 0 <= tolerate <= escalate, got {self.tolerate}, {self.escalate}"
            )


@dataclass(frozen=True, slots=True)
class Budgets:
    """Hard limits per run; running past one stops the run (`budget`). None means unlimited."""

    steps: int | None = None
    tool_calls: int | None = None
    seconds: float | None = None
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """How the acting user is established: from a tool's output, or from the user's own words.

    `tool` (name/glob) whose successful output gives the user id, read from `field` when the output is
    an object (or the output itself when it is a plain string); or `pattern`, a regex whose first group
    captures the id from a user message.
    """

    tool: str | Sequence[str] | None = None
    field: str = "user_id"
    pattern: str | None = None

    def __post_init__(self) -> None:
        if self.tool is None and self.pattern is None:
            raise ValueError("Identity needs `tool` (a lookup whose output names the user) or `pattern`")


@dataclass(frozen=True, slots=True)
class _Resolved:
    """Every Tool entry that matches one tool name, merged: checks add up, the highest risk wins."""

    name: str
    risk: Risk
    before: tuple[Check, ...]
    after: tuple[Check, ...]
    approve_when: tuple[ApproveWhen, ...]
    claims: tuple[str, ...] | None
    idempotent: bool
    known: bool


# Failure classes whose response the detectors graduate themselves (block, then stop).
_GRADUATED = frozenset({"loop", "stall", "budget"})


@dataclass(frozen=True)
class Policy:
    """Everything a Guard enforces. Build it in code or load it with `Policy.load("policy.toml")`.

    `max_repeats`: how many times one identical call (same tool, same arguments) may be made in a run;
    the next is a loop. `max_steps_without_progress`: tool calls without a new milestone (or, when no
    milestones are declared, without new information) before the run is stalled. `default` governs
    tools the policy does not list. `actions` overrides the remedy per failure class.
    """

    tools: Sequence[Tool] = ()
    milestones: Sequence[Milestone] = ()
    default: Tool = field(default_factory=lambda: Tool("*", risk="write"))
    max_repeats: int = 3
    max_steps_without_progress: int | None = None
    loop_stop_after: int = 2
    budgets: Budgets = field(default_factory=Budgets)
    thresholds: Thresholds = field(default_factory=Thresholds)
    actions: Mapping[Kind, Action] = field(default_factory=dict)
    identity: Identity | None = None
    now: datetime | Callable[[], datetime] | None = None
    detect_ambiguity: bool = True
    name: str = "policy"
    # Fields whose values never reach traces, escalation records or notifications (names or globs, any
    # depth; case, camelCase and dashes ignored), added to secret-looking defaults unless turned off.
    redact: Sequence[str] = ()
    redact_defaults: bool = True
    _cache: dict[str, _Resolved] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tools", tuple(self.tools))
        object.__setattr__(self, "milestones", tuple(self.milestones))
        for t in self.tools:
            if not isinstance(t, Tool):
                raise TypeError(f"Policy.tools takes Tool entries, got {t!r}")
        for m in self.milestones:
            if not isinstance(m, Milestone):
                raise TypeError(f"Policy.milestones takes Milestone entries, got {m!r}")
        if self.max_repeats < 1:
            raise ValueError("max_repeats must be at least 1")
        if self.max_steps_without_progress is not None and self.max_steps_without_progress < 1:
            raise ValueError("max_steps_without_progress must be at least 1 (or None)")
        if self.loop_stop_after < 1:
            raise ValueError("loop_stop_after must be at least 1")
        for k, a in self.actions.items():
            if k not in KINDS or a not in ACTIONS:
                raise ValueError(f"actions: {k!r} -> {a!r} is not a failure class -> decision")
            if k in _GRADUATED:
                # Silently ignoring it would let a user believe a loop escalates when it blocks.
                raise ValueError(
                    f"actions: {k!r} cannot be set: loops, stalls and budgets are answered by their "
                    "detectors (block, then stop); tune max_repeats, loop_stop_after, "
                    "max_steps_without_progress or budgets instead"
                )
        names = [m.name for m in self.milestones]
        if len(set(names)) != len(names):
            raise ValueError(f"milestone names must be unique, got {names}")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Policy:
        """The same Policy from a TOML or YAML file; errors name the file, the key and what was expected."""
        from ._policy_file import load_policy

        return load_policy(path)

    def action_for(self, kind: Kind) -> Action:
        return self.actions.get(kind) or DEFAULT_ACTIONS[kind]

    def resolve(self, tool: str) -> _Resolved:
        """The merged governance of one tool name (cached: a policy never changes)."""
        hit = self._cache.get(tool)
        if hit is not None:
            return hit
        entries = [t for t in self.tools if name_matches(t.name, tool)]
        known = bool(entries)
        if not entries:
            entries = [self.default]
        risk = max((t.risk for t in entries), key=RISKS.index)
        claims = [c for t in entries if t.claims is not None for c in t.claims]
        resolved = _Resolved(
            name=tool,
            risk=risk,
            before=tuple(c for t in entries for c in t.before),
            after=tuple(c for t in entries for c in t.after),
            approve_when=tuple(t.approve_when for t in entries if t.approve_when is not None),
            claims=tuple(claims) if any(t.claims is not None for t in entries) else None,
            idempotent=all(t.idempotent for t in entries),
            known=known,
        )
        self._cache[tool] = resolved
        return resolved

    @property
    def required_milestones(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.milestones if m.required)

    @cached_property
    def redactor(self) -> Redactor:
        return Redactor(self.redact, defaults=self.redact_defaults)

    @cached_property
    def fingerprint(self) -> str:
        """A short, stable hash of the policy's description: which policy decided a recorded run."""
        text = json.dumps(self.describe(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """A JSON summary of the policy (tools, milestones, limits)."""
        return {
            "name": self.name,
            "tools": [{"name": t.name, "risk": t.risk} for t in self.tools],
            "milestones": [m.name for m in self.milestones],
            "max_repeats": self.max_repeats,
            "max_steps_without_progress": self.max_steps_without_progress,
            "thresholds": {"tolerate": self.thresholds.tolerate, "escalate": self.thresholds.escalate},
        }
