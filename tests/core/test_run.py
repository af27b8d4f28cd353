"""The run lifecycle and the autonomy gate: thresholds, approvals, human resolution, idempotency, run end,
restore from the trace store (in-process and across a real subprocess), and the Guard's run management."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from headway import (
    Decision,
    Guard,
    HeadwayError,
    Milestone,
    Policy,
    Run,
    Thresholds,
    Tool,
    ToolCall,
    checks,
)
from headway.traces import MemoryStore, SQLiteStore
from tests.core._helpers import do, found, make_run, one

ROOT = Path(__file__).resolve().parents[2]


def refund_policy(**kw: Any) -> Policy:
    """A small refund policy: read lookups; an irreversible refund with bounds, grounding and approval."""
    return Policy(
        tools=[
            Tool("lookup_order", risk="read"),
            Tool(
                "refund_order",
                risk="irreversible",
                before=[checks.bounds("amount", max=500), checks.grounded("amount")],
                approve_when=lambda call: call.args.get("amount", 0) > 100,
            ),
            Tool("create_ticket", risk="write"),
        ],
        **kw,
    )


# ---- thresholds -----------------------------------------------------------------------------------


def _ungrounded_call(**kw: Any) -> Decision:
    run = make_run(refund_policy(**kw))
    run.user("refund order A1 please")
    return run.tool_call("refund_order", {"order_id": "A1", "amount": 40}, call_id="c1")


def test_default_thresholds_ungrounded_irreversible_asks() -> None:
    d = _ungrounded_call()
    assert d.action == "clarify"
    assert d.risk == pytest.approx(0.5)  # medium (0.5) x irreversible (1.0)
    assert d.kinds == ("ungrounded",)


def test_tolerate_above_the_score_allows_and_keeps_the_finding() -> None:
    d = _ungrounded_call(thresholds=Thresholds(tolerate=0.6))
    assert d.action == "allow"
    assert d.reason.startswith("tolerated: amount=40")
    assert one(d, "grounded").kind == "ungrounded"


def test_escalate_at_or_below_the_score_sends_to_a_person() -> None:
    d = _ungrounded_call(thresholds=Thresholds(tolerate=0.1, escalate=0.5))
    assert d.action == "escalate"
    assert "amount=40" in d.reason


def test_actions_override_the_remedy() -> None:
    d = _ungrounded_call(actions={"ungrounded": "block"})
    assert d.action == "block"


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValueError, match="tolerate <= escalate"):
        Thresholds(tolerate=0.9, escalate=0.5)


def _automation(tolerate: float) -> tuple[int, int]:
    """(calls allowed, unsafe calls allowed) over a fixed mix of findings, for one tolerate threshold."""
    policy = Policy(
        tools=[
            Tool(
                "pay",
                risk="irreversible",
                before=[checks.bounds("amount", max=500), checks.grounded("amount")],
            ),
            Tool("lookup", risk="read"),
        ],
        thresholds=Thresholds(tolerate=tolerate, escalate=1.0),
        detect_ambiguity=False,
    )
    run = make_run(policy)
    run.user("pay $40 for order A1 and $900 for A2")
    mix: list[tuple[str, dict[str, Any], bool]] = [
        ("pay", {"order_id": "A1", "amount": 40}, False),  # clean
        ("pay", {"order_id": "A1", "amount": 41}, True),  # ungrounded (medium: 0.5)
        ("pay", {"order_id": "A2", "amount": 900}, True),  # out of bounds (high: 0.8)
        ("lookup", {"order_id": "A1", "amount": 999}, False),  # no checks
    ]
    allowed = unsafe = 0
    for i, (tool, args, bad) in enumerate(mix):
        d = run.tool_call(tool, args, call_id=f"c{i}")
        allowed += d.action == "allow"
        unsafe += d.action == "allow" and bad
    return allowed, unsafe


def test_sweeping_tolerate_trades_automation_for_unsafe_actions() -> None:
    sweep = [_automation(t) for t in (0.0, 0.3, 0.6, 0.9, 1.0)]
    allowed = [a for a, _ in sweep]
    unsafe = [u for _, u in sweep]
    assert allowed == sorted(allowed)
    assert unsafe == sorted(unsafe)
    assert sweep[0] == (2, 0)  # strict: only clean calls run
    assert sweep[2] == (3, 1)  # the medium finding is tolerated
    assert sweep[-1] == (4, 2)  # everything runs


# ---- approve_when ---------------------------------------------------------------------------------


def test_approve_when_escalates_an_otherwise_allowed_call() -> None:
    run = make_run(refund_policy())
    run.user("refund $40 and $250")
    assert run.tool_call("refund_order", {"amount": 40}, call_id="c1").action == "allow"
    d = run.tool_call("refund_order", {"amount": 250}, call_id="c2")
    assert d.action == "escalate"
    assert "refund_order needs a person's approval" in d.reason
    assert "waiting for a person's approval" in d.for_model()
    assert [c.call_id for c in run.pending] == ["c2"]


def test_approve_when_does_not_hide_a_block() -> None:
    run = make_run(refund_policy())
    run.user("refund $600")
    assert run.tool_call("refund_order", {"amount": 600}, call_id="c1").action == "block"


def test_approve_when_that_raises_escalates() -> None:
    def broken(call: ToolCall) -> bool:
        return bool(call.args["no_such_arg"])

    run = make_run(None, Tool("pay", risk="read", approve_when=broken))
    d = run.tool_call("pay", {"x": 1}, call_id="c1")
    assert d.action == "escalate"
    assert "approval condition could not be evaluated" in d.reason
    f = one(d, "approve_when")
    assert f.severity == "note"
    assert "KeyError" in f.message


# ---- resolve --------------------------------------------------------------------------------------


def _escalated(**kw: Any) -> Run:
    run = make_run(refund_policy(**kw))
    run.user("refund order A1 for $250")
    assert run.tool_call("refund_order", {"order_id": "A1", "amount": 250}, call_id="c1").action == "escalate"
    return run


def test_resolve_approve() -> None:
    run = _escalated()
    d = run.resolve("c1", "approve", by="maria@support")
    assert d.action == "allow"
    assert "approved by maria@support" in d.reason
    assert run.pending == []
    assert run.decision("c1") is d
    assert run.tool_result("c1", output={"amount": 250}).action == "allow"
    # once decided, the call no longer waits for anyone
    with pytest.raises(HeadwayError, match="not waiting"):
        run.resolve("c1", "approve", by="maria@support")


def test_resolve_reject() -> None:
    run = _escalated()
    d = run.resolve("c1", "reject", by="maria@support", message="refunds over $200 go to finance")
    assert d.action == "block"
    assert d.reason == "refunds over $200 go to finance"
    assert run.pending == []
    c = run.view.call("c1")
    assert c is not None
    assert not c.ran


def test_resolve_edit_is_rechecked_and_an_edit_that_breaks_bounds_is_blocked() -> None:
    run = _escalated()
    d = run.resolve("c1", "edit", by="maria@support", args={"order_id": "A1", "amount": 600})
    assert d.action == "block"
    assert "amount=600 is above the maximum 500" in one(d, "bounds").message
    c = run.view.call("c1")
    assert c is not None
    assert c.args["amount"] == 600
    assert not c.ran


def test_resolve_edit_is_itself_approval() -> None:
    run = _escalated()
    run.user("ok, 150 then")
    d = run.resolve("c1", "edit", by="maria@support", args={"order_id": "A1", "amount": 150})
    assert d.action == "allow"  # over the approval threshold, but a person wrote these args
    c = run.view.call("c1")
    assert c is not None
    assert c.args == {"order_id": "A1", "amount": 150}
    assert c.ran


def test_resolve_edit_values_come_from_the_person_so_grounding_is_waived() -> None:
    run = _escalated()
    d = run.resolve("c1", "edit", by="maria@support", args={"order_id": "A1", "amount": 150})
    assert d.action == "allow"
    waived = one(d, "grounded")
    assert waived.severity == "note"
    assert "waived" in waived.message


def test_resolve_answer_redecides_with_the_users_words() -> None:
    run = make_run(refund_policy())
    run.user("refund order A1")
    d = run.tool_call("refund_order", {"order_id": "A1", "amount": 40}, call_id="c1")
    assert d.action == "clarify"
    assert d.question is not None
    assert "amount=40" in d.question
    still = run.resolve("c1", "answer", by="alice", text="the lamp, I think")
    assert still.action == "clarify"
    ok = run.resolve("c1", "answer", by="alice", text="It was $40.00")
    assert ok.action == "allow"
    assert run.view.user_messages[-1] == "It was $40.00"


@pytest.mark.parametrize(
    ("call_id", "action", "kw", "fragment"),
    [
        ("nope", "approve", {"by": "m"}, "has no call 'nope'"),
        ("c0", "approve", {"by": "m"}, "is not waiting for a person"),
        ("c1", "maybe", {"by": "m"}, "action must be one of"),
        ("c1", "approve", {"by": ""}, "`by` must name who decided"),
        ("c1", "approve", {"by": "   "}, "`by` must name who decided"),
        ("c1", "edit", {"by": "m"}, "an edit needs the new `args`"),
        ("c1", "answer", {"by": "m"}, "an answer needs the user's `text`"),
    ],
)
def test_resolve_errors_raise_headway_error(
    call_id: str, action: Any, kw: dict[str, Any], fragment: str
) -> None:
    run = _escalated()
    run.user("also $40")
    assert run.tool_call("refund_order", {"order_id": "A1", "amount": 40}, call_id="c0").action == "allow"
    with pytest.raises(HeadwayError, match=fragment.replace("(", r"\(").replace("`", "`")):
        run.resolve(call_id, action, **kw)
    assert [c.call_id for c in run.pending] == ["c1"]  # nothing changed


# ---- idempotency and odd deliveries -----------------------------------------------------------------


def test_decisions_are_answered_alike_whether_kept_or_rebuilt(tmp_path: Path) -> None:
    # Plain allows are not kept but rebuilt on demand (Run._keep): every way of asking must still get
    # the decision that was returned, for calls and results, in this process and after a restart.
    policy = Policy(tools=[Tool("lookup", risk="read", after=[checks.not_empty()])])
    guard = Guard(policy, store=tmp_path / "t.db")
    run = guard.start_run("r")
    returned = {
        "c1": run.tool_call("lookup", {"id": 1}, call_id="c1"),
        "c2": run.tool_call("lookup", {"id": 2}, call_id="c2"),
    }
    assert [run.decision(c) for c in returned] == list(returned.values())
    results = {"c1": run.tool_result("c1", output={"id": 1}), "c2": run.tool_result("c2", output={})}
    assert results["c1"].action == "allow"
    assert results["c2"].action != "allow"
    for cid, d in results.items():
        assert run.decision(cid) == d
        assert run.tool_result(cid, output={"id": 1}) == d  # re-delivered: the recorded decision
        assert run.tool_call("lookup", {"id": int(cid[1])}, call_id=cid) == returned[cid]
    assert run.decision("nope") is None
    assert run.decision(12) is None
    guard.close()

    again = Guard(policy, store=tmp_path / "t.db").start_run("r")
    for cid, d in results.items():
        assert again.decision(cid) == d
        assert again.tool_result(cid, output={"id": 1}) == d


def test_redelivered_call_returns_the_recorded_decision_and_is_not_a_repeat() -> None:
    run = make_run(None, Tool("*", risk="read"), max_repeats=1)
    d1 = run.tool_call("lookup", {"id": 1}, call_id="c1")
    assert run.tool_call("lookup", {"id": 1}, call_id="c1") == d1  # equal, not the same object: see Run._keep
    run.tool_result("c1", output={"id": 1})
    assert run.tool_call("lookup", {"id": 1}, call_id="c1") == d1
    assert run.view.tool_calls == 1
    events = run._store.events(run.run_id)
    assert sum(e.type == "tool_call" for e in events) == 1
    # a NEW call id with the same arguments is the repeat
    assert run.tool_call("lookup", {"id": 1}, call_id="c2").action == "block"


def test_redelivered_result_returns_the_recorded_decision() -> None:
    run = make_run(None, Tool("get", risk="read", after=[checks.not_empty()]))
    run.tool_call("get", {}, call_id="c1")
    r1 = run.tool_result("c1", output=[])
    assert r1.action == "block"
    assert run.tool_result("c1", output=[1, 2]) is r1
    assert sum(e.type == "tool_result" for e in run._store.events(run.run_id)) == 1


def test_redelivered_escalation_stays_pending() -> None:
    run = _escalated()
    d = run.tool_call("refund_order", {"order_id": "A1", "amount": 250}, call_id="c1")
    assert d.action == "escalate"
    assert len(run.pending) == 1


@pytest.mark.parametrize("call_id", ["never-seen", None, 12345])
def test_result_for_an_unknown_call_id_is_a_note_never_an_error(call_id: Any) -> None:
    run = make_run(refund_policy())
    d = run.tool_result(call_id, output={"whatever": True})
    assert d.action == "allow"
    f = one(d, "call_id")
    assert f.severity == "note"
    assert "unknown call id" in f.message


def test_result_for_a_blocked_call_is_noted() -> None:
    run = make_run(refund_policy())
    run.user("$900")
    assert run.tool_call("refund_order", {"amount": 900}, call_id="c1").action == "block"
    d = run.tool_result("c1", output={"ok": True})
    assert "headway decided 'block'" in one(d, "call_id").message


def test_json_string_arguments_are_parsed() -> None:
    run = make_run(refund_policy())
    run.user("refund $40")
    assert run.tool_call("refund_order", '{"order_id": "A1", "amount": 40}', call_id="c1").action == "allow"
    d = run.tool_call("refund_order", "{not json", call_id="c2")
    assert d.action == "block"
    assert "arguments are not valid JSON" in one(d, "arguments").message


# ---- end ------------------------------------------------------------------------------------------


def _end_run(**kw: Any) -> Run:
    return make_run(
        Policy(
            tools=[
                Tool("lookup_order", risk="read"),
                Tool("refund_order", risk="irreversible"),
                Tool("create_ticket", risk="write"),
                Tool("handoff", risk="write", claims=[r"\bhanded (it )?over\b"]),
            ],
            detect_ambiguity=False,
            **kw,
        )
    )


def test_end_unsupported_claim_blocks() -> None:
    run = _end_run()
    do(run, "lookup_order", {"order_id": "A1"}, "c1", {"order_id": "A1"})
    d = run.end("I looked at order A1. I have refunded $40 for order A1.")
    assert d.action == "block"
    f = one(d, "claims")
    assert f.kind == "unsupported_claim"
    assert "I have refunded $40 for order A1." in f.message
    assert "no successful refund_order call backs it" in f.message


def test_end_claim_backed_by_a_successful_call_passes() -> None:
    run = _end_run()
    do(run, "refund_order", {"order_id": "A1"}, "c1", {"refund_id": "R1"})
    do(run, "create_ticket", {"subject": "x"}, "c2", {"ticket_id": "T1"})
    assert run.end("I have refunded order A1 and created a ticket.").action == "allow"


def test_end_claim_backed_by_a_failed_call_is_ignored_tool_error() -> None:
    run = _end_run()
    do(run, "refund_order", {"order_id": "A1"}, "c1", error="card declined")
    d = run.end("Your order A1 has been refunded.")
    assert d.action == "escalate"
    f = one(d, "claims")
    assert f.kind == "ignored_tool_error"
    assert "card declined" in f.message


@pytest.mark.parametrize(
    "answer",
    [
        "Order A1 could not be refunded.",
        "It will be refunded once approved.",
        "I haven't refunded it yet.",
        "The order hasn’t been refunded.",
        "It wasn't refunded because the card expired.",
        "I was unable to get it refunded.",
        "Your order is pending and will be refunded after review.",
        "I looked up order A1 and checked it.",
    ],
)
def test_end_negated_or_deferred_outcomes_are_not_claims(answer: str) -> None:
    assert _end_run().end(answer).action == "allow"


def test_end_declared_claims() -> None:
    run = _end_run()
    d = run.end("I handed it over to a colleague.")
    assert d.action == "block"
    assert one(d, "claims").evidence["tool"] == "handoff"
    run2 = _end_run()
    do(run2, "handoff", {"to": "tier2"}, "c1", {"ok": True})
    assert run2.end("I handed it over to a colleague.").action == "allow"


def test_end_required_milestones_abandoned() -> None:
    run = _end_run(
        milestones=[Milestone("resolved", after="refund_order", required=True), Milestone("x", after="y")]
    )
    d = run.end("Bye!")
    assert d.action == "block"
    f = one(d, "milestones")
    assert f.kind == "abandoned"
    assert "ended before reaching resolved" in f.message
    run2 = _end_run(milestones=[Milestone("resolved", after="refund_order", required=True)])
    do(run2, "refund_order", {"order_id": "A1"}, "c1", {"ok": True})
    assert run2.end("Done, refunded.").action == "allow"


def test_end_is_final() -> None:
    run = _end_run()
    d = run.end("Bye")
    assert run.end("again") is d
    assert run.ended
    s = run.tool_call("lookup_order", {"order_id": "A1"}, call_id="late")
    assert s.action == "stop"
    assert "ended" in s.reason


# ---- restore --------------------------------------------------------------------------------------


def test_restore_in_process_keeps_repeats_confirmation_and_pending(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    policy = Policy(
        tools=[
            Tool("lookup_order", risk="read"),
            Tool(
                "refund_order",
                risk="irreversible",
                before=[checks.confirmed(), checks.requires_prior("lookup_order", same=["order_id"])],
                approve_when=lambda call: call.args.get("amount", 0) > 100,
            ),
        ],
        max_repeats=2,
    )
    g1 = Guard(policy, store=db)
    run = g1.start_run("t-1")
    run.user("order A1 and A3 are broken")
    do(run, "lookup_order", {"order_id": "A1"}, "c1", {"order_id": "A1", "amount": 40})
    do(run, "lookup_order", {"order_id": "A1"}, "c2", {"order_id": "A1", "amount": 40})
    do(run, "lookup_order", {"order_id": "A3"}, "c3", {"order_id": "A3", "amount": 250})
    run.model("Shall I refund $250 for order A3?")
    run.user("Yes")
    first = run.tool_call("refund_order", {"order_id": "A3", "amount": 250}, call_id="c4")
    assert first.action == "escalate"
    g1.close()

    g2 = Guard(policy, store=db)
    again = g2.start_run("t-1")
    assert again is not run
    assert again.view.tool_calls == 4
    assert [c.call_id for c in again.pending] == ["c4"]
    # the recorded decision, and re-delivery returns it
    assert again.decision("c4") == first
    assert again.tool_call("refund_order", {"order_id": "A3", "amount": 250}, call_id="c4") == first
    # repeats counted across the restart
    loop = again.tool_call("lookup_order", {"order_id": "A1"}, call_id="c5")
    assert loop.action == "block"
    assert one(loop, "repeats").kind == "loop"
    # the confirmation still holds: a below-threshold refund of the confirmed order would run
    probe = again.tool_call("refund_order", {"order_id": "A3", "amount": 250}, call_id="c6")
    assert probe.action == "escalate"  # only the approval condition: confirmation and lookup hold
    assert found(probe) == []
    assert again.resolve("c6", "reject", by="maria@support").action == "block"
    # the pending escalation can be resolved after the restore
    ok = again.resolve("c4", "approve", by="maria@support")
    assert ok.action == "allow"
    assert again.tool_result("c4", output={"order_id": "A3", "amount": 250}).action == "allow"
    g2.close()

    g3 = Guard(policy, store=db)
    third = g3.start_run("t-1")
    assert third.pending == []
    c4 = third.view.call("c4")
    assert c4 is not None
    assert c4.succeeded
    g3.close()


CHILD = textwrap.dedent(
    """
    import json, os, sys
    from headway import Guard, Policy
    from examples.support_desk import POLICY_FILE

    guard = Guard(Policy.load(POLICY_FILE), store=sys.argv[1])
    run = guard.start_run("x-1")
    run.user("Hi, I'm alice@example.com. The standing desk, order A3, is cracked. Refund please.")
    out = {}
    def call(tool, args, cid, output):
        d = run.tool_call(tool, args, call_id=cid)
        out[cid] = d.action
        if d.action == "allow":
            run.tool_result(cid, output=output)
    call("find_user", {"email": "alice@example.com"}, "c1",
         {"user_id": "u1", "email": "alice@example.com", "orders": ["A1", "A2", "A3"]})
    order = {"order_id": "A3", "user_id": "u1", "item": "standing desk", "amount": 250.0, "status": "delivered"}
    call("lookup_order", {"order_id": "A3"}, "c2", order)
    call("lookup_order", {"order_id": "A3"}, "c3", order)
    run.model("Order A3 (standing desk, $250) qualifies. Shall I refund $250 for order A3?")
    run.user("Yes, go ahead.")
    call("refund_order", {"order_id": "A3", "amount": 250, "reason": "cracked top"}, "c4", None)
    print(json.dumps(out), flush=True)
    os._exit(0)  # no close, no flush: what the escalation committed is all there is
    """
)


def test_restore_across_a_real_subprocess(tmp_path: Path) -> None:
    from examples.support_desk import POLICY_FILE

    db = tmp_path / "traces.db"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(db)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"c1": "allow", "c2": "allow", "c3": "allow", "c4": "escalate"}

    with Guard(Policy.load(POLICY_FILE), store=db) as guard:
        run = guard.start_run("x-1")
        assert [c.call_id for c in run.pending] == ["c4"]
        assert run.view.identity == "u1"
        assert run.view.milestones == ["identified", "order_found"]
        loop = run.tool_call("lookup_order", {"order_id": "A3"}, call_id="c5")
        assert loop.action == "block"
        assert one(loop, "repeats").evidence["strike"] == 1
        ok = run.resolve("c4", "approve", by="maria@support")
        assert ok.action == "allow"
        r = run.tool_result(
            "c4", output={"refund_id": "R-1", "order_id": "A3", "amount": 250.0, "status": "refunded"}
        )
        assert r.action == "allow"
        assert run.end("I have refunded $250 for order A3.").action == "allow"


def test_an_ended_run_is_not_reopened(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with Guard(refund_policy(), store=db) as g:
        run = g.start_run("done")
        do(run, "lookup_order", {"order_id": "A1"}, "c1", {"x": 1})
        run.end("bye")
    with Guard(refund_policy(), store=db) as g2:
        fresh = g2.start_run("done")
        assert not fresh.ended
        assert fresh.view.tool_calls == 0


# ---- the Guard ------------------------------------------------------------------------------------


def test_runs_share_nothing() -> None:
    guard = Guard(Policy(tools=[Tool("*", risk="read")], max_repeats=1), store=MemoryStore())
    a, b = guard.start_run("a"), guard.start_run("b")
    assert do(a, "lookup", {"id": 1}, "c1", {"id": 1}).action == "allow"
    assert do(b, "lookup", {"id": 1}, "c1", {"id": 1}).action == "allow"
    assert a.tool_call("lookup", {"id": 1}, call_id="c2").action == "block"
    b.user("hello")
    assert a.view.user_messages == []
    assert b.view.tool_calls == 1
    assert guard.start_run("a") is a


def test_ended_runs_are_released() -> None:
    guard = Guard(refund_policy(), store=MemoryStore())
    a = guard.start_run("a")
    guard.start_run("b")
    assert guard.active_runs == 2
    a.end("bye")
    assert guard.active_runs == 1
    assert guard.get_run("a") is None
    d = guard.end_run("b", "bye")
    assert isinstance(d, Decision)
    assert guard.active_runs == 0
    assert guard.end_run("unknown") is None


class _Clock:
    """A monotonic clock the test moves by hand, so idle expiry does not depend on machine load."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


def test_idle_runs_expire_and_come_back_from_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    import headway._guard

    clock = _Clock()
    monkeypatch.setattr(headway._guard, "time", clock)  # the Guard's clock decides expiry
    guard = Guard(refund_policy(), store=MemoryStore(), idle_timeout=60)
    run = guard.start_run("idle")
    do(run, "lookup_order", {"order_id": "A1"}, "c1", {"order_id": "A1"})
    # A Run stamps its own activity; set it on the fake clock (a compiled Run's module cannot be patched).
    run.last_active = clock.now
    clock.now += 59
    assert guard.active_runs == 1
    clock.now += 2
    assert guard.active_runs == 0
    back = guard.start_run("idle")
    assert back is not run
    assert back.view.tool_calls == 1


def test_start_run_without_id_makes_a_unique_one() -> None:
    guard = Guard(refund_policy(), store=MemoryStore())
    assert guard.start_run().run_id != guard.start_run().run_id


def test_guard_needs_a_policy() -> None:
    with pytest.raises(TypeError, match="Guard needs a Policy"):
        Guard({"tools": []}, store=MemoryStore())  # type: ignore[arg-type]


def _threads(n: int, target: Callable[[int], None]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def wrap(i: int) -> None:
        try:
            barrier.wait()
            target(i)
        except BaseException as e:  # collected and asserted on below
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    return errors


def test_thread_safety_one_run_per_thread_and_many_threads_on_one_run(tmp_path: Path) -> None:
    policy = Policy(
        tools=[Tool("*", risk="read", after=[checks.no_error_payload()]), Tool("note_*", risk="write")],
        milestones=[Milestone("seen", after="lookup")],
    )
    store = SQLiteStore(tmp_path / "t.db")
    guard = Guard(policy, store=store)
    per_thread = 150

    def own_run(i: int) -> None:
        run = guard.start_run(f"own-{i}")
        for j in range(per_thread):
            d = run.tool_call("lookup", {"n": j}, call_id=f"c{j}")
            assert d.action == "allow", d.reason
            run.tool_result(f"c{j}", output={"n": j})
        assert run.end("done").action == "allow"

    assert _threads(16, own_run) == []

    shared = guard.start_run("shared")

    def on_shared(i: int) -> None:
        for j in range(100):
            cid = f"t{i}-{j}"
            tool = "note_add" if j % 10 == 0 else "lookup"
            d = shared.tool_call(tool, {"thread": i, "n": j}, call_id=cid)
            assert d.action == "allow", d.reason
            shared.tool_result(cid, output={"ok": True, "n": j, "thread": i})

    assert _threads(8, on_shared) == []
    assert shared.view.tool_calls == 800
    assert len(shared.view.calls()) == 800
    assert all(c.succeeded for c in shared.view.calls())
    guard.flush()
    events = store.events("shared")
    assert [e.seq for e in events] == list(range(1, 1 + 1 + 1600))
    for i in range(16):
        own = store.events(f"own-{i}")
        assert len(own) == 1 + 2 * per_thread + 1
        assert own[-1].type == "end"
    assert guard.active_runs == 1
    guard.close()


def test_write_decisions_are_on_disk_before_tool_call_returns(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    guard = Guard(
        Policy(tools=[Tool("lookup", risk="read"), Tool("send_money", risk="irreversible")]),
        store=SQLiteStore(db, flush_interval=60),
    )
    run = guard.start_run("durable")
    run.user("send $5 to bob")
    do(run, "lookup", {"who": "bob"}, "c1", {"account": "bob-1"})
    d = run.tool_call("send_money", {"to": "bob-1", "amount": 5}, call_id="c2")
    assert d.action == "allow"
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT seq, type, data FROM events WHERE run_id = ? ORDER BY seq", ("durable",)
        ).fetchall()
    types = [t for _, t, _ in rows]
    # the write decision and everything buffered before it (the read call and its result)
    assert types == ["start", "user", "tool_call", "tool_result", "tool_call"]
    last = json.loads(rows[-1][2])
    assert last["call_id"] == "c2"
    assert last["decision"]["action"] == "allow"
    run.tool_result("c2", output={"ok": True})
    guard.flush()  # results are batched like reads; a flush (or the timer, or the next write) commits them
    with closing(sqlite3.connect(db)) as conn:
        n = conn.execute(
            "SELECT count(*) FROM events WHERE run_id = 'durable' AND type = 'tool_result'"
        ).fetchone()[0]
    assert n == 2
    guard.close()


def test_an_allowed_end_is_batched_and_an_unsupported_one_committed_at_once(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    policy = Policy(tools=[Tool("lookup_order", risk="read"), Tool("refund_order", risk="irreversible")])
    guard = Guard(policy, store=SQLiteStore(db, flush_interval=60))

    def on_disk(run_id: str) -> list[str]:
        with closing(sqlite3.connect(db)) as conn:
            rows = conn.execute("SELECT type FROM events WHERE run_id = ? ORDER BY seq", (run_id,))
            return [t for (t,) in rows]

    run = guard.start_run("fine")
    do(run, "lookup_order", {"order_id": "A1"}, "c1", {"order_id": "A1", "status": "shipped"})
    assert guard.end_run("fine", "Order A1 has shipped.") == Decision.allow(stage="end")
    assert on_disk("fine") == []  # batched: no commit of its own
    # this process still sees the end: the same id starts a new run, numbered after the old one's events
    again = guard.start_run("fine")
    assert again is not run
    assert not again.ended
    assert again.last_seq == 5  # its start event follows the end
    assert on_disk("fine")[-2:] == ["tool_result", "end"]  # reading the run flushed it

    claimed = guard.start_run("claims")
    do(claimed, "lookup_order", {"order_id": "A1"}, "c1", {"order_id": "A1"})
    d = claimed.end("I have refunded order A1.")
    assert d.action != "allow"
    assert on_disk("claims")[-1] == "end"  # a decision worth keeping: committed before end() returns
    guard.close()


def test_decisions_carry_the_call() -> None:
    run = make_run(refund_policy())
    run.user("$40")
    d = run.tool_call("refund_order", {"amount": 40}, call_id="c9")
    assert (d.tool, d.call_id) == ("refund_order", "c9")
    assert found(d) == []
    assert Decision.from_dict(d.to_dict()) == d


CRASH_CHILD = textwrap.dedent(
    """
    import os, sys
    from headway import Guard, Policy, Tool
    policy = Policy(tools=[Tool("charge", risk="irreversible"), Tool("sync", risk="write", idempotent=True),
                           Tool("peek", risk="read")])
    run = Guard(policy, store=sys.argv[1]).start_run("crashy")
    for tool, cid in (("charge", "c1"), ("sync", "c2"), ("peek", "c3")):
        assert run.tool_call(tool, {"n": 1}, call_id=cid).action == "allow"
    os._exit(0)  # the process dies while the tools run: no result recorded, no flush
    """
)


def test_a_write_whose_outcome_a_crash_left_unknown_is_escalated_not_rerun(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    subprocess.run([sys.executable, "-c", CRASH_CHILD, str(db)], check=True, timeout=60)
    policy = Policy(
        tools=[
            Tool("charge", risk="irreversible"),
            Tool("sync", risk="write", idempotent=True),
            Tool("peek", risk="read"),
        ]
    )
    with Guard(policy, store=db) as guard:
        run = guard.start_run("crashy")
        again = run.tool_call("charge", {"n": 1}, call_id="c1")
        assert again.action == "escalate"
        assert one(again, "exactly_once").kind == "repeated_side_effect"
        assert "may already have happened" in again.reason
        # an idempotent write may simply run again
        assert run.tool_call("sync", {"n": 1}, call_id="c2").action == "allow"
        # a person decides: here, that it did not happen and may run
        assert run.resolve("c1", "approve", by="ops@desk").action == "allow"
        run.tool_result("c1", output={"charged": 1})
    # the person's decision and the result survive another restart: the call is done, nothing to ask
    with Guard(policy, store=db) as guard:
        run = guard.start_run("crashy")
        c1 = run.view.call("c1")
        assert c1 is not None
        assert c1.action == "allow"
        assert c1.done
        assert run.tool_call("charge", {"n": 1}, call_id="c1").action == "allow"
        assert [c.call_id for c in run.view.calls("charge")] == ["c1"]


def test_a_run_id_used_again_after_its_end_continues_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "traces.db"
    policy = Policy(tools=[Tool("lookup", risk="read")])
    with Guard(policy, store=db) as guard:
        first = guard.start_run("thread-1")
        first.user("first turn")
        first.end("done")
        second = guard.start_run("thread-1")  # the conversation's next turn, same process
        assert second is not first
        second.user("second turn")
        second.end("done again")
        guard.flush()
        assert [e.data.get("text") for e in guard.store.events("thread-1") if e.type == "user"] == [
            "first turn",
            "second turn",
        ]
    with Guard(policy, store=db) as guard:  # a third turn in another process, then a crash and restart
        third = guard.start_run("thread-1")
        third.user("third turn")
        third.tool_call("lookup", {"q": 1}, call_id="c1")
    with Guard(policy, store=db) as guard:
        restored = guard.start_run("thread-1")
        assert restored.view.user_messages == ["third turn"]  # only the current run, not the ended ones
        assert restored.view.call("c1") is not None
        seqs = [e.seq for e in guard.store.events("thread-1")]
        assert seqs == sorted(set(seqs))
        assert len(seqs) == 9  # three turns of start, user, and end or a call


def test_a_final_answer_mid_conversation_is_checked_without_ending_the_run() -> None:
    run = make_run(Policy(tools=[Tool("lookup", risk="read"), Tool("refund_order", risk="irreversible")]))
    run.user("refund A1")
    ok = run.model("Let me look that up.", final=True)
    assert ok.action == "allow"
    claim = run.model("I have refunded order A1.", final=True)
    assert claim.action == "block"
    assert claim.stage == "end"
    assert one(claim, "claims").kind == "unsupported_claim"
    assert "final answer cannot be sent" in claim.for_model()
    assert not run.ended
    # a turn that proposes tool calls is not an answer to the user
    assert (
        run.model("I have refunded it", [{"name": "lookup", "args": {}, "id": "x"}], final=True).action
        == "allow"
    )


# ---- claims name what they are about ----------------------------------------------------------------


def _claims_run() -> Run:
    policy = Policy(
        tools=[Tool("lookup_order", risk="read"), Tool("refund_order", risk="irreversible")],
        detect_ambiguity=False,
    )
    run = Guard(policy, store=":memory:").start_run("claims")
    run.user("refund A1 please, and what about A2?")
    for cid, order in (
        ("l1", {"order_id": "A1", "amount": 49.0}),
        ("l2", {"order_id": "A2", "amount": 78.0}),
    ):
        run.tool_call("lookup_order", {"order_id": order["order_id"]}, call_id=cid)
        run.tool_result(cid, output={**order, "status": "refunded" if cid == "l2" else "delivered"})
    run.tool_call("refund_order", {"order_id": "A1", "amount": 49.0}, call_id="r1")
    run.tool_result("r1", output={"refund_id": "R-1", "order_id": "A1", "amount": 49.0})
    return run


@pytest.mark.parametrize(
    ("answer", "action"),
    [
        ("I have refunded $49.00 for order A1.", "allow"),
        ("Your refund of $49.00 for order A1 has been refunded; allow 3-5 days.", "allow"),
        ("I have refunded $78 for order A1.", "block"),  # not the amount refunded
        ("I have refunded order A2.", "block"),  # another order
        ("I have refunded orders A1 and A2.", "block"),
        ("Order A2 has already been refunded.", "allow"),  # a state the lookup shows, not an act
        ("Your orders: A1 (lamp, delivered), A2 (chair, refunded).", "allow"),
        ("I have refunded order A1, but A2 was not.", "allow"),
        ("I have refunded $49 for order A1 and created nothing else.", "allow"),
    ],
)
def test_a_claim_is_backed_only_by_a_call_about_what_it_names(answer: str, action: str) -> None:
    assert _claims_run().end(answer).action == action


def test_a_state_claim_is_backed_by_a_record_found_by_its_entity_however_long_the_run() -> None:
    # The record that shows the state is looked up by the entity the claim names, not found by walking
    # every call: one early lookup among many, or one entry of a list, backs the claim; a record that
    # does not show the state, or a result of a call that never ran, does not.
    policy = Policy(
        tools=[
            Tool("lookup_order", risk="read"),
            Tool("list_orders", risk="read"),
            Tool("refund_order", risk="irreversible", before=[checks.bounds("amount", max=1)]),
        ],
        detect_ambiguity=False,
    )
    run = Guard(policy, store=":memory:").start_run("state")
    run.user("what happened to A1, A2, A3 and A4?")
    do(run, "lookup_order", {"order_id": "A1"}, "l1", {"order_id": "A1", "status": "refunded"})
    for i in range(300):
        do(run, "lookup_order", {"order_id": f"B{i}"}, f"b{i}", {"order_id": f"B{i}", "status": "delivered"})
    listed = [{"order_id": "A2", "status": "refunded"}, {"order_id": "A3", "status": "delivered"}]
    do(run, "list_orders", {}, "all", listed)
    d = run.tool_call("refund_order", {"order_id": "A4", "amount": 5}, call_id="r4")
    assert d.action != "allow"  # over the bound: the refund never runs
    run.tool_result("r4", output={"order_id": "A4", "status": "refunded"})  # a result it should not have
    assert run.model("Order A1 was already refunded.", final=True).action == "allow"
    assert run.model("Order A2 was already refunded.", final=True).action == "allow"
    assert run.model("Order A3 was already refunded.", final=True).action == "block"
    assert run.model("Order A4 was already refunded.", final=True).action == "block"


def test_an_act_claim_among_many_writes_is_backed_by_whichever_call_it_names() -> None:
    # The claimed tool's calls are looked at newest first and the walk stops once everything named is
    # backed: the first of many writes still backs a claim, two calls far apart back one together, and
    # neither a failed latest call nor one headway refused backs anything.
    policy = Policy(
        tools=[Tool("refund_order", risk="write", before=[checks.bounds("amount", max=1000)])],
        detect_ambiguity=False,
    )
    run = Guard(policy, store=":memory:").start_run("writes")
    run.user("refund all of them, and B1 and B2, but not C5")
    for i in range(200):
        do(run, "refund_order", {"order_id": f"A{i}", "amount": 10}, f"r{i}", {"order_id": f"A{i}"})
    assert run.model("I have refunded order A0.", final=True).action == "allow"
    assert run.model("I have refunded order A199.", final=True).action == "allow"
    assert run.model("I have refunded orders A0 and A199.", final=True).action == "allow"
    assert run.model("I have refunded order C5.", final=True).action == "block"
    run.tool_call("refund_order", {"order_id": "B1", "amount": 10}, call_id="f")
    run.tool_result("f", error="TimeoutError")
    assert run.model("I have refunded order B1.", final=True).action == "block"
    assert run.tool_call("refund_order", {"order_id": "B2", "amount": 5000}, call_id="big").action != "allow"
    run.tool_result("big", output={"order_id": "B2"})  # a result for a call that never ran
    assert run.model("I have refunded order B2.", final=True).action == "block"
    assert run.model("I have refunded order A7.", final=True).action == "allow"


def test_a_write_to_one_order_does_not_excuse_a_contradiction_about_another() -> None:
    policy = Policy(
        tools=[
            Tool("get_order", risk="read"),
            Tool("cancel_order", risk="write"),
            Tool("note", risk="write"),
        ],
        detect_ambiguity=False,
    )
    run = Guard(policy, store=":memory:").start_run("conflicts")
    run.user("cancel B1; and how is A1?")
    run.tool_call("get_order", {"order_id": "A1"}, call_id="g1")
    run.tool_result("g1", output={"order_id": "A1", "status": "pending"})
    run.tool_call("cancel_order", {"order_id": "B1"}, call_id="c1")
    run.tool_result("c1", output={"order_id": "B1", "status": "cancelled"})
    run.tool_call("get_order", {"order_id": "A1", "fresh": True}, call_id="g2")
    d = run.tool_result("g2", output={"order_id": "A1", "status": "delivered"})
    assert "consistent_with_observations" in [f.check for f in d.findings]  # B1's cancel cannot explain it
    run.tool_call("cancel_order", {"order_id": "A1"}, call_id="c2")
    run.tool_result("c2", output={"order_id": "A1", "status": "cancelled"})
    run.tool_call("get_order", {"order_id": "A1", "again": True}, call_id="g3")
    d = run.tool_result("g3", output={"order_id": "A1", "status": "cancelled"})
    assert "consistent_with_observations" not in [f.check for f in d.findings]  # its own write explains it


def test_a_write_that_names_nothing_may_have_changed_anything() -> None:
    # `sync_orders()` names no entity and no words: its reach is unknown, so a changed status after it is
    # not a contradiction. A write that names something else (an email to someone) still does not excuse it.
    policy = Policy(
        tools=[
            Tool("get_order", risk="read"),
            Tool("sync_orders", risk="write"),
            Tool("send_email", risk="write"),
        ],
        detect_ambiguity=False,
    )
    run = Guard(policy, store=":memory:").start_run("reach")
    run.user("how is A1?")
    run.tool_call("get_order", {"order_id": "A1"}, call_id="g1")
    run.tool_result("g1", output={"order_id": "A1", "status": "pending"})
    run.tool_call("sync_orders", {}, call_id="s1")
    run.tool_result("s1", output="ok")
    run.tool_call("get_order", {"order_id": "A1", "fresh": True}, call_id="g2")
    d = run.tool_result("g2", output={"order_id": "A1", "status": "shipped"})
    assert "consistent_with_observations" not in [f.check for f in d.findings]
    run.tool_call("send_email", {"to": "bob@example.com", "body": "weekly digest"}, call_id="e1")
    run.tool_result("e1", output="sent")
    run.tool_call("get_order", {"order_id": "A1", "again": True}, call_id="g3")
    d = run.tool_result("g3", output={"order_id": "A1", "status": "pending"})
    assert "consistent_with_observations" in [f.check for f in d.findings]
