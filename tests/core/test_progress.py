"""Progress checkpoints: repeats, short cycles, no-new-information, stalls, milestones, budgets."""

from __future__ import annotations

from typing import Any

import pytest

from headway import Budgets, Guard, Milestone, Policy, Run, RunView, Tool
from tests.core._helpers import do, found, make_run, one

READS = (Tool("*", risk="read"),)


def _run(**kw: Any) -> Run:
    return make_run(Policy(tools=list(READS), **kw))


# ---- identical repeats ----------------------------------------------------------------------------


def test_max_repeats_2_third_identical_call_is_the_loop_then_stop() -> None:
    run = _run(max_repeats=2)
    assert (
        do(run, "lookup", {"order_id": "A1"}, "c1", {"order_id": "A1", "status": "pending"}).action == "allow"
    )
    assert (
        do(run, "lookup", {"order_id": "A1"}, "c2", {"order_id": "A1", "status": "pending"}).action == "allow"
    )
    d3 = run.tool_call("lookup", {"order_id": "A1"}, call_id="c3")
    assert d3.action == "block"
    f = one(d3, "repeats")
    assert f.kind == "loop"
    assert f.evidence["strike"] == 1
    assert "already called with these arguments 2 times" in f.message
    # graduated: the model is told what it already knows
    assert "you already know the result" in d3.reason
    assert "'status': 'pending'" in d3.reason
    assert "[headway] lookup: not done." in d3.for_model()
    d4 = run.tool_call("lookup", {"order_id": "A1"}, call_id="c4")
    assert d4.action == "stop"
    assert one(d4, "repeats").evidence["strike"] == 2


def test_max_repeats_counts_only_identical_arguments() -> None:
    run = _run(max_repeats=1)
    assert do(run, "lookup", {"order_id": "A1"}, "c1", {"x": 1}).action == "allow"
    assert do(run, "lookup", {"order_id": "A2"}, "c2", {"x": 2}).action == "allow"
    assert do(run, "other", {"order_id": "A1"}, "c3", {"x": 3}).action == "allow"
    # key order does not make a call different
    run2 = _run(max_repeats=1)
    do(run2, "search", {"a": 1, "b": 2}, "c1", {"x": 1})
    assert run2.tool_call("search", {"b": 2, "a": 1}, call_id="c2").action == "block"


def test_repeat_message_for_a_failed_or_pending_call() -> None:
    run = _run(max_repeats=1)
    do(run, "lookup", {"order_id": "A1"}, "c1", error="HTTP 503 from orders")
    d = run.tool_call("lookup", {"order_id": "A1"}, call_id="c2")
    assert d.action == "block"
    assert "it failed with" in d.reason
    assert "503" in d.reason
    run2 = _run(max_repeats=1)
    run2.tool_call("lookup", {"order_id": "A1"}, call_id="c1")  # no result yet
    assert "still pending" in run2.tool_call("lookup", {"order_id": "A1"}, call_id="c2").reason


def test_loop_stop_after_is_configurable() -> None:
    run = _run(max_repeats=1, loop_stop_after=3)
    do(run, "lookup", {"id": 1}, "c1", {"x": 1})
    assert [run.tool_call("lookup", {"id": 1}, call_id=f"c{i}").action for i in range(2, 5)] == [
        "block",
        "block",
        "stop",
    ]


# ---- short cycles ---------------------------------------------------------------------------------


def test_period_2_cycle_caught_within_two_steps_of_the_first_repeat() -> None:
    run = _run(max_repeats=5)
    seq = [("get_order", {"id": "A1"}), ("get_user", {"id": "u1"})] * 3
    decisions = []
    for i, (tool, args) in enumerate(seq):
        d = run.tool_call(tool, args, call_id=f"c{i}")
        decisions.append(d)
        if d.action == "allow":
            run.tool_result(f"c{i}", output={"same": tool})
    # calls 0,1 are new, call 2 is the first repeat, call 3 completes the cycle A-B-A-B
    assert [d.action for d in decisions[:3]] == ["allow", "allow", "allow"]
    assert decisions[3].action == "block"
    f = one(decisions[3], "cycle")
    assert f.kind == "loop"
    assert f.evidence["period"] == 2
    assert "get_order -> get_user repeat" in f.message
    # the next strike stops the run
    assert any(d.action == "stop" for d in decisions[4:])


def test_period_3_cycle_caught_within_two_steps_of_the_first_repeat() -> None:
    run = _run(max_repeats=5)
    seq = [("a", {"k": 1}), ("b", {"k": 2}), ("c", {"k": 3})] * 2
    actions = []
    for i, (tool, args) in enumerate(seq):
        d = run.tool_call(tool, args, call_id=f"c{i}")
        actions.append(d.action)
        if d.action == "allow":
            run.tool_result(f"c{i}", output="same answer")
        if d.action != "allow":
            assert one(d, "cycle").evidence["period"] == 3
            assert "a -> b -> c" in d.reason
    # first repeat at index 3; detection no later than index 5
    assert "block" in actions[3:6]
    assert actions[:3] == ["allow", "allow", "allow"]


def test_a_polling_cycle_whose_results_change_is_not_a_loop() -> None:
    run = _run(max_repeats=10)
    statuses = ["queued", "running", "running 40%", "running 80%", "done"]
    for i, status in enumerate(statuses):
        d = run.tool_call("check_status", {"job": "j1"}, call_id=f"s{i}")
        assert d.action == "allow", d.reason
        run.tool_result(f"s{i}", output={"job": "j1", "status": status})
        w = run.tool_call("wait", {"seconds": 5}, call_id=f"w{i}")
        assert w.action == "allow", w.reason
        run.tool_result(f"w{i}", output="waited")
    assert not any(f.kind == "loop" and f.severity != "note" for c in run.view.calls() for f in c.findings)


def test_a_polling_cycle_that_stops_changing_becomes_a_loop() -> None:
    run = _run(max_repeats=10)
    got = []
    for i in range(6):
        d = run.tool_call("check_status", {"job": "j1"}, call_id=f"s{i}")
        got.append(d.action)
        if d.action == "allow":
            run.tool_result(f"s{i}", output={"job": "j1", "status": "stuck"})
        w = run.tool_call("wait", {"seconds": 5}, call_id=f"w{i}")
        got.append(w.action)
        if w.action == "allow":
            run.tool_result(f"w{i}", output="waited")
    assert "block" in got
    assert got[-1] == "stop"


# ---- no new information ---------------------------------------------------------------------------


def test_no_new_information_is_a_note_on_the_result() -> None:
    run = _run(max_repeats=5)
    do(run, "lookup", {"id": 1}, "c1", {"status": "pending"})
    run.tool_call("lookup", {"id": 1}, call_id="c2")
    r = run.tool_result("c2", output={"status": "pending"})
    assert r.action == "allow"
    f = one(r, "no_new_information")
    assert (f.kind, f.severity) == ("loop", "note")
    run.tool_call("lookup", {"id": 1}, call_id="c3")
    r3 = run.tool_result("c3", output={"status": "shipped"})
    assert not found(r3, "no_new_information")


# ---- stalls ---------------------------------------------------------------------------------------


def test_stall_blocks_then_stops() -> None:
    run = make_run(
        Policy(
            tools=list(READS),
            milestones=[Milestone("resolved", after="resolve")],
            max_steps_without_progress=4,
        )
    )
    decisions = []
    for i in range(10):
        d = run.tool_call("search", {"q": i}, call_id=f"c{i}")
        decisions.append(d)
        if d.action == "allow":
            run.tool_result(f"c{i}", output={"hits": [i]})
        if d.action == "stop":
            break
    actions = [d.action for d in decisions]
    assert actions[:4] == ["allow"] * 4
    assert actions[4] == "block"
    stall = one(decisions[4], "stall")
    assert stall.kind == "stall"
    assert "5 tool calls without progress" in stall.message
    assert "milestones reached: none" in stall.message
    assert one(decisions[-1], "stall").evidence["strike"] == 2
    assert actions[-1] == "stop"
    assert actions.count("block") == 1
    assert len(actions) <= 4 + 1 + 4  # stopped within half a window more


def test_a_new_milestone_resets_the_stall_counter() -> None:
    run = make_run(
        Policy(
            tools=list(READS), milestones=[Milestone("found", after="lookup")], max_steps_without_progress=3
        )
    )
    for i in range(3):
        assert do(run, "search", {"q": i}, f"s{i}", {"hits": []}).action == "allow"
    assert do(run, "search", {"q": 9}, "s9", {"hits": []}).action == "block"  # the 4th call without progress
    # ... but not the call that would reach the missing milestone: that is the way out of the stall.
    assert do(run, "lookup", {"id": 1}, "l1", {"id": 1}).action == "allow"
    assert run.view.milestones == ["found"]
    run2 = make_run(
        Policy(
            tools=list(READS), milestones=[Milestone("found", after="lookup")], max_steps_without_progress=3
        )
    )
    for i in range(2):
        do(run2, "search", {"q": i}, f"s{i}", {"hits": []})
    assert do(run2, "lookup", {"id": 1}, "l1", {"id": 1}).action == "allow"
    assert run2.progress.steps_since_progress == 0
    for i in range(3):
        assert do(run2, "search", {"q": 10 + i}, f"t{i}", {"hits": [i]}).action == "allow"


def test_without_milestones_new_information_is_progress() -> None:
    run = _run(max_steps_without_progress=3, max_repeats=10)
    for i in range(8):
        assert do(run, "search", {"q": i}, f"c{i}", {"hits": [i]}).action == "allow"
    run2 = _run(max_steps_without_progress=3, max_repeats=10)
    acts = [do(run2, "search", {"q": i}, f"c{i}", {"hits": []}).action for i in range(5)]
    # the first empty result was new; the next three learned nothing; the fifth call is the stall
    assert acts == ["allow", "allow", "allow", "allow", "block"]


# ---- milestones and the progress measure ------------------------------------------------------------


def test_milestones_by_tool_and_by_predicate_and_progress() -> None:
    def two_lookups(view: RunView) -> bool:
        return len(view.calls("lookup")) >= 2

    def broken(view: RunView) -> bool:
        raise RuntimeError("predicate bug")

    policy = Policy(
        tools=list(READS),
        milestones=[
            Milestone("identified", after=["find_user", "find_user_by_zip"]),
            Milestone("double_checked", when=two_lookups),
            Milestone("never", when=broken),
            Milestone("resolved", after="refund_*"),
        ],
    )
    run = make_run(policy)
    p = run.progress
    assert p.reached == ()
    assert p.remaining == ("identified", "double_checked", "never", "resolved")
    assert p.fraction == 0.0
    do(run, "find_user_by_zip", {"zip": "1"}, "c1", error="no such user")
    assert run.view.milestones == []  # a failed call reaches nothing
    do(run, "find_user_by_zip", {"zip": "2"}, "c2", {"user_id": "u1"})
    assert run.view.milestones == ["identified"]
    do(run, "lookup", {"id": 1}, "c3", {"id": 1})
    assert "double_checked" not in run.view.milestones
    do(run, "lookup", {"id": 2}, "c4", {"id": 2})
    assert run.view.milestones == ["identified", "double_checked"]
    p = run.progress
    assert p.reached == ("identified", "double_checked")
    assert p.remaining == ("never", "resolved")
    assert p.fraction == pytest.approx(0.5)
    assert p.steps_since_progress == 0
    do(run, "search", {"q": 1}, "c5", {"x": 1})
    assert run.progress.steps_since_progress == 1
    do(run, "refund_order", {"id": 1}, "c6", {"ok": True})
    assert run.progress.remaining == ("never",)
    assert run.progress.fraction == pytest.approx(0.75)


def test_progress_without_milestones_is_complete() -> None:
    assert _run().progress.fraction == 1.0


# ---- budgets --------------------------------------------------------------------------------------


def test_budget_steps_stop() -> None:
    run = _run(budgets=Budgets(steps=3))
    assert run.model("thinking").action == "allow"
    assert do(run, "a", {}, "c1", {"x": 1}).action == "allow"
    assert do(run, "b", {}, "c2", {"x": 2}).action == "allow"
    d = run.tool_call("c", {}, call_id="c3")
    assert d.action == "stop"
    f = one(d, "budget")
    assert f.kind == "budget"
    assert "steps 4 > 3" in f.message
    assert "[headway] the run was stopped" in d.for_model()


def test_budget_tool_calls_stop() -> None:
    run = _run(budgets=Budgets(tool_calls=2))
    run.model("a")
    run.model("b")
    assert do(run, "a", {}, "c1", {"x": 1}).action == "allow"
    assert do(run, "b", {}, "c2", {"x": 2}).action == "allow"
    d = run.tool_call("c", {}, call_id="c3")
    assert d.action == "stop"
    assert "tool calls 3 > 2" in one(d, "budget").message


def test_budget_tokens_stop_at_the_model_turn() -> None:
    run = _run(budgets=Budgets(tokens=100))
    assert run.model("short", tokens=60).action == "allow"
    d = run.model("long", tokens=60)
    assert d.action == "stop"
    assert "tokens 120 > 100" in one(d, "budget").message
    assert run.tool_call("a", {}, call_id="c1").action == "stop"


def test_budget_tokens_ignores_nonsense_counts() -> None:
    run = _run(budgets=Budgets(tokens=100))
    for bad in (-500, True, 10**30 * 0):
        assert run.model("x", tokens=bad).action == "allow"
    assert run.view.tokens == 0


def test_budget_seconds_stop() -> None:
    run = _run(budgets=Budgets(seconds=30))
    assert do(run, "a", {}, "c1", {"x": 1}).action == "allow"
    # 31 seconds pass, moved by hand: the budget must not depend on how loaded the machine is (and a
    # compiled tracker's clock cannot be patched from outside).
    run._tracker.started -= 31
    d = run.tool_call("b", {}, call_id="c2")
    assert d.action == "stop"
    assert "wall time" in one(d, "budget").message


def test_repeating_a_poll_whose_result_keeps_changing_is_not_a_loop() -> None:
    guard = Guard(Policy(tools=[Tool("job_status", risk="read")], max_repeats=2), store=":memory:")
    run = guard.start_run("poll")
    actions = []
    for i in range(6):
        actions.append(run.tool_call("job_status", {"job": "J1"}, call_id=f"p{i}").action)
        run.tool_result(f"p{i}", output={"job": "J1", "progress": i * 20})
    assert actions == ["allow"] * 6
    # once the status stops changing, repeats are a loop again
    for i in range(6, 9):
        d = run.tool_call("job_status", {"job": "J1"}, call_id=f"p{i}")
        actions.append(d.action)
        if d.action == "allow":
            run.tool_result(f"p{i}", output={"job": "J1", "progress": 100})
    assert actions[6:] == ["allow", "block", "stop"]
