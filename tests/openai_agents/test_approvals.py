"""Escalate and clarify become SDK interruptions; a person's approve / reject / edit / answer is recorded
by headway, applied to the RunState, and the run resumes; bad approval input gets a clear error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, RunState, function_tool
from agents.testing import ScriptedModel

from examples.support_desk import SupportDesk
from headway import Guard, HeadwayError, Policy, Tool
from headway_openai_agents import RUN_ID_KEY, escalations, guard_agent, resolve, resolve_from_store, resume

from .conftest import ALICE, Convo, call, confirmed_refund_setup, handoff, text

KEEP = "Order A3 qualifies. Shall I refund $250 for order A3, or $200 if you keep the desk?"


async def over_threshold(convo: Convo, proposal: str = "", yes: str = "Yes, go ahead.") -> RunState[Any, Any]:
    await confirmed_refund_setup(convo, "A3", 250, proposal)
    convo.script(call("refund_order", "c3", order_id="A3", amount=250, reason="arrived broken"))
    result = await convo.say(yes)
    assert result.final_output is None
    assert [i.call_id for i in result.interruptions] == ["c3"]
    return result.to_state()


async def test_escalation_record(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    await over_threshold(convo)
    assert convo.result is not None
    [esc] = escalations(convo.result, guard)
    assert (esc.run_id, esc.call_id, esc.tool, esc.agent, esc.action) == (
        "r1",
        "c3",
        "refund_order",
        "refunds",
        "escalate",
    )
    assert esc.args == {"order_id": "A3", "amount": 250, "reason": "arrived broken"}
    assert "approval" in esc.reason
    assert esc.to_dict()["decision"]["action"] == "escalate"
    assert desk.count("refunds") == 0
    # The same records from the RunState (what a server stores between requests).
    assert [e.call_id for e in escalations(convo.result.to_state(), guard)] == ["c3"]


async def test_approve_then_resume_runs_once(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    d = resolve(state, guard, "c3", "approve", by="maria@support")
    assert d.action == "allow"
    convo.script(text("I have refunded $250 for order A3."))
    result = await convo.resume(state)
    assert result.final_output == "I have refunded $250 for order A3."
    assert desk.count("refunds") == 1
    run = guard.start_run("r1")
    c3 = run.view.call("c3")
    assert c3 is not None
    assert c3.done
    assert c3.action == "allow"
    humans = [e.data for e in guard.store.events("r1") if e.type == "human"]
    assert humans == [humans[0]]
    assert humans[0]["by"] == "maria@support"
    assert humans[0]["action"] == "approve"


async def test_reject_sends_message_to_model(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    d = resolve(state, guard, "c3", "reject", by="maria@support", message="Not over $100 without a photo.")
    assert d.action == "block"
    convo.script(text("I can't refund that yet."))
    await convo.resume(state)
    assert desk.count("refunds") == 0
    assert convo.last_tool_output("c3") == "Not over $100 without a photo."


async def test_edit_is_rechecked_and_the_new_call_runs_once(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    # The customer chose $200; the model asked for $250 anyway, and the reviewer corrects it.
    state = await over_threshold(convo, KEEP, "Yes, $200 is fine, I keep the desk.")
    edited = {"order_id": "A3", "amount": 200, "reason": "arrived broken"}
    d = resolve(state, guard, "c3", "edit", by="maria@support", args=edited)
    assert d.action == "allow"
    # The SDK cannot edit an interrupted call: the model is told the corrected arguments and calls again.
    convo.script(call("refund_order", "c4", **edited), text("Refunded $200."))
    result = await convo.resume(state)
    assert "call refund_order again with exactly these arguments" in convo.last_tool_output("c3")
    assert result.final_output == "Refunded $200."
    assert desk.count("refunds") == 1
    assert json.loads(convo.last_tool_output("c4"))["amount"] == 200
    c3 = guard.start_run("r1").view.call("c3")
    assert c3 is not None
    assert c3.done
    assert c3.args["amount"] == 200
    assert guard.start_run("r1").view.call("c4") is None  # c4 is c3, not a second refund


async def test_edit_rejected_by_policy_does_not_run(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    d = resolve(
        state, guard, "c3", "edit", by="maria@support", args={"order_id": "A3", "amount": 900, "reason": "x"}
    )
    assert d.action in ("block", "clarify", "escalate")
    convo.script(text("Sorry."))
    await convo.resume(state)
    assert desk.count("refunds") == 0


async def test_new_call_with_other_args_after_edit_is_decided_afresh(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo, KEEP, "Yes, $200 is fine, I keep the desk.")
    resolve(
        state,
        guard,
        "c3",
        "edit",
        by="maria@support",
        args={"order_id": "A3", "amount": 200, "reason": "arrived broken"},
    )
    # The model ignores the edit: its call is a new one, decided by the policy on its own.
    convo.script(call("refund_order", "c4", order_id="A3", amount=250, reason="arrived broken"), text("Hm."))
    await convo.resume(state)
    run = guard.start_run("r1")
    c3, c4 = run.view.call("c3"), run.view.call("c4")
    assert c4 is not None
    assert c4.action == "block"
    assert c3 is not None
    assert not c3.done
    assert desk.count("refunds") == 0


async def test_answer_to_clarifying_question(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    convo.script(
        call("find_user", "c1", email="alice@example.com"),
        call("list_orders", "c2", user_id="u1"),
        handoff(),
        call("refund_order", "c3", order_id="A2", amount=25, reason="arrived broken"),
    )
    result = await convo.say(f"{ALICE} My order arrived broken, please refund it.")
    [esc] = escalations(result, guard)
    assert esc.action == "clarify"
    assert esc.question
    state = result.to_state()
    d = resolve(state, guard, "c3", "answer", by="maria@support", text="The office chair, A2.")
    assert d.action == "block"  # A2 was never looked up: the model is told what is missing
    convo.script(text("Let me look up A2 first."))
    await convo.resume(state)
    seen = convo.last_tool_output("c3")
    assert "The office chair, A2." in seen
    assert "lookup_order" in seen
    assert desk.count("refunds") == 0


async def test_always_approve_cannot_bypass_policy_for_a_later_call(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    resolve(state, guard, "c3", "approve", by="maria@support")
    # Someone also ticks "always approve" in the SDK: later refund_order calls skip needs_approval.
    state.approve(state.get_interruptions()[0], always_approve=True)
    convo.script(
        call("lookup_order", "c4", order_id="A1"),
        call("refund_order", "c5", order_id="A1", amount=150, reason="goodwill"),
        text("Done."),
    )
    await convo.resume(state)
    assert desk.count("refunds") == 1  # c3 only
    assert convo.last_tool_output("c5").startswith("[headway]")
    c5 = guard.start_run("r1").view.call("c5")
    assert c5 is not None
    assert c5.action in ("escalate", "clarify", "block")
    assert not c5.done


async def test_sdk_approval_outside_headway_does_not_run_the_call(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    state.approve(state.get_interruptions()[0])  # not through headway: unattributed
    convo.script(text("Done."))
    await convo.resume(state)
    assert desk.count("refunds") == 0
    assert "needs a person's decision through headway" in convo.last_tool_output("c3")


async def test_bad_approval_input_gets_a_clear_error_and_leaves_state_untouched(
    guard: Guard, desk: SupportDesk
) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    before = state.to_json()
    with pytest.raises(HeadwayError, match=r"no interrupted call 'c9'.*pending: \['c3'\]"):
        resolve(state, guard, "c9", "approve", by="maria")
    with pytest.raises(HeadwayError, match="action must be one of"):
        resolve(state, guard, "c3", "yes", by="maria")  # type: ignore[arg-type]
    with pytest.raises(HeadwayError, match="`by` must name who decided"):
        resolve(state, guard, "c3", "approve", by=" ")
    with pytest.raises(HeadwayError, match="an edit needs the new `args`"):
        resolve(state, guard, "c3", "edit", by="maria")
    with pytest.raises(HeadwayError, match="an answer needs the user's `text`"):
        resolve(state, guard, "c3", "answer", by="maria")
    assert state.to_json() == before
    resolve(state, guard, "c3", "approve", by="maria")
    with pytest.raises(HeadwayError, match="not waiting for a person"):
        resolve(state, guard, "c3", "reject", by="maria")


async def test_no_run_id_is_a_clear_error(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    await over_threshold(convo)
    assert convo.result is not None
    state = convo.result.to_state()
    state._context.context.pop(RUN_ID_KEY)  # type: ignore[union-attr]
    with pytest.raises(HeadwayError, match="no headway run id"):
        escalations(state, guard)
    assert [e.call_id for e in escalations(state, guard, run_id="r1")] == ["c3"]


async def test_resuming_the_same_saved_state_twice_refunds_once(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    resolve(state, guard, "c3", "approve", by="maria@support")
    saved = state.to_string()
    for attempt in range(2):  # a retried request, a double click, a replayed job
        again = await RunState.from_string(convo.started, saved)
        convo.script(text(f"Refunded ({attempt})."))
        await resume(convo.started, again, guard, run_config=convo.config)
    assert desk.count("refunds") == 1
    assert json.loads(convo.last_tool_output("c3"))["status"] == "refunded"  # the recorded result, replayed


async def test_interruption_without_asking_headway_is_settled_by_policy(tmp_path: Any) -> None:
    """The SDK skips a needs_approval callable when validation changes the arguments (int for float)."""
    ran: list[float] = []

    @function_tool
    def pay(amount: float) -> str:
        """Pay."""
        ran.append(amount)
        return "paid"

    policy = Policy(tools=[Tool("pay", risk="write")])
    with Guard(policy, store=tmp_path / "t.db") as guard:
        model = ScriptedModel([call("pay", "p1", amount=10), text("ok")])
        agent = guard_agent(Agent[Any](name="a", tools=[pay]), guard)
        ctx = {RUN_ID_KEY: "g1"}
        result = await Runner.run(agent, "pay 10", context=ctx, run_config=RunConfig(model=model))
        assert [i.call_id for i in result.interruptions] == ["p1"]
        assert ran == []
        assert escalations(result, guard) == []  # nobody needs to look: headway allows it
        final = await resume(agent, result.to_state(), guard, run_config=RunConfig(model=model))
        assert final.final_output == "ok"
        assert ran == [10.0]


async def test_resolve_from_store_applies_the_inbox_decision(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    [esc] = escalations(state, guard)
    assert esc.escalation_id is not None
    with pytest.raises(HeadwayError, match="still waiting for a person's decision"):
        resolve_from_store(state, guard)
    guard.escalations.decide(esc.escalation_id, "approve", by="ops@inbox")
    [d] = resolve_from_store(state, guard)
    assert d.action == "allow"
    convo.script(text("I have refunded $250 for order A3."))
    await convo.resume(state)
    assert desk.count("refunds") == 1
    stored = guard.escalations.get(esc.escalation_id)
    assert stored is not None
    assert (stored.status, stored.decided_by) == ("approved", "ops@inbox")


async def test_a_resolve_that_contradicts_the_store_is_refused(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    state = await over_threshold(convo)
    [esc] = escalations(state, guard)
    assert esc.escalation_id is not None
    guard.escalations.decide(esc.escalation_id, "reject", by="ops@inbox", message="not today")
    with pytest.raises(HeadwayError, match="was rejected by ops@inbox"):
        resolve(state, guard, "c3", "approve", by="mallory")
    assert desk.count("refunds") == 0
    [d] = resolve_from_store(state, guard)
    assert (d.action, d.reason) == ("block", "not today")
