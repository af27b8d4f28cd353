"""Whole runs of the production failures headway exists for, on the support desk with its real policy.

The six scripted scenarios are replayed by the demo's own `play`; the issue's list of failures is spelled
out below as explicit runs, each with the side effects counted in the desk's SQLite database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from examples.support_desk import SCENARIOS, Scenario, SupportDesk, ToolError
from examples.support_desk.core_demo import play
from headway import Decision, Guard, Policy, Run
from tests.core._helpers import active, one

REFUNDS = {
    "clean_refund": 1,
    "refund_without_lookup": 1,
    "over_threshold": 1,
    "ambiguous_order": 1,
    "lookup_loop": 0,
    "silent_wrong_result": 1,
}
ALICE = "Hi, I'm alice@example.com."


def test_every_scenario_has_a_refund_expectation() -> None:
    assert {s.name for s in SCENARIOS} == set(REFUNDS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_reaches_its_expected_decisions(scenario: Scenario, guard: Guard, tmp_path: Path) -> None:
    desk = SupportDesk(tmp_path / f"{scenario.name}.db", faults=scenario.faults)
    try:
        got = play(scenario, guard, desk)
        assert {k: got[k].action if k in got else None for k in scenario.expect} == dict(scenario.expect)
        assert desk.count("refunds") == REFUNDS[scenario.name]
    finally:
        desk.close()
    # the run is fully recorded: every decision played is in the trace store
    events = guard.store.events(scenario.name)
    decided = [
        e for e in events if "decision" in e.data and e.type in ("tool_call", "tool_result", "human", "end")
    ]
    assert len(decided) == len(got)


def test_silent_wrong_result_refund_ran_once_and_was_escalated(guard: Guard, tmp_path: Path) -> None:
    scenario = next(s for s in SCENARIOS if s.name == "silent_wrong_result")
    desk = SupportDesk(tmp_path / "desk.db", faults=scenario.faults)
    got = play(scenario, guard, desk)
    assert desk.count("refunds") == 1
    r = got["c3/result"]
    assert r.action == "escalate"
    assert one(r, "consistent_with_args").kind == "silent_tool_error"
    assert "amount=400.0" in r.reason
    end = got["end"]
    assert end.action == "escalate"
    assert one(end, "claims").kind == "ignored_tool_error"
    desk.close()


def test_lookup_loop_is_told_then_stopped(guard: Guard, desk: SupportDesk) -> None:
    scenario = next(s for s in SCENARIOS if s.name == "lookup_loop")
    got = play(scenario, guard, desk)
    assert "you already know the result" in got["c4"].reason
    assert "desk lamp" in got["c4"].reason
    assert got["c5"].action == "stop"
    assert desk.count("refunds") == 0


# ---- the list, as explicit runs ----------------------------------------------------------------


class Agent:
    """A scripted agent against the real desk: proposes calls, runs them only when headway allows."""

    def __init__(self, run: Run, desk: SupportDesk) -> None:
        self.run = run
        self.desk = desk
        self.n = 0
        self.decisions: list[Decision] = []

    def call(self, tool: str, **args: Any) -> Decision:
        self.n += 1
        cid = f"c{self.n}"
        self.run.model("", tool_calls=[{"name": tool, "args": args, "id": cid}])
        d = self.run.tool_call(tool, args, call_id=cid)
        self.decisions.append(d)
        if d.action == "allow":
            try:
                r = self.run.tool_result(cid, output=self.desk.call(tool, args))
            except ToolError as e:
                r = self.run.tool_result(cid, error=str(e))
            self.decisions.append(r)
        return d

    def say(self, text: str) -> None:
        self.run.model(text)


def test_refund_without_lookup_is_blocked(guard: Guard, desk: SupportDesk) -> None:
    agent = Agent(guard.start_run("no-lookup"), desk)
    agent.run.user(f"{ALICE} Refund order A1, $40, it arrived broken.")
    d = agent.call("refund_order", order_id="A1", amount=40, reason="arrived broken")
    assert d.action == "block"
    assert "unmet_precondition" in d.kinds
    assert "needs a successful lookup_order with order_id='A1' first" in d.reason
    assert desk.count("refunds") == 0


def _assumed_amount(guard: Guard, desk: SupportDesk) -> tuple[Agent, Decision]:
    run = guard.start_run("assumption")
    agent = Agent(run, desk)
    run.user(f"{ALICE} My order A1 arrived damaged, please refund part of it.")
    agent.call("find_user", email="alice@example.com")
    agent.call("lookup_order", order_id="A1")
    # the model invents a partial amount nobody stated, and asks for a yes to it
    agent.say("I can refund part of order A1. Shall I refund $15 for order A1?")
    run.user("Yes please.")
    return agent, agent.call("refund_order", order_id="A1", amount=15, reason="arrived damaged")


def test_acting_on_an_assumed_amount_asks_the_user(guard: Guard, desk: SupportDesk) -> None:
    agent, d = _assumed_amount(guard, desk)
    assert d.action == "clarify"
    assert d.kinds == ("ungrounded",)
    assert d.question is not None
    assert "amount=15" in d.question
    assert desk.count("refunds") == 0
    # an answer that still does not state it keeps asking
    again = agent.run.resolve(f"c{agent.n}", "answer", by="alice@example.com", text="whatever you think")
    assert again.action != "allow"


def test_answering_the_clarifying_question_lets_the_confirmed_call_run(
    guard: Guard, desk: SupportDesk
) -> None:
    agent, d = _assumed_amount(guard, desk)
    assert d.action == "clarify"
    ok = agent.run.resolve(
        f"c{agent.n}", "answer", by="alice@example.com", text="Yes, $15 is what I want back."
    )
    assert ok.action == "allow", ok.reason


def test_repeating_a_lookup_forever_is_stopped(guard: Guard, desk: SupportDesk) -> None:
    run = guard.start_run("forever")
    agent = Agent(run, desk)
    run.user(f"{ALICE} Where is order A2?")
    agent.call("find_user", email="alice@example.com")
    actions = []
    for _ in range(10):
        d = agent.call("lookup_order", order_id="A2")
        actions.append(d.action)
        if d.action == "stop":
            break
    assert actions == ["allow", "allow", "block", "stop"]
    assert run.pending == []


def test_carrying_on_after_a_silently_wrong_lookup_is_escalated(policy: Policy, tmp_path: Path) -> None:
    desk = SupportDesk(
        tmp_path / "desk.db", faults={"lookup_order": lambda r: {**r, "error": "stale replica"}}
    )
    with Guard(policy, store=tmp_path / "t.db") as guard:
        run = guard.start_run("carry-on")
        agent = Agent(run, desk)
        run.user(f"{ALICE} Order A1 arrived broken, refund it please. It was $40.")
        agent.call("find_user", email="alice@example.com")
        agent.call("lookup_order", order_id="A1")
        lookup_result = agent.decisions[-1]
        assert lookup_result.action == "block"  # the "successful" lookup carried an error
        assert one(lookup_result, "no_error_payload").kind == "silent_tool_error"
        agent.say("Order A1 (desk lamp, $40). Shall I refund $40 for order A1?")
        run.user("Yes, go ahead.")
        d = agent.call("refund_order", order_id="A1", amount=40, reason="arrived broken")
        assert d.action == "escalate"
        assert "ignored_tool_error" in d.kinds
        assert "failed at step" in d.reason
        assert desk.count("refunds") == 0
    desk.close()


def test_picking_one_of_two_orders_without_asking_is_clarified(guard: Guard, desk: SupportDesk) -> None:
    run = guard.start_run("pick-one")
    agent = Agent(run, desk)
    run.user(f"{ALICE} My order arrived broken, please refund it.")
    agent.call("find_user", email="alice@example.com")
    agent.call("list_orders", user_id="u1")
    agent.call("lookup_order", order_id="A2")  # the agent picked A2 of A1, A2, A3 on its own
    agent.say("I found your order, it is eligible. Shall I go ahead with the refund?")
    run.user("Yes.")
    d = agent.call("refund_order", order_id="A2", amount=25, reason="arrived broken")
    assert d.action == "clarify"
    assert "ambiguous" in d.kinds
    assert d.question == "Which one do you mean: A1 or A2 or A3?"
    assert desk.count("refunds") == 0
    # once the user names it, and confirms a proposal that names it, the refund runs
    ok = run.resolve(f"c{agent.n}", "answer", by="alice@example.com", text="The chair, A2.")
    assert ok.action == "block"  # still needs a yes to a proposal naming order and amount
    agent.say("Shall I refund $25 for order A2?")
    run.user("Yes.")
    assert agent.call("refund_order", order_id="A2", amount=25, reason="arrived broken").action == "allow"
    assert desk.count("refunds") == 1


def test_a_confirmed_proposal_naming_the_order_is_not_ambiguous(guard: Guard, desk: SupportDesk) -> None:
    run = guard.start_run("named")
    agent = Agent(run, desk)
    run.user(f"{ALICE} My order arrived broken, please refund it.")
    agent.call("find_user", email="alice@example.com")
    agent.call("list_orders", user_id="u1")
    agent.call("lookup_order", order_id="A2")
    agent.say("Order A2 (office chair, $25). Shall I refund $25 for order A2?")
    run.user("Yes.")
    assert agent.call("refund_order", order_id="A2", amount=25, reason="arrived broken").action == "allow"


def test_a_clean_run_passes_untouched(guard: Guard, desk: SupportDesk) -> None:
    run = guard.start_run("clean")
    agent = Agent(run, desk)
    run.user(f"{ALICE} Order A2, the office chair, arrived broken. Please refund it.")
    agent.call("find_user", email="alice@example.com")
    agent.call("lookup_order", order_id="A2")
    agent.say("Order A2 (office chair, $25.00) is eligible. Shall I refund $25 for order A2?")
    run.user("Yes, please go ahead.")
    agent.call("refund_order", order_id="A2", amount=25, reason="arrived broken")
    agent.call("create_ticket", subject="A2 refunded", body="chair arrived broken, refunded in full")
    end = run.end("I have refunded $25 for order A2 and created a ticket for the warehouse.")
    for d in [*agent.decisions, end]:
        assert d.action == "allow", d.reason
        assert active(d) == [], [f.to_dict() for f in d.findings]
    assert desk.count("refunds") == 1
    assert desk.count("tickets") == 1
    assert run.view.milestones == ["identified", "order_found", "resolved"]
    assert run.progress.fraction == 1.0


def test_conformance_check_names_every_difference() -> None:
    from headway import testing

    scenario = SCENARIOS[0]
    reference = {"c1": "allow", "c3": "allow", "end": "allow"}
    testing.assert_conforms(dict(reference, **{"c2": "allow", "c3/result": "allow"}), reference, scenario)
    with pytest.raises(AssertionError) as err:
        testing.assert_conforms({"c1": "block", "c3": "allow"}, reference, scenario)
    text = str(err.value)
    assert "c1: adapter 'block', core 'allow'" in text
    assert "end: expected 'allow', got None" in text
