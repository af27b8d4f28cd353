"""Value types every part of headway speaks: findings, decisions and the recorded event.

They are frozen, slotted dataclasses rather than pydantic models because they are built on the hot path
(microseconds per decision); `headway.traces` validates them with pydantic when reading traces back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from types import FunctionType
from typing import Any, Literal, TypeVar, get_args

Action = Literal["allow", "block", "clarify", "escalate", "stop"]
# What a decision is about: a proposed call, a call's result, a model turn, or the final answer.
Stage = Literal["call", "result", "model", "end"]
Risk = Literal["read", "write", "irreversible"]
Severity = Literal["note", "low", "medium", "high", "critical"]
Kind = Literal[
    "loop",
    "stall",
    "budget",
    "invalid_args",
    "unmet_precondition",
    "unconfirmed",
    "ungrounded",
    "ambiguous",
    "silent_tool_error",
    "ignored_tool_error",
    "repeated_side_effect",
    "policy_violation",
    "unsupported_claim",
    "abandoned",
]

ACTIONS: tuple[Action, ...] = get_args(Action)
RISKS: tuple[Risk, ...] = get_args(Risk)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
KINDS: tuple[Kind, ...] = get_args(Kind)

# Strength order: when findings disagree, the strongest requested action wins.
ACTION_RANK: Mapping[Action, int] = {a: i for i, a in enumerate(ACTIONS)}
# Severity weights feed the numeric risk score of a decision (see `Thresholds`). `note` never blocks.
SEVERITY_WEIGHT: Mapping[Severity, float] = {
    "note": 0.0,
    "low": 0.25,
    "medium": 0.5,
    "high": 0.8,
    "critical": 1.0,
}


_C = TypeVar("_C", bound=type)


def interpreted_init(cls: _C) -> _C:
    """Swap a frozen dataclass's hand-written `__init__` for the one dataclasses generates, unless the
    class is compiled.

    Compiled by mypyc, those writes are direct slot stores, about 35x cheaper than the `__init__`
    dataclasses generates (interpreted Python, one `object.__setattr__` per field), and `Decision` and
    `Event` are built several times per decision. Interpreted, the same writes would hit the frozen
    `__setattr__` and raise, so the pure-Python build takes dataclasses' own.
    """
    if isinstance(cls.__dict__["__init__"], FunctionType):  # not compiled
        spec = [
            (f.name, f.type, field(default=f.default, default_factory=f.default_factory)) for f in fields(cls)
        ]
        generated = make_dataclass(cls.__name__, spec, frozen=True)
        type.__setattr__(cls, "__init__", generated.__dict__["__init__"])
    return cls


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check or detector noticed.

    `kind` is the failure class (the taxonomy in DESIGN.md), `severity` how bad it is (`note` means
    "recorded, never blocks", e.g. a check that could not evaluate), `evidence` the values and step
    numbers behind it. `decision` lets a check demand a specific action (an explicit "no" from the user
    means `block`, whatever the thresholds say).
    """

    check: str
    kind: Kind
    severity: Severity
    message: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    decision: Action | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "check": self.check,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "evidence": dict(self.evidence),
        }
        if self.decision is not None:
            d["decision"] = self.decision
        return d


@dataclass(frozen=True, slots=True)
class Decision:
    """What the agent may do next, and why.

    `allow` (go ahead), `block` (the tool does not run; `reason` tells the model what is missing),
    `clarify` (ask the user `question`), `escalate` (a human approves, rejects or edits), `stop` (end the
    run). `risk` is the numeric score the thresholds were applied to, so they can be swept later.
    """

    action: Action
    reason: str = ""
    findings: tuple[Finding, ...] = ()
    risk: float = 0.0
    tool: str | None = None
    call_id: str | None = None
    question: str | None = None
    stage: Stage = "call"
    # The escalation record a person decides (clarify and escalate decisions, when the guard keeps them).
    escalation_id: str | None = None

    def __init__(
        self,
        action: Action,
        reason: str = "",
        findings: tuple[Finding, ...] = (),
        risk: float = 0.0,
        tool: str | None = None,
        call_id: str | None = None,
        question: str | None = None,
        stage: Stage = "call",
        escalation_id: str | None = None,
    ) -> None:
        # Compiled, these are slot stores; interpreted, `interpreted_init` replaces this method.
        self.action = action  # type: ignore[misc]
        self.reason = reason  # type: ignore[misc]
        self.findings = findings  # type: ignore[misc]
        self.risk = risk  # type: ignore[misc]
        self.tool = tool  # type: ignore[misc]
        self.call_id = call_id  # type: ignore[misc]
        self.question = question  # type: ignore[misc]
        self.stage = stage  # type: ignore[misc]
        self.escalation_id = escalation_id  # type: ignore[misc]

    def for_model(self) -> str:
        """The text an adapter gives the model when the step does not simply go ahead ("" for allow)."""
        tool = self.tool or "this action"
        if self.action == "allow":
            return ""
        if self.stage == "result" and self.action != "stop":
            if self.action == "escalate":
                return f"[headway] {tool} ran, but its result needs a person's review: {self.reason}"
            return f"[headway] the result of {tool} looks wrong; do not rely on it: {self.reason}"
        if self.stage == "end" and self.action != "stop":
            return f"[headway] the final answer cannot be sent as it is: {self.reason}"
        if self.action == "block":
            return f"[headway] {tool}: not done. {self.reason}"
        if self.action == "clarify":
            return f"[headway] {tool} needs the user's answer first: {self.question or self.reason}"
        if self.action == "escalate":
            return f"[headway] {tool} is waiting for a person's approval: {self.reason}"
        return f"[headway] the run was stopped: {self.reason}"

    @classmethod
    def allow(cls, reason: str = "", findings: tuple[Finding, ...] = (), **kw: Any) -> Decision:
        return cls("allow", reason, findings, **kw)

    @classmethod
    def block(cls, reason: str, findings: tuple[Finding, ...] = (), **kw: Any) -> Decision:
        return cls("block", reason, findings, **kw)

    @classmethod
    def clarify(cls, question: str, findings: tuple[Finding, ...] = (), **kw: Any) -> Decision:
        return cls("clarify", question, findings, question=question, **kw)

    @classmethod
    def escalate(cls, reason: str, findings: tuple[Finding, ...] = (), **kw: Any) -> Decision:
        return cls("escalate", reason, findings, **kw)

    @classmethod
    def stop(cls, reason: str, findings: tuple[Finding, ...] = (), **kw: Any) -> Decision:
        return cls("stop", reason, findings, **kw)

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def kinds(self) -> tuple[Kind, ...]:
        """Failure classes behind this decision, most severe first, without repeats."""
        ranked = sorted(self.findings, key=lambda f: -SEVERITY_WEIGHT[f.severity])
        return tuple(dict.fromkeys(f.kind for f in ranked))

    def to_dict(self) -> dict[str, Any]:
        if self.action == "allow" and not self.findings and not self.reason and self.stage == "call":
            # Most decisions: a plain allow. Built directly, it is the cheapest event part to record.
            return {
                "action": "allow",
                "reason": "",
                "risk": 0.0,
                "findings": [],
                "tool": self.tool,
                "call_id": self.call_id,
            }
        d: dict[str, Any] = {
            "action": self.action,
            "reason": self.reason,
            "risk": self.risk,
            "findings": [f.to_dict() for f in self.findings],
        }
        if self.tool is not None:
            d["tool"] = self.tool
        if self.call_id is not None:
            d["call_id"] = self.call_id
        if self.question is not None:
            d["question"] = self.question
        if self.stage != "call":
            d["stage"] = self.stage
        if self.escalation_id is not None:
            d["escalation_id"] = self.escalation_id
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls(
            action=d["action"],
            reason=d.get("reason", ""),
            findings=tuple(Finding(**f) for f in d.get("findings", ())),
            risk=float(d.get("risk", 0.0)),
            tool=d.get("tool"),
            call_id=d.get("call_id"),
            question=d.get("question"),
            stage=d.get("stage", "call"),
            escalation_id=d.get("escalation_id"),
        )


# "span": a framework's own trace span (e.g. the Agents SDK tracing processor), kept beside the run.
EventType = Literal["start", "user", "model", "tool_call", "tool_result", "human", "end", "span"]


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded step of a run, as the trace store keeps it.

    `data` is JSON-serialisable. A `tool_call`, `tool_result` and `end` event carry the decision made on
    it under `data["decision"]`, so the stream alone is enough to replay a run under another policy.
    """

    run_id: str
    seq: int
    ts: float
    type: EventType
    data: Mapping[str, Any]

    def __init__(self, run_id: str, seq: int, ts: float, type: EventType, data: Mapping[str, Any]) -> None:
        # Compiled, these are slot stores; interpreted, `interpreted_init` replaces this method.
        self.run_id = run_id  # type: ignore[misc]
        self.seq = seq  # type: ignore[misc]
        self.ts = ts  # type: ignore[misc]
        self.type = type  # type: ignore[misc]
        self.data = data  # type: ignore[misc]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": self.ts,
            "type": self.type,
            "data": dict(self.data),
        }


interpreted_init(Decision)
interpreted_init(Event)
