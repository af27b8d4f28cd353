"""One agent run: records its events, runs checks and detectors, and returns a Decision per step.

Every public method takes the run's lock (tool calls arrive from worker threads) and never raises into
the agent for bad input: malformed arguments or unknown ids become findings and decisions. Each event
is applied to the run's state by one `_apply_*` method, used both live and when a run is restored from
the trace store, so a restored run is the run that was recorded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from . import checks as _checks
from ._claims import Claim, claimed
from ._encode import encode_data
from ._errors import HeadwayError
from ._escalations import (
    Escalation,
    EscalationConflict,
    EscalationStore,
    HumanAction,
    LedgerEntry,
    escalation_id,
    validate_decision,
)
from ._normalize import (
    any_match,
    as_patterns,
    canonical,
    leaves,
    norm,
    parse_payload,
    plain_names,
    safe_repr,
    text_keys,
)
from ._policy import RISK_WEIGHT, Thresholds, _Resolved
from ._progress import Progress, Tracker
from ._redact import REDACTED, Redactor, cleaner, scrub
from ._types import (
    ACTION_RANK,
    SEVERITY_WEIGHT,
    Action,
    Decision,
    Event,
    EventType,
    Finding,
    Kind,
    Risk,
    Stage,
)
from ._view import RunView, ToolCall, name_like

if TYPE_CHECKING:
    from ._policy import Check, Policy
    from ._store import TraceStore

CONFLICT = "consistent_with_observations"
TAINT = "taint"
_AUTO_UNAMBIGUOUS = _checks.unambiguous(severity="high")
_MAX_TEXT = 100_000
# `Run.begin`'s answer: run the call now; it already ran (replay its recorded result); or wait (it may not
# run: not allowed, or its outcome is unknown and a person was asked).
Start = Literal["run", "done", "wait"]
_log = logging.getLogger("headway")


def _text(value: Any) -> str:
    s = value if isinstance(value, str) else ("" if value is None else str(value))
    return s if len(s) <= _MAX_TEXT else s[:_MAX_TEXT]


def _coerce_args(raw: Any) -> tuple[dict[str, Any], list[Finding]]:
    """Arguments as a dict with string keys; anything else becomes an `invalid_args` finding."""
    if raw is None:
        return {}, []
    if type(raw) is dict and all(type(k) is str for k in raw):
        return dict(raw), []  # a copy: a framework may reuse or mutate its dict after the call
    if isinstance(raw, Mapping):
        return ({k if isinstance(k, str) else str(k): v for k, v in raw.items()}, [])
    if isinstance(raw, str | bytes):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            return {}, []
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError) as e:
            return {}, [Finding("arguments", "invalid_args", "high", f"arguments are not valid JSON ({e})")]
        if isinstance(parsed, dict):
            return _coerce_args(parsed)
        return {}, [
            Finding(
                "arguments",
                "invalid_args",
                "high",
                f"arguments must be a JSON object, got {type(parsed).__name__}",
            )
        ]
    dump = getattr(raw, "model_dump", None)
    if callable(dump):
        try:
            return _coerce_args(dump(mode="json"))
        except Exception as e:
            return {}, [Finding("arguments", "invalid_args", "high", f"arguments could not be read ({e!r})")]
    return {}, [
        Finding("arguments", "invalid_args", "high", f"arguments must be an object, got {type(raw).__name__}")
    ]


def _meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return {str(k): v for k, v in meta.items()}
    except Exception:
        return {"unreadable": safe_repr(meta)[:200]}


def _with_meta(data: dict[str, Any], meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta:
        data["meta"] = _meta(meta)
    return data


def _call_data(call: ToolCall, decision: Decision) -> dict[str, Any]:
    """A `tool_call` event's data: the call and the decision on it."""
    return {"call_id": call.call_id, "tool": call.tool, "args": call.args, "decision": decision.to_dict()}


# The parts of an event that carry tool arguments and outputs, where secrets live.
_REDACTED_PARTS: Mapping[str, tuple[str, ...]] = {
    "tool_call": ("args",),
    "tool_result": ("output",),
    "human": ("args",),
    "model": ("tool_calls",),
}


def _redacted(redactor: Redactor, type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """The event data as it may be written down: secret fields replaced (a copy only when one was)."""
    out = data
    removed: list[str] = []
    for part in _REDACTED_PARTS[type_]:
        value = data.get(part)
        clean = redactor.apply(value, removed)
        if clean is not value:
            if out is data:
                out = dict(data)
            out[part] = clean
            if part == "args" and "raw_args" in out:
                out["raw_args"] = REDACTED  # the unparsed text holds the same secret
    if removed and "decision" in out:
        # A reason or a finding may quote the value ("iban='DE89...' appears nowhere").
        out["decision"] = scrub(out["decision"], cleaner(removed))
    return out


def _values_of(payload: Any) -> set[str]:
    """Normalised scalar values of a payload, and the words of its texts (a ticket's body naming the
    order): what a call or a result was about."""
    out: set[str] = set()
    for _, v in leaves(payload if not isinstance(payload, str) else [payload]):
        k = norm(v)
        if k is not None:
            out.add(k)
        if isinstance(v, str) and len(v) <= 4000:
            out |= text_keys(v)
    return out


def _records(payload: Any, limit: int = 1000) -> Iterator[Any]:
    """The payload and every mapping inside it (bounded): the entities a result shows, one by one."""
    stack, seen = [payload], 0
    while stack and seen < limit:
        v = stack.pop()
        seen += 1
        if isinstance(v, Mapping):
            yield {k: x for k, x in v.items() if not isinstance(x, Mapping | list | tuple)}
            stack.extend(x for x in v.values() if isinstance(x, Mapping | list | tuple))
        elif isinstance(v, list | tuple):
            stack.extend(v[:limit])
        else:
            yield v


def _output_hash(output: Any) -> int:
    # "The same result again" for one tool: equal payloads in the same key order. A flat object hashes
    # its items directly (string hashes are cached, so this is cheaper than repr); anything else, repr.
    if type(output) is dict:
        try:
            return hash(tuple(output.items()))
        except TypeError:  # a list or dict inside
            pass
    return hash(output) if isinstance(output, str) else hash(safe_repr(output))


def _dedupe(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        key = (f.check, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return tuple(out)


def gate_action(
    active: Sequence[Finding],
    risk: Risk,
    th: Thresholds,
    action_for: Callable[[Kind], Action],
    stage: Stage = "call",
) -> tuple[Action, float, list[Finding]]:
    """The autonomy gate's arithmetic: active findings x tool risk -> (action, risk score, deciding findings).

    Pure (approval conditions aside, which `Run._gate` applies after), so a threshold sweep can re-decide
    recorded calls at many operating points without re-running their checks.
    """
    score = max((SEVERITY_WEIGHT[f.severity] for f in active), default=0.0) * RISK_WEIGHT[risk]
    action: Action = "allow"
    deciding: list[Finding] = []
    if active:
        # The most severe findings choose the remedy (a missing lookup blocks even when an argument
        # is also ungrounded: the lookup may ground it); a decision a check demanded always counts.
        top = max(SEVERITY_WEIGHT[f.severity] for f in active)
        explicit = [(f.decision, f) for f in active if f.decision is not None]
        remedies = [
            (action_for(f.kind), f)
            for f in active
            if f.decision is None and SEVERITY_WEIGHT[f.severity] == top
        ]
        pool: list[tuple[Action, Finding]] = [*explicit, *remedies] if score >= th.tolerate else explicit
        if pool:
            action = max((a for a, _ in pool), key=ACTION_RANK.__getitem__)
            deciding = [f for a, f in pool if a == action]
        if action in ("allow", "block", "clarify") and score >= th.escalate:
            action = "escalate"
            deciding = [f for f in active if SEVERITY_WEIGHT[f.severity] * RISK_WEIGHT[risk] >= th.escalate]
    if stage == "result" and risk != "read" and action in ("block", "clarify"):
        # The side effect already happened: the model cannot undo it by retrying; a person must look.
        action = "escalate"
    return action, score, deciding


def _plain_allow(call: ToolCall, stage: Stage) -> Decision:
    """The allow `Run._keep` drops rather than keeps, rebuilt when a call's decision is asked for."""
    return Decision("allow", "", (), 0.0, call.tool, call.call_id, None, stage)


class Run:
    """The verification state of one agent run. Get one from `Guard.start_run`; runs share nothing."""

    # The event methods take `str | Any` where a framework hands in text or ids: anything is accepted and
    # coerced, since bad input gets a decision, not a TypeError (the compiled build enforces a plain `str`
    # annotation when called).

    def __init__(
        self,
        policy: Policy,
        run_id: str,
        store: TraceStore,
        *,
        metadata: Mapping[str, Any] | None = None,
        record_start: bool = True,
        first_seq: int = 1,
        escalations: EscalationStore | None = None,
        notify: Callable[[Escalation], None] | None = None,
        require_stored_decisions: bool = False,
    ) -> None:
        self.run_id = run_id
        self.policy = policy
        self.metadata = dict(metadata or {})
        self.view = RunView(run_id, policy.now)
        self.ended = False
        self.final: Decision | None = None
        self.last_active = time.monotonic()
        # What an integration keeps per run (the LangGraph handler: the ids of the messages it has
        # recorded), under a key of its own. It lives and ends with the run, so an integration needs
        # no map of runs (and no weak references, which compiled Runs do not support).
        self.memo: dict[str, Any] = {}
        self._store = store
        self._tracker = Tracker(policy)
        self._lock = threading.RLock()
        self._seq = first_seq - 1  # a run id reused after an end continues its numbering
        # Decisions on calls and on their results, by call id. A plain allow is not kept but rebuilt when
        # asked for (see `_keep`): most decisions are plain allows, two per call.
        self._decided: dict[str, Decision] = {}
        self._results: dict[str, Decision] = {}
        # Escalation records: the store, who to tell about a new one, and how many each call has had (a
        # call escalated again after an edit gets a new record; the ids are derived from these counts).
        self._escalations = escalations
        self._notify = notify
        self._require_stored = require_stored_decisions
        self._rounds: dict[str, int] = {}
        self._last_escalation: dict[str, str] = {}
        # Writes this process began through `begin` (ledger: executing): their results mark them executed.
        self._begun: set[str] = set()
        self._redactor = policy.redactor
        self._user_pattern = (
            re.compile(policy.identity.pattern, re.IGNORECASE)
            if policy.identity is not None and policy.identity.pattern
            else None
        )
        if record_start:
            # The policy's name and fingerprint, not its full description: a run starts per agent run,
            # and the description is the same for all of them.
            policy_ref = {"name": policy.name, "fingerprint": policy.fingerprint}
            self._record("start", {"policy": policy_ref, "metadata": self.metadata}, durable=False)

    # ---- events -------------------------------------------------------------------------------------

    def user(self, text: str | Any, *, meta: Mapping[str, Any] | None = None) -> None:
        """A user message: the source of grounding, confirmations and clarification answers.

        `meta` (on every event method) is recorded with the event: where in the framework it happened,
        e.g. LangGraph's node and step.
        """
        with self._lock:
            self._touch()
            text = _text(text)
            seq = self._record("user", _with_meta({"text": text}, meta), durable=False)
            self._apply_user(seq, text)

    def model(
        self,
        text: str | Any | None = "",
        tool_calls: Sequence[Mapping[str, Any]] | None = None,
        *,
        tokens: int | Any | None = None,
        final: bool | Any = False,
        meta: Mapping[str, Any] | None = None,
    ) -> Decision:
        """A model turn: its text (proposals the user may confirm) and the tool calls it proposes.

        `final=True` marks an answer to the user (a turn without tool calls, in a conversation where one
        run spans many answers): outcomes it claims must be backed by successful results, as at `end()`,
        but the run goes on. The decision is then `block` (or `escalate`) for an unsupported claim.
        """
        with self._lock:
            self._touch()
            text = _text(text)
            proposed = [
                dict(tc) if isinstance(tc, Mapping) else {"raw": safe_repr(tc)} for tc in (tool_calls or ())
            ]
            n = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0 else 0
            seq = self._next_seq()
            self._apply_model(seq, text, n)
            findings = self._tracker.check_budgets(self.view, extra_steps=0)
            stage: Stage = "model"
            if final and text and not proposed:
                claims = self._claim_findings(text)
                if claims:
                    findings, stage = [*findings, *claims], "end"
            decision = (
                self._gate(
                    findings, "write" if stage == "end" else "read", tool=None, call_id=None, stage=stage
                )
                if findings
                else Decision.allow(stage="model")
            )
            self._write(
                seq,
                "model",
                _with_meta(
                    {"text": text, "tool_calls": proposed, "tokens": n, "decision": decision.to_dict()}, meta
                ),
                durable=decision.action != "allow",
            )
            return decision

    def tool_call(
        self,
        tool: str | Any,
        args: Any = None,
        call_id: str | Any | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide whether a proposed tool call may run. Re-delivering a decided call returns its decision."""
        with self._lock:
            self._touch()
            if self.ended:
                return Decision.stop("the run has ended", tool=str(tool), call_id=call_id)
            tool = str(tool) if tool else "<unnamed>"
            parsed, problems = _coerce_args(args)
            cid = str(call_id) if call_id is not None and str(call_id) else None
            if cid is not None:
                prior = self.view.call(cid)
                if prior is not None and prior.tool == tool and prior.args == parsed:
                    known = self._call_decision(prior)
                    if known is not None:
                        return known
            resolved = self.policy.resolve(tool)
            seq = self._next_seq()
            call = ToolCall(
                tool,
                parsed,
                cid or f"call-{seq}",
                seq,
                raw_args=None if type(args) is dict or isinstance(args, Mapping) else args,
            )
            sig = tool + "\x00" + canonical(parsed)
            try:
                findings = [*problems, *self._before(call, resolved, sig)]
                decision = self._gate(findings, resolved, tool=tool, call_id=call.call_id, call=call)
            except Exception as e:  # a bug of ours must not reach the agent: fail by the tool's risk
                decision = self._internal_error(resolved, call, e)
            decision = self._numbered(call, decision)
            data = _with_meta(_call_data(call, decision), meta)
            if call.raw_args is not None:
                data["raw_args"] = (
                    call.raw_args if isinstance(call.raw_args, str) else safe_repr(call.raw_args)
                )
            durable = resolved.risk != "read" or decision.action not in ("allow", "block")
            try:
                self._write(seq, "tool_call", data, durable=durable, strict=durable)
            except Exception as e:
                # Fail closed: a side effect whose permission is not on disk must not happen.
                if decision.action == "allow":
                    decision = Decision.block(
                        f"headway could not record this decision ({type(e).__name__}: {e}); the call was not run",
                        decision.findings,
                        tool=tool,
                        call_id=call.call_id,
                    )
            self._apply_call(call, sig, decision, resolved)
            # After the trace event: that durable write also commits the run's buffered events, so a
            # crash after this point leaves a record and the trajectory a person needs to decide it.
            self._file(call, decision)
            return decision

    def tool_result(
        self,
        call_id: str | Any | None,
        output: Any = None,
        *,
        error: Any = None,
        tool: str | Any | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Decision:
        """A tool's result: after-checks run; the Decision says whether the result can be trusted.

        `block` means the result looks wrong and the model must be told (see `Decision.for_model`);
        `escalate` means a write already ran and its result needs a person.
        """
        with self._lock:
            self._touch()
            cid = None if call_id is None else str(call_id)
            call = self.view.call(cid) if cid is not None else None
            notes: list[Finding] = []
            if call is not None and call.done:
                known = self._result_decision(call)
                if known is not None:
                    return known
            seq = self._next_seq()
            if call is None:
                notes.append(
                    Finding("call_id", "silent_tool_error", "note", f"result for unknown call id {cid!r}")
                )
                call = ToolCall(str(tool or "<unknown>"), {}, cid or f"call-{seq}", seq)
                self._apply_call(
                    call, call.tool + "\x00{}", Decision.allow(), self.policy.resolve(call.tool), count=False
                )
            elif not call.ran:
                notes.append(
                    Finding(
                        "call_id",
                        "silent_tool_error",
                        "note",
                        f"result for a call headway decided {call.action!r}",
                    )
                )
            resolved = self.policy.resolve(call.tool)
            parsed = parse_payload(output)
            err = (
                None if error is None else _text(error if isinstance(error, str) else safe_repr(error))[:4000]
            )
            try:
                call.output, call.error, call.done = parsed, err, True
                after = [*notes, *self._after(call, resolved)]
                sig = call.sig or call.tool
                out_hash = _output_hash(parsed) if err is None else 0
                nothing_new = self._tracker.nothing_new(sig, out_hash) if err is None else None
                if nothing_new is not None:
                    after.append(nothing_new)
                conflicts, milestones = self._apply_result(
                    call, parsed, err, tuple(after), out_hash=out_hash, resolved=resolved
                )
                findings = after + conflicts
                decision = self._gate(
                    findings, resolved, tool=call.tool, call_id=call.call_id, stage="result"
                )
            except Exception as e:
                decision = self._internal_error(resolved, call, e)
                milestones = []
            self._finish_result(call, decision)
            if decision.action in ("escalate", "clarify"):
                decision = self._numbered(call, decision)  # a write's doubtful result: a person reviews it
            self._keep(self._results, call, decision, "result")
            if call.call_id in self._begun:
                self._begun.discard(call.call_id)
                self._executed(call, parsed, err)
            data = {
                "call_id": call.call_id,
                "tool": call.tool,
                "output": parsed,
                "error": err,
                "milestones": milestones,
                "decision": decision.to_dict(),
            }
            if meta:
                data["meta"] = _meta(meta)
            # Results are batched like reads (flushed by the store's timer, at the next write decision
            # and at run end). A crash before that leaves the call "allowed, no result": an unknown
            # outcome that resumption must escalate, not re-run.
            self._write(seq, "tool_result", data, durable=decision.action != "allow")
            self._file(call, decision)  # after the durable event, as for calls
            return decision

    def resolve(
        self,
        call_id: str,
        action: HumanAction,
        *,
        by: str,
        message: str | None = None,
        args: Mapping[str, Any] | None = None,
        text: str | None = None,
    ) -> Decision:
        """Apply a person's decision on an escalated or clarifying call and return the new Decision.

        approve (the call may run), reject (blocked; `message` goes to the model), edit (new `args`,
        checked by the policy again; the edit itself counts as approval), answer (`text` is the user's
        answer to a clarifying question; the call is decided again with it). Raises HeadwayError when
        the call is unknown or is not waiting for a person: that is a caller's error, not the agent's.
        """
        with self._lock:
            self._touch()
            call = self.view.call(call_id)
            if call is None:
                raise HeadwayError(f"run {self.run_id!r} has no call {call_id!r}")
            if call.action not in ("escalate", "clarify"):
                raise HeadwayError(
                    f"call {call_id!r} is not waiting for a person (its decision was {call.action!r})"
                )
            validate_decision(action, by, message, args, text)
            esc_id = self._decided[call_id].escalation_id  # kept: a decision with an escalation is not plain
            if esc_id is not None and self._escalations is not None:
                by, message, args, text = self._arbitrate(esc_id, action, by, message, args, text)
            resolved = self.policy.resolve(call.tool)
            seq = self._next_seq()
            if action == "approve":
                decision = Decision.allow(f"approved by {by}", call.findings, tool=call.tool, call_id=call_id)
            elif action == "reject":
                reason = message or f"rejected by {by}"
                decision = Decision.block(reason, call.findings, tool=call.tool, call_id=call_id)
            elif action == "edit":
                if args is None:
                    raise HeadwayError("an edit needs the new `args`")
                new_args, problems = _coerce_args(args)
                probe = ToolCall(call.tool, new_args, call_id, call.step)
                sig = call.tool + "\x00" + canonical(new_args)
                findings = [*problems, *self._before(probe, resolved, sig, repeat_of=call)]
                # The person supplied and approved these values: they need no grounding in the user's
                # words and no further yes. Every other check (bounds, preconditions...) still applies.
                findings = [
                    dataclasses.replace(
                        f, severity="note", decision=None, message=f"{f.message} (waived: a person's edit)"
                    )
                    if f.kind in ("ungrounded", "unconfirmed", "ambiguous")
                    else f
                    for f in findings
                ]
                decision = self._gate(
                    findings, resolved, tool=call.tool, call_id=call_id, call=probe, approved=True
                )
                decision = self._numbered(probe, decision)
            else:
                if not text:
                    raise HeadwayError("an answer needs the user's `text`")
                self._apply_user(seq, _text(text), answer=True)
                sig = call.sig or call.tool
                findings = self._before(call, resolved, sig, repeat_of=call)
                decision = self._gate(findings, resolved, tool=call.tool, call_id=call_id, call=call)
                decision = self._numbered(call, decision)
            data: dict[str, Any] = {
                "call_id": call_id,
                "action": action,
                "by": str(by),
                "decision": decision.to_dict(),
            }
            if message is not None:
                data["message"] = _text(message)
            if action == "edit":
                data["args"] = new_args
            if action == "answer":
                data["text"] = _text(text)
            self._apply_human(call, action, decision, new_args if action == "edit" else None, resolved)
            self._write(seq, "human", data, durable=True, strict=True)
            self._file(call, decision)
            return decision

    def end(self, final_answer: str | Any | None = None) -> Decision:
        """The run's end: claims in the answer must be backed by results; required milestones reached."""
        with self._lock:
            self._touch()
            if self.ended and self.final is not None:
                return self.final
            answer = _text(final_answer)
            findings: list[Finding] = []
            try:
                findings = self._end_findings(answer)
                decision = (
                    self._gate(findings, "write", tool=None, call_id=None, stage="end")
                    if findings
                    else Decision.allow(stage="end")
                )
            except Exception as e:
                decision = Decision.allow(
                    findings=(Finding("end", "unsupported_claim", "note", f"end checks crashed: {e!r}"),)
                )
            self.final = decision
            self.ended = True
            # Batched when allowed, like the other events that decide nothing risky: a commit per run end
            # was ~150 µs, 4% of a short Agents SDK run. Reading the run flushes it first, so this process
            # (and a restore here) sees the end at once; a crash can lose it with the rest of the batch.
            self._record(
                "end",
                {"final_answer": answer, "decision": decision.to_dict()},
                durable=decision.action != "allow",
            )
            return decision

    # ---- reading --------------------------------------------------------------------------------------

    @property
    def progress(self) -> Progress:
        """Milestones reached and remaining, and tool calls since the last progress."""
        return self._tracker.progress(self.view)

    @property
    def pending(self) -> list[ToolCall]:
        """Calls waiting for a person (escalated or clarifying)."""
        return [c for c in self.view.calls(include_blocked=True) if c.action in ("escalate", "clarify")]

    @property
    def last_seq(self) -> int:
        """The sequence number of the run's latest event."""
        return self._seq

    def decision(self, call_id: str | Any) -> Decision | None:
        """The latest decision on a call (its result's decision once it has one)."""
        with self._lock:
            call = self.view.call(call_id) if isinstance(call_id, str) else None
            if call is None:
                return None
            return self._result_decision(call) or self._call_decision(call)

    def _keep(self, kept: dict[str, Decision], call: ToolCall, d: Decision, stage: Stage) -> None:
        """Keep a decision on `call` (in `_decided`) or on its result (in `_results`). A plain allow is
        dropped instead and rebuilt when asked for (`_plain_allow`): it holds nothing but the call's tool
        and id, and keeping two per call cost a long run about 2.5 MB per 10,000 calls."""
        if (
            d.action == "allow"
            and d.stage == stage
            and not d.reason
            and not d.findings
            and d.risk == 0.0
            and d.question is None
            and d.escalation_id is None
            and d.tool == call.tool
            and d.call_id == call.call_id
        ):
            kept.pop(call.call_id, None)
        else:
            kept[call.call_id] = d

    def _call_decision(self, call: ToolCall) -> Decision | None:
        d = self._decided.get(call.call_id)
        if d is None and call.action == "allow":
            return _plain_allow(call, "call")
        return d

    def _result_decision(self, call: ToolCall) -> Decision | None:
        if not call.done:
            return None
        d = self._results.get(call.call_id)
        return _plain_allow(call, "result") if d is None else d

    # ---- deciding -------------------------------------------------------------------------------------

    def _safe(self, check: Check, call: ToolCall, resolved: _Resolved) -> list[Finding]:
        try:
            result = check(call, self.view)
            if result is None:
                return []  # the common case, without the conversion below
            return _checks.to_findings(check, result)
        except Exception as e:
            name = getattr(check, "name", None) or safe_repr(check)
            kind: Kind = getattr(check, "kind", "policy_violation")
            if resolved.risk == "read":
                return [
                    Finding(
                        name,
                        kind,
                        "note",
                        f"check {name} crashed ({type(e).__name__}: {e}); failing open on a read tool",
                    )
                ]
            return [
                Finding(
                    name,
                    kind,
                    "high",
                    f"check {name} crashed ({type(e).__name__}: {e}); failing closed on {'an' if resolved.risk == 'irreversible' else 'a'} {resolved.risk} tool",
                    {"exception": safe_repr(e)[:500]},
                    "escalate",
                )
            ]

    def _before(
        self, call: ToolCall, resolved: _Resolved, sig: str, repeat_of: ToolCall | None = None
    ) -> list[Finding]:
        findings: list[Finding] = []
        for check in resolved.before:
            findings.extend(self._safe(check, call, resolved))
        if resolved.risk != "read":
            if self.policy.detect_ambiguity:
                findings.extend(self._safe(_AUTO_UNAMBIGUOUS, call, resolved))
            findings.extend(self._taint(call))
        if repeat_of is None:
            findings.extend(self._tracker.check_call(sig, call, self.view))
        return findings

    def _after(self, call: ToolCall, resolved: _Resolved) -> list[Finding]:
        findings: list[Finding] = []
        for check in resolved.after:
            findings.extend(self._safe(check, call, resolved))
        return findings

    def _taint(self, call: ToolCall) -> list[Finding]:
        out = []
        for name, value in call.args.items():
            for _, leaf in leaves(value, limit=200):
                steps = self.view.only_flagged(leaf)
                if steps:
                    out.append(
                        Finding(
                            TAINT,
                            "ignored_tool_error",
                            "high",
                            f"{name}={leaf!r} comes only from results that were flagged as wrong (steps "
                            f"{', '.join(map(str, steps))}); a person should check before {call.tool} runs",
                            {"arg": name, "steps": steps},
                            "escalate",
                        )
                    )
                    break
        return out

    def _gate(
        self,
        findings: Sequence[Finding],
        resolved: _Resolved | Literal["read", "write", "irreversible"],
        *,
        tool: str | None,
        call_id: str | None,
        call: ToolCall | None = None,
        stage: Stage = "call",
        approved: bool = False,
    ) -> Decision:
        """The autonomy gate: findings x tool risk -> one decision, by the policy's thresholds."""
        if not findings and (
            isinstance(resolved, str) or not resolved.approve_when or call is None or approved
        ):
            return Decision("allow", "", (), 0.0, tool, call_id, None, stage)  # the common case, kept cheap
        risk = resolved if isinstance(resolved, str) else resolved.risk
        fs = _dedupe(findings)
        active = [f for f in fs if f.severity != "note"]
        action, score, deciding = gate_action(
            active, risk, self.policy.thresholds, self.policy.action_for, stage
        )
        if action == "allow" and call is not None and not approved and not isinstance(resolved, str):
            why = self._approval(call, resolved)
            if why is not None:
                return Decision("escalate", why[0], (*fs, *why[1]), score, tool, call_id, None, stage)
        if action == "allow":
            return Decision(
                "allow",
                "tolerated: " + "; ".join(f.message for f in active) if active else "",
                fs,
                score,
                tool,
                call_id,
                None,
                stage,
            )
        reason = "; ".join(f.message for f in [*deciding, *(f for f in active if f not in deciding)])
        question = None
        if action == "clarify":
            question = next(
                (str(f.evidence["question"]) for f in deciding if "question" in f.evidence), reason
            )
        return Decision(action, reason, fs, score, tool, call_id, question, stage)

    def _approval(self, call: ToolCall, resolved: _Resolved) -> tuple[str, tuple[Finding, ...]] | None:
        for cond in resolved.approve_when:
            try:
                if cond(call):
                    return f"{call.tool} needs a person's approval under this policy", ()
            except Exception as e:
                note = Finding(
                    "approve_when",
                    "policy_violation",
                    "note",
                    f"approval condition crashed ({e!r}); asking a person",
                )
                return f"{call.tool}: the approval condition could not be evaluated", (note,)
        return None

    def _internal_error(self, resolved: _Resolved, call: ToolCall, e: BaseException) -> Decision:
        msg = f"headway could not evaluate {call.tool} ({type(e).__name__}: {e})"
        if resolved.risk == "read":
            return Decision.allow(
                msg,
                (Finding("headway", "policy_violation", "note", msg),),
                tool=call.tool,
                call_id=call.call_id,
            )
        finding = Finding("headway", "policy_violation", "high", msg + "; failing closed", {}, "escalate")
        return Decision.escalate(msg + "; failing closed", (finding,), tool=call.tool, call_id=call.call_id)

    def _end_findings(self, answer: str) -> list[Finding]:
        findings = self._claim_findings(answer)
        missing = [m for m in self.policy.required_milestones if m not in self.view.milestones]
        if missing:
            findings.append(
                Finding(
                    "milestones",
                    "abandoned",
                    "medium",
                    f"the run ended before reaching {', '.join(missing)}",
                    {"missing": missing},
                )
            )
        return findings

    def _claim_findings(self, answer: str) -> list[Finding]:
        """Outcomes the answer claims that no successful result backs (or that a failed call contradicts)."""
        findings: list[Finding] = []
        names = [t.name for t in self.policy.tools if plain_names((t.name,))]
        # The tools that ran, not a scan of the calls: a final answer at step 10,000 is as cheap as at 10.
        names.extend(self.view._ran_tools)
        candidates = []
        for name in dict.fromkeys(names):
            r = self.policy.resolve(name)
            if r.risk != "read":
                candidates.append((name, r.claims))
        for claim in claimed(answer, candidates) if answer else []:
            tool, sentence = claim.tool, claim.sentence
            # Looked at newest first, in the view's own lists: an answer is usually about the latest
            # calls, so a run of thousands of writes to one tool costs an answer what a short run does.
            last = self.view.last_call(tool)
            if last is not None and self.view.last_call(tool, succeeded=True) is not None:
                missing = self._unbacked(claim, self.view._attempts(tool))
                if missing:
                    findings.append(
                        Finding(
                            "claims",
                            "unsupported_claim",
                            "high",
                            f"the answer says {sentence!r} but no successful {tool} call was for "
                            f"{', '.join(sorted(missing))}",
                            {"tool": tool, "sentence": sentence, "missing": sorted(missing)},
                        )
                    )
                continue
            if self._unbacked(claim, None) == set():
                continue  # a tool's output already shows it done ("status": "refunded" for that order)
            if last is not None and last.failed:
                c = last
                findings.append(
                    Finding(
                        "claims",
                        "ignored_tool_error",
                        "high",
                        f"the answer says {sentence!r} but {tool} failed at step {c.step} ({c.error or 'flagged result'})",
                        {"tool": tool, "sentence": sentence, "steps": [c.step]},
                    )
                )
            else:
                findings.append(
                    Finding(
                        "claims",
                        "unsupported_claim",
                        "high",
                        f"the answer says {sentence!r} but no successful {tool} call backs it",
                        {"tool": tool, "sentence": sentence},
                    )
                )
        return findings

    def _unbacked(self, claim: Claim, attempts: Sequence[ToolCall] | None) -> set[str] | None:
        """What a claim names that no successful call of its tool was about: empty when every amount and
        known entity it names is in some successful call's arguments or result. `attempts`: the tool's
        calls, oldest first, or None when none succeeded; then a claim that reports a state is backed
        by an output showing it (a lookup with status "refunded" for that order). None: nothing backs it."""
        named = set(claim.amounts) | {n for n in claim.names if self.view._seen(n)}
        if claim.state and named:
            # Only results that showed a named entity can show its state: those are looked up (the
            # entity with the fewest), not found by walking every call, so an answer late in a long run
            # costs what it costs early. Without a name (only amounts), every call is looked at, newest
            # first. A name a result shows only inside a long text (over 200 characters) or glued to
            # other signs ("A1/2") is not indexed: such a record no longer backs the claim, which is
            # then held as unsupported (the safe side).
            names = [n for n in named if name_like(n)]
            pool = min((self.view._calls_showing(n) for n in names), key=len) if names else self.view._calls
            for c in reversed(pool):
                if not c.ran:
                    continue
                for record in _records(c.output):  # one order of a list, not the list as a whole
                    shown = _values_of(record)
                    if claim.word in shown and named <= shown:
                        return set()
        best: set[str] | None = None
        if attempts is not None:
            # Each named value by some successful call: "refunded A1 and A2" may be two refunds.
            best = set(named)
            for c in reversed(attempts):
                if not (c.ran and c.succeeded):
                    continue
                best -= _values_of(c.args) | _values_of(c.output)
                if not best:
                    return best
        return best

    # ---- applying (live and restore) ------------------------------------------------------------------

    def _apply_user(self, seq: int, text: str, *, answer: bool = False) -> None:
        self.view._add_user(seq, text, answer=answer)
        if self._user_pattern is not None and self.view.identity is None:
            m = self._user_pattern.search(text)
            if m:
                self.view.identity = m.group(1) if m.groups() else m.group(0)

    def _apply_model(self, seq: int, text: str, tokens: int) -> None:
        self.view._add_agent(seq, text)
        self.view.steps += 1
        self.view.tokens += tokens

    def _apply_call(
        self, call: ToolCall, sig: str, decision: Decision, resolved: _Resolved, *, count: bool = True
    ) -> None:
        call.action = decision.action
        call.findings = decision.findings
        self.view._add_call(call)
        call.sig = sig
        self._keep(self._decided, call, decision, "call")
        if count:
            self.view.steps += 1
            self.view.tool_calls += 1
            self._tracker.on_attempt(sig, decision.findings)
        if decision.action == "allow":
            self.view._mark_ran(call, write=resolved.risk != "read")
            if count:
                self._tracker.on_ran(sig, call.step)

    def _apply_result(
        self,
        call: ToolCall,
        output: Any,
        error: str | None,
        after: tuple[Finding, ...],
        milestones: Sequence[str] | None = None,
        *,
        out_hash: int | None = None,
        resolved: _Resolved | None = None,
    ) -> tuple[list[Finding], list[str]]:
        """Index a result; returns findings for conflicts it revealed, and the milestones it reached."""
        call.output, call.error, call.done = output, error, True
        call.flagged = bool(after) and any(
            f.kind == "silent_tool_error" and f.severity != "note" and f.check != CONFLICT for f in after
        )
        if resolved is None:
            resolved = self.policy.resolve(call.tool)
        found = self.view._add_result(call, read=resolved.risk == "read")
        conflicts = [
            Finding(
                CONFLICT,
                "silent_tool_error",
                "medium",
                f"{call.tool} says {c.field}={c.after!r} for {c.entity[0]}={c.entity[1]!r}, but step {c.steps[0]} "
                f"said {c.before!r} and nothing changed it since",
                {"entity": list(c.entity), "field": c.field, "steps": list(c.steps)},
            )
            for c in found
        ]
        if conflicts:
            call.flagged = True
        ident = self.policy.identity
        if (
            ident is not None
            and ident.tool is not None
            and call.succeeded
            and any_match(as_patterns(ident.tool), call.tool)
        ):
            out = call.output
            value = (
                out.get(ident.field)
                if isinstance(out, Mapping)
                else out
                if isinstance(out, str | int)
                else None
            )
            if value is not None:
                self.view.identity = str(value)
        if milestones is None:
            milestones = self._reach_milestones(call)
        for m in milestones:
            if m not in self.view.milestones:
                self.view.milestones.append(m)
        if error is None:
            self._tracker.on_result(
                call.sig or call.tool,
                _output_hash(output) if out_hash is None else out_hash,
                bool(milestones),
            )
        return conflicts, list(milestones)

    def _reach_milestones(self, call: ToolCall) -> list[str]:
        new: list[str] = []
        for m in self.policy.milestones:
            if m.name in self.view.milestones:
                continue
            hit = False
            if m.after is not None and call.succeeded:
                hit = any_match((m.after,) if isinstance(m.after, str) else tuple(m.after), call.tool)
            if not hit and m.when is not None:
                try:
                    hit = bool(m.when(self.view))
                except Exception:
                    hit = False  # a broken predicate never marks progress
            if hit:
                new.append(m.name)
        return new

    def _finish_result(self, call: ToolCall, decision: Decision) -> None:
        call.findings = (*call.findings, *decision.findings)
        if any(f.kind == "silent_tool_error" and f.severity != "note" for f in decision.findings):
            call.flagged = True

    def _apply_human(
        self,
        call: ToolCall,
        action: HumanAction,
        decision: Decision,
        new_args: dict[str, Any] | None,
        resolved: _Resolved,
    ) -> None:
        if new_args is not None:
            call.args = new_args
            call.sig = call.tool + "\x00" + canonical(new_args)
        call.action = decision.action
        call.findings = decision.findings
        self._keep(self._decided, call, decision, "call")
        if decision.action == "allow":
            self.view._mark_ran(call, write=resolved.risk != "read")
            self._tracker.on_ran(call.sig, call.step)

    # ---- escalation records and the ledger ------------------------------------------------------------

    def begin(self, call_id: str | Any) -> Start:
        """Call right before running an allowed call; the answer says whether to.

        "run": go ahead (for a side-effecting tool the ledger now says executing, owned by this caller).
        "done": it already ran (in this process or another); its recorded result is on
        `run.view.call(call_id)`: hand that back instead of running the tool again.
        "wait": it must not run: it was not allowed, or it is already executing somewhere or a crash left
        its outcome unknown, in which case it is escalated to a person (`run.decision(call_id)`).
        """
        with self._lock:
            call = self.view.call(call_id)
            if call is None or call.action != "allow":
                return "wait"
            if call.done:
                return "done"
            resolved = self.policy.resolve(call.tool)
            if self._escalations is None or resolved.risk == "read" or resolved.idempotent:
                return "run"
            try:
                claim = self._escalations.begin(self.run_id, call_id)
            except Exception as e:
                # Fail closed: a side effect whose start is not on record must not happen.
                _log.exception("headway: could not record the start of %s in run %s", call_id, self.run_id)
                d = Decision.block(
                    f"headway could not record that {call.tool} started ({type(e).__name__}); it was not run",
                    call.findings,
                    tool=call.tool,
                    call_id=call_id,
                )
                call.action = d.action
                self._keep(self._decided, call, d, "call")
                return "wait"
            if claim.owner:
                self._begun.add(call_id)  # its result completes the ledger entry
                return "run"
            assert claim.entry is not None
            if claim.entry.state == "executed":
                self._replay(call, claim.entry)
                return "done"
            self._unknown_outcome(call)
            return "wait"

    def escalation(self, call_id: str | Any) -> Escalation | None:
        """The call's latest escalation record, pending or decided (None when it never had one)."""
        eid = self._last_escalation.get(call_id)
        if eid is None or self._escalations is None:
            return None
        return self._escalations.get(eid)

    def _numbered(self, call: ToolCall, decision: Decision) -> Decision:
        """Give a clarify/escalate decision the id of its record (derived from the run, the call and how
        many records the call had before, so a replay or a restart numbers it the same)."""
        if decision.action not in ("escalate", "clarify") or self._escalations is None:
            return decision
        n = self._rounds.get(call.call_id, 0)
        self._rounds[call.call_id] = n + 1
        eid = self._last_escalation[call.call_id] = escalation_id(self.run_id, call.call_id, n)
        return dataclasses.replace(decision, escalation_id=eid)

    def _file(self, call: ToolCall, decision: Decision, *, unknown: bool = False) -> None:
        """Store a numbered decision's escalation record; notifiers hear of it once, when it is new."""
        if decision.escalation_id is None or self._escalations is None:
            return
        removed: list[str] = []
        args = dict(self._redactor.apply(call.args, removed))
        metadata: dict[str, Any] = {"unknown_outcome": True} if unknown else {}
        if decision.stage == "result":
            # The call already ran: the person reviews what it returned, so the record shows it.
            output = self._redactor.apply(call.output, removed)
            metadata.update(stage="result", output=encode_data(output, 500)[:4000], error=call.error)
        clean = cleaner(removed)
        fresh = Escalation(
            decision.escalation_id,
            self.run_id,
            call.call_id,
            call.tool,
            args,
            "clarify" if decision.action == "clarify" else "escalate",
            clean(decision.reason),
            None if decision.question is None else clean(decision.question),
            tuple(
                dataclasses.replace(f, message=clean(f.message), evidence=scrub(f.evidence, clean))
                for f in decision.findings
            )
            if removed
            else decision.findings,
            time.time(),
            metadata=metadata,
        )
        try:
            stored = self._escalations.create(fresh)
        except Exception:
            # The call waits either way; a restore files the missing record again.
            _log.exception("headway: could not record escalation %s of run %s", fresh.id, self.run_id)
            return
        if stored.created_at == fresh.created_at and self._notify is not None:
            self._notify(stored)  # new, not one a replay re-created

    def refusal(
        self,
        call_id: str,
        action: HumanAction,
        *,
        args: Mapping[str, Any] | None = None,
        text: str | None = None,
        escalation_id: str | None = None,
    ) -> str | None:
        """Why the escalation store refuses this decision on a paused call (None: it would be taken).

        `escalation_id`: the record the decision was made on; a decision on an older record of the same
        call (escalated again since, e.g. after a crash) is stale and refused. Adapters ask before a
        framework saves a resume value, so a refused resume leaves the pause as it was.
        """
        with self._lock:
            d = self._decided.get(call_id)
            if escalation_id is not None and (d is None or d.escalation_id != escalation_id):
                current = None if d is None else d.escalation_id
                return (
                    f"refused: the decision is for escalation {escalation_id}, but call {call_id} now waits "
                    f"on {current or 'nothing'}: decide that one"
                )
            if d is None or d.escalation_id is None or self._escalations is None:
                return None
            stored = self._escalations.get(d.escalation_id)
            return self._refuses(d.escalation_id, stored, action, args, text)

    def _refuses(
        self,
        esc_id: str,
        stored: Escalation | None,
        action: HumanAction,
        args: Mapping[str, Any] | None,
        text: str | None,
    ) -> str | None:
        if stored is None:
            return f"escalation {esc_id} is not in the escalation store" if self._require_stored else None
        if stored.pending:
            if not self._require_stored:
                return None
            return (
                f"escalation {esc_id} has no decision in the store yet: decide it first "
                f"(`headway escalations {action} {esc_id}`, the inbox, or guard.escalations.decide)"
            )
        same = stored.action == action and (
            (action != "edit" or dict(stored.new_args or {}) == dict(args or {}))
            and (action != "answer" or stored.text == text)
        )
        if same:
            return None
        return f"refused: escalation {esc_id} was {stored.status} by {stored.decided_by}, but this resume says {action!r}"

    def _arbitrate(
        self,
        esc_id: str,
        action: HumanAction,
        by: str,
        message: str | None,
        args: Mapping[str, Any] | None,
        text: str | None,
    ) -> tuple[str, str | None, Mapping[str, Any] | None, str | None]:
        """The store decides who decided: record this decision there (a conditional update), or check it
        against the one already there. Returns the stored decision's values."""
        assert self._escalations is not None
        stored = self._escalations.get(esc_id)
        reason = self._refuses(esc_id, stored, action, args, text)
        if reason is None and stored is not None and stored.pending:
            try:
                stored = self._escalations.decide(
                    esc_id, action, by=by, message=message, args=args, text=text
                )
            except EscalationConflict as e:
                stored = e.current  # decided meanwhile by someone else: it must agree
                reason = self._refuses(esc_id, stored, action, args, text)
        if reason is not None:
            raise HeadwayError(reason)
        if stored is None:
            return by, message, args, text
        if stored.metadata.get("unknown_outcome") and action in ("approve", "edit"):
            # A person checked the unknown outcome and wants it run: let `begin` claim it afresh.
            self._escalations.release(self.run_id, stored.call_id)
        return str(stored.decided_by), stored.message, stored.new_args, stored.text

    def _executed(self, call: ToolCall, output: Any, error: str | None) -> None:
        """Ledger: executing -> executed, with the result, before the result's decision is returned.
        Only for calls begun through `begin`: exactly-once across processes is what `begin` opts into."""
        assert self._escalations is not None
        try:
            self._escalations.finish(self.run_id, call.call_id, output, error)
        except Exception:
            # The result is still in the trace; a restart without it escalates the call as unknown.
            _log.exception("headway: could not record the result of %s in run %s", call.call_id, self.run_id)

    def _replay(self, call: ToolCall, entry: LedgerEntry) -> None:
        """A call the ledger shows as executed (by another process): take its recorded result."""
        self.tool_result(call.call_id, output=entry.output, error=entry.error)

    # ---- restoring ----------------------------------------------------------------------------------

    def _unknown_outcome(self, call: ToolCall) -> Decision:
        """Escalate a write whose outcome is unknown (a crash mid-call, or another worker running it);
        never re-run it silently."""
        finding = Finding(
            "exactly_once",
            "repeated_side_effect",
            "high",
            f"{call.tool} was allowed at step {call.step} but no result was recorded (the process may have "
            "stopped while it ran): it may already have happened; a person must check before it runs again",
            {"steps": [call.step]},
            "escalate",
        )
        decision = Decision.escalate(finding.message, (finding,), tool=call.tool, call_id=call.call_id)
        decision = self._numbered(call, decision)
        call.action, call.findings = decision.action, decision.findings
        self._keep(self._decided, call, decision, "call")
        self._write(self._next_seq(), "tool_call", _call_data(call, decision), durable=True)
        self._file(call, decision, unknown=True)
        return decision

    def _restore(self, events: Iterable[Event]) -> None:
        """Rebuild state from recorded events (decisions as recorded, checks not re-run)."""
        self._restore_events(events)
        for call in list(self.view.calls(include_blocked=True)):
            reviewed = self._results.get(call.call_id)
            if reviewed is not None and reviewed.escalation_id is not None:
                self._refile(call, reviewed)  # a result a person must review
            d = self._decided.get(call.call_id)
            if d is not None and d.escalation_id is not None and call.action in ("escalate", "clarify"):
                self._refile(call, d)
                continue
            r = self.policy.resolve(call.tool)
            if call.done or call.action != "allow" or r.risk == "read" or r.idempotent:
                continue
            entry = None
            if self._escalations is not None:
                try:
                    entry = self._escalations.ledger(self.run_id, call.call_id)
                except Exception:
                    _log.exception("headway: could not read the ledger of run %s", self.run_id)
            if entry is not None and entry.state == "executed":
                self._replay(call, entry)  # the result's trace event was lost with the process
            else:
                # Allowed, maybe started, no result: the process that ran it may have died mid-call.
                # Escalated now, not at the next delivery, so the inbox shows it and nothing waits unseen.
                self._unknown_outcome(call)

    def _refile(self, call: ToolCall, decision: Decision) -> None:
        """A restored call waiting for a person whose record never reached the store (a crash between
        the trace event and the record): file it now, so no escalation is lost."""
        assert self._escalations is not None
        assert decision.escalation_id is not None
        try:
            missing = self._escalations.get(decision.escalation_id) is None
        except Exception:
            _log.exception("headway: could not read escalation %s", decision.escalation_id)
            return
        if missing:
            unknown = any(f.check == "exactly_once" for f in decision.findings)
            self._file(call, decision, unknown=unknown)

    def _restore_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            d = ev.data
            self._seq = max(self._seq, ev.seq)
            opened = d.get("decision") if ev.type in ("tool_call", "human", "tool_result") else None
            if isinstance(opened, Mapping) and opened.get("escalation_id"):
                cid = str(d.get("call_id"))
                self._rounds[cid] = self._rounds.get(cid, 0) + 1  # the next record gets the next id
                self._last_escalation[cid] = str(opened["escalation_id"])
            if ev.type == "start":
                self.metadata = dict(d.get("metadata") or {})
            elif ev.type == "user":
                self._apply_user(ev.seq, str(d.get("text", "")))
            elif ev.type == "model":
                self._apply_model(ev.seq, str(d.get("text", "")), int(d.get("tokens") or 0))
            elif ev.type == "tool_call":
                dec = Decision.from_dict(d["decision"])
                args = d.get("args") or {}
                known = self.view.call(str(d["call_id"]))
                if known is not None and known.args == args:
                    # The same call decided again (an unknown outcome escalated after a restart).
                    known.action, known.findings = dec.action, dec.findings
                    self._keep(self._decided, known, dec, "call")
                    continue
                call = ToolCall(str(d["tool"]), dict(args), str(d["call_id"]), ev.seq)
                self._apply_call(
                    call, call.tool + "\x00" + canonical(call.args), dec, self.policy.resolve(call.tool)
                )
            elif ev.type == "tool_result":
                dec = Decision.from_dict(d["decision"])
                cid = str(d["call_id"])
                done = self.view.call(cid)
                if done is None:
                    done = ToolCall(str(d.get("tool") or "<unknown>"), {}, cid, ev.seq)
                    self._apply_call(
                        done,
                        done.tool + "\x00{}",
                        Decision.allow(),
                        self.policy.resolve(done.tool),
                        count=False,
                    )
                after = tuple(f for f in dec.findings if f.check != CONFLICT)
                self._apply_result(done, d.get("output"), d.get("error"), after, d.get("milestones") or [])
                self._finish_result(done, dec)
                self._keep(self._results, done, dec, "result")
            elif ev.type == "human":
                pending = self.view.call(str(d["call_id"]))
                if pending is None:
                    continue
                dec = Decision.from_dict(d["decision"])
                if d.get("action") == "answer" and d.get("text"):
                    self._apply_user(ev.seq, str(d["text"]), answer=True)
                self._apply_human(pending, d["action"], dec, d.get("args"), self.policy.resolve(pending.tool))
            elif ev.type == "end":
                self.ended = True
                self.final = Decision.from_dict(d["decision"])

    # ---- recording ----------------------------------------------------------------------------------

    def _touch(self) -> None:
        self.last_active = time.monotonic()

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _record(self, type_: EventType, data: dict[str, Any], *, durable: bool) -> int:
        seq = self._next_seq()
        self._write(seq, type_, data, durable=durable)
        return seq

    def _write(
        self, seq: int, type_: EventType, data: dict[str, Any], *, durable: bool, strict: bool = False
    ) -> None:
        """Append to the trace store. A failure raises only when `strict` (the caller fails closed);
        otherwise it is logged: recording must never break the agent."""
        if type_ in _REDACTED_PARTS and self._redactor.patterns:
            data = _redacted(self._redactor, type_, data)
        try:
            self._store.append(Event(self.run_id, seq, time.time(), type_, data), durable=durable)
        except Exception:
            if strict:
                raise
            _log.exception("headway: could not record %s event %s of run %s", type_, seq, self.run_id)

    def __repr__(self) -> str:
        return f"<Run {self.run_id!r} steps={self.view.steps} ended={self.ended}>"
