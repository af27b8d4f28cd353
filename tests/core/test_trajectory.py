"""Trajectory assertions and evaluation: the four match modes, argument matchers, where a run left its
reference and what the message says, runs read live and from stores, `evaluate`, `headway eval`, and the
pytest fixtures the `headway` plugin provides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from headway import Guard, HeadwayError, Policy, Run, Tool
from headway.cli import main
from headway.escalations import MemoryEscalations
from headway.pytest_plugin import GuardFactory, TrajectoryLoader
from headway.testing import (
    IGNORE,
    Call,
    assert_trajectory,
    calls_of,
    evaluate,
    match_trajectory,
)
from headway.traces import Event, MemoryStore, SQLiteStore, export_jsonl
from tests.core._helpers import do

POLICY = Policy(tools=[Tool("lookup_order", risk="read"), Tool("refund_order", risk="write")])
REFERENCE: list[Any] = [
    ("lookup_order", {"order_id": "A1"}),
    ("refund_order", {"order_id": "A1", "amount": 40}),
]


def run_of(*calls: tuple[str, dict[str, Any]], run_id: str = "r", store: Any = None) -> Run:
    """A run that made these calls (each allowed, given an empty result) and ended."""
    # Escalations in memory: a SQLite store shared by several runs stays the caller's to close.
    guard = Guard(
        POLICY, store=store if store is not None else MemoryStore(), escalations=MemoryEscalations()
    )
    run = guard.start_run(run_id)
    run.user("refund order A1, $40")
    for i, (tool, args) in enumerate(calls, 1):
        do(run, tool, args, f"c{i}", {"ok": True})
    run.end("done")
    return run


LOOKUP = ("lookup_order", {"order_id": "A1"})
REFUND = ("refund_order", {"order_id": "A1", "amount": 40})
REFUND_400 = ("refund_order", {"order_id": "A1", "amount": 400})
TICKET = ("create_ticket", {"subject": "broken"})


# ---- the four modes -------------------------------------------------------------------------------------


def test_strict_passes_on_the_same_calls_in_order_and_returns_the_match() -> None:
    result = assert_trajectory(run_of(LOOKUP, REFUND), REFERENCE)
    assert result.passed
    assert result.score == 1.0
    assert result.divergence is None
    assert [str(c) for c in result.calls] == [
        "lookup_order(order_id='A1')",
        "refund_order(order_id='A1', amount=40)",
    ]


def test_strict_names_the_step_the_argument_and_both_values() -> None:
    with pytest.raises(AssertionError) as e:
        assert_trajectory(run_of(LOOKUP, REFUND_400), REFERENCE)
    text = str(e.value)
    assert "do not match the reference (strict: the same calls in the same order)" in text
    assert "the run left it at step 1" in text
    assert "step 0: lookup_order(order_id='A1')  ok" in text
    assert "step 1: refund_order(order_id='A1', amount=400)  <- expected reference[1]" in text
    assert "amount: expected 40, got 400" in text


def test_strict_order_matters_and_the_score_counts_calls_matched_in_order() -> None:
    swapped = match_trajectory(run_of(REFUND, LOOKUP), REFERENCE)
    assert not swapped.passed
    assert swapped.divergence is not None
    assert swapped.divergence.step == 0
    assert swapped.divergence.reason == "expected lookup_order, got refund_order"
    assert swapped.score == 0.5
    # One extra call first: every later index is off by one, yet two of the three calls match in order.
    extra = match_trajectory(run_of(TICKET, LOOKUP, REFUND), REFERENCE)
    assert not extra.passed
    assert extra.score == pytest.approx(2 / 3)


def test_strict_reports_missing_and_extra_calls_at_the_end() -> None:
    short = match_trajectory(run_of(LOOKUP), REFERENCE)
    d = short.divergence
    assert d is not None
    assert (d.step, d.ref_index, d.got) == (None, 1, None)
    assert d.expected == Call("refund_order", {"order_id": "A1", "amount": 40})
    assert "missing: reference[1] refund_order(order_id='A1', amount=40)  <- the run made no call here" in (
        short.explain()
    )
    long = match_trajectory(run_of(LOOKUP, REFUND, TICKET), REFERENCE)
    d = long.divergence
    assert d is not None
    assert (d.step, d.ref_index, d.expected) == (2, None, None)
    assert "not in the reference" in d.reason


def test_unordered_takes_any_order_but_every_call_exactly() -> None:
    assert match_trajectory(run_of(REFUND, LOOKUP), REFERENCE, "unordered").passed
    extra = match_trajectory(run_of(REFUND, LOOKUP, TICKET), REFERENCE, "unordered")
    assert not extra.passed
    assert extra.score == pytest.approx(2 / 3)
    d = extra.divergence
    assert d is not None
    assert (d.step, d.reason) == (2, "not in the reference")
    wrong = match_trajectory(run_of(REFUND_400, LOOKUP), REFERENCE, "unordered")
    d = wrong.divergence
    assert d is not None
    assert (d.step, d.ref_index) == (0, 1)  # paired with the call it should have been
    assert d.reason == "amount: expected 40, got 400"
    assert "step 0: refund_order(order_id='A1', amount=400)  <- expected reference[1]" in wrong.explain()


def test_subset_allows_fewer_calls_but_none_outside_the_reference() -> None:
    assert match_trajectory(run_of(LOOKUP), REFERENCE, "subset").passed
    assert match_trajectory(run_of(), REFERENCE, "subset").score == 1.0
    bad = match_trajectory(run_of(LOOKUP, TICKET), REFERENCE, "subset")
    assert not bad.passed
    assert bad.score == 0.5
    d = bad.divergence
    assert d is not None
    assert d.got == Call("create_ticket", {"subject": "broken"}, "c2")
    assert d.expected is None


def test_superset_allows_extra_calls_but_needs_every_reference_call() -> None:
    assert match_trajectory(run_of(TICKET, LOOKUP, TICKET, REFUND), REFERENCE, "superset").passed
    bad = match_trajectory(run_of(TICKET, LOOKUP), REFERENCE, "superset")
    assert not bad.passed
    assert bad.score == 0.5
    d = bad.divergence
    assert d is not None
    assert (d.step, d.ref_index, d.reason) == (None, 1, "the run never made this call")
    assert "reference[1] (never made)" in bad.explain()


def test_matching_is_a_maximum_matching_not_a_greedy_one() -> None:
    # Step 0 fits both reference calls; greedy would give it reference[0] and leave step 1 unmatched.
    reference = [
        ("refund_order", {"amount": IGNORE, "order_id": "A1"}),
        ("refund_order", {"order_id": "A1", "amount": 40}),
    ]
    run = [
        ("refund_order", {"order_id": "A1", "amount": 40}),
        ("refund_order", {"order_id": "A1", "amount": 7}),
    ]
    assert match_trajectory(run, reference, "unordered").passed


# ---- argument matchers ----------------------------------------------------------------------------------


def test_ignore_in_the_reference_or_in_args_skips_an_argument() -> None:
    run = run_of(LOOKUP, REFUND_400)
    assert_trajectory(run, [LOOKUP, ("refund_order", {"order_id": "A1", "amount": IGNORE})])
    assert_trajectory(run, REFERENCE, args={"amount": IGNORE})
    assert_trajectory(run, REFERENCE, args={"refund_order.amount": IGNORE})
    with pytest.raises(AssertionError, match="amount: expected 40, got 400"):
        assert_trajectory(run, REFERENCE, args={"lookup_order.amount": IGNORE})  # another tool's amount


def test_custom_matchers_in_args_and_predicates_in_the_reference() -> None:
    run = run_of(LOOKUP, ("refund_order", {"order_id": "a1 ", "amount": 40.004}))

    def close(actual: Any, expected: Any) -> bool:
        return bool(abs(actual - expected) < 0.01)

    def same_id(actual: Any, expected: Any) -> bool:
        return bool(str(actual).strip().upper() == expected)

    assert_trajectory(run, REFERENCE, args={"amount": close, "order_id": same_id})
    assert_trajectory(run, [LOOKUP, ("refund_order", {"order_id": IGNORE, "amount": lambda v: v < 100})])
    with pytest.raises(AssertionError, match=r"amount=40\.004 rejected by <lambda>"):
        assert_trajectory(run, REFERENCE, args={"amount": lambda a, e: a == e, "order_id": IGNORE})


def test_a_matcher_that_raises_is_a_difference_with_its_error() -> None:
    result = match_trajectory([REFUND], [REFUND], args={"amount": lambda a, e: a.upper()})
    assert not result.passed
    d = result.divergence
    assert d is not None
    assert "AttributeError" in d.reason


def test_exact_comparison_is_strict_about_types_and_names() -> None:
    assert not match_trajectory([("t", {"flag": 1})], [("t", {"flag": True})]).passed
    assert match_trajectory([("t", {"n": 40})], [("t", {"n": 40.0})]).passed
    assert match_trajectory([("t", {"xs": [1, 2]})], [("t", {"xs": (1, 2)})]).passed
    assert match_trajectory([("t", {"a": {"b": 1, "c": 2}})], [("t", {"a": {"b": 1, "c": IGNORE}})]).passed
    extra = match_trajectory([("t", {"a": 1, "b": 2})], [("t", {"a": 1})])
    assert extra.divergence is not None
    assert extra.divergence.reason == "b=2 is not in the reference"
    missing = match_trajectory([("t", {})], [("t", {"a": 1})])
    assert missing.divergence is not None
    assert missing.divergence.reason == "a missing (expected 1)"
    # A bare tool name in a reference means any arguments.
    assert match_trajectory([("t", {"a": 1})], ["t"]).passed


def test_bad_modes_and_matchers_are_refused() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        match_trajectory([], [], "ordered")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be 'exact', IGNORE or a callable"):
        match_trajectory([], [], args={"a": "loose"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="needs a 'tool'"):
        match_trajectory([], [{"args": {}}])


# ---- where trajectories come from -----------------------------------------------------------------------


def test_recorded_events_give_the_same_calls_with_a_persons_edit_applied(tmp_path: Path) -> None:
    policy = Policy(tools=[Tool("refund_order", risk="write", approve_when=lambda c: c.args["amount"] > 100)])
    with Guard(policy, store=tmp_path / "t.db") as guard:
        run = guard.start_run("r1")
        assert (
            run.tool_call("refund_order", {"order_id": "A1", "amount": 400}, call_id="c1").action
            == "escalate"
        )
        run.resolve("c1", "edit", by="maria", args={"order_id": "A1", "amount": 40})
        run.tool_result("c1", {"ok": True})
        run.tool_call("refund_order", {"order_id": "A2", "amount": 5}, call_id="c2")
        live = calls_of(run)
    with SQLiteStore(tmp_path / "t.db") as store:
        events = store.events("r1")
    assert (
        calls_of(events)
        == live
        == [
            Call("refund_order", {"order_id": "A1", "amount": 40}, "c1"),
            Call("refund_order", {"order_id": "A2", "amount": 5}, "c2"),
        ]
    )
    assert calls_of([e.to_dict() for e in events]) == live  # event dicts, as read from JSONL


def test_written_out_calls_in_every_form() -> None:
    calls = calls_of([Call("a", {"x": 1}), ("b", {"y": 2}), {"tool": "c", "args": {}}, {"name": "d"}, "e"])
    assert [(c.tool, dict(c.args)) for c in calls] == [
        ("a", {"x": 1}),
        ("b", {"y": 2}),
        ("c", {}),
        ("d", {}),
        ("e", {}),
    ]
    with pytest.raises(TypeError, match="a trajectory is a Run or a list"):
        calls_of("lookup_order")


# ---- evaluation -----------------------------------------------------------------------------------------


def recorded(path: Path) -> None:
    """Three runs in a SQLite store: one follows the reference, one refunds 10x, one never refunds."""
    with SQLiteStore(path) as store:
        run_of(LOOKUP, REFUND, run_id="good", store=store)
        run_of(LOOKUP, REFUND_400, run_id="ten_x", store=store)
        run_of(LOOKUP, run_id="stalled", store=store)


def test_evaluate_scores_each_recorded_run_and_says_where_it_diverged(tmp_path: Path) -> None:
    recorded(tmp_path / "t.db")
    result = evaluate(tmp_path / "t.db", REFERENCE)
    assert result.passed == 1
    assert result.pass_rate == pytest.approx(1 / 3)
    assert result.score == pytest.approx(2 / 3)
    assert result["good"].passed
    assert result["good"].score == 1.0
    ten_x = result["ten_x"].divergence
    assert ten_x is not None
    assert (ten_x.step, ten_x.reason) == (1, "amount: expected 40, got 400")
    stalled = result["stalled"].divergence
    assert stalled is not None
    assert (stalled.step, stalled.ref_index) == (None, 1)
    text = str(result)
    assert text.startswith(
        "3 runs against the reference (strict: the same calls in the same order): 1 passed, 2 failed"
    )
    assert "FAIL  0.50  ten_x  step 1: expected refund_order(order_id='A1', amount=40)" in text
    assert "pass  1.00  good" in text
    assert {r["run_id"]: r["passed"] for r in result.to_dict()["results"]} == {
        "good": True,
        "ten_x": False,
        "stalled": False,
    }
    # The same runs from a JSONL export, in superset mode, with the amount ignored: two pass.
    export_jsonl(tmp_path / "t.db", tmp_path / "t.jsonl")
    loose = evaluate(tmp_path / "t.jsonl", REFERENCE, "superset", {"amount": IGNORE})
    assert [r.run_id for r in loose.results if r.passed] == ["good", "ten_x"]


def test_evaluate_takes_live_runs_and_one_reference_per_run() -> None:
    runs = [run_of(LOOKUP, run_id="a"), run_of(LOOKUP, REFUND, run_id="b")]
    result = evaluate(runs, {"a": [LOOKUP], "b": REFERENCE})
    assert [(r.run_id, r.passed) for r in result.results] == [("a", True), ("b", True)]
    only_a = evaluate({"a": runs[0], "b": runs[1]}, {"a": [REFUND]})
    assert [(r.run_id, r.passed) for r in only_a.results] == [("a", False)]


def test_headway_eval_prints_the_evaluation_and_fails_when_a_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recorded(tmp_path / "t.db")
    ref = tmp_path / "ref.json"
    ref.write_text(
        json.dumps(
            [
                {"tool": "lookup_order", "args": {"order_id": "A1"}},
                ["refund_order", {"order_id": "A1", "amount": 40}],
            ]
        )
    )
    store = ["--store", str(tmp_path / "t.db")]
    assert main(["eval", "--reference", str(ref), *store]) == 1
    out = capsys.readouterr().out
    assert "1 passed, 2 failed" in out
    assert "FAIL  0.50  ten_x" in out
    assert main(["eval", "--reference", str(ref), "--run", "good", *store]) == 0
    assert capsys.readouterr().out.startswith("1 run against the reference")
    ref.write_text(
        json.dumps({"mode": "superset", "ignore": ["amount"], "calls": ["lookup_order", "refund_order"]})
    )
    assert main(["eval", "--reference", str(ref), "--json", *store]) == 1  # stalled never refunds
    report = json.loads(capsys.readouterr().out)
    assert (report["mode"], report["passed"]) == ("superset", 2)
    stalled = next(r for r in report["results"] if r["run_id"] == "stalled")
    assert stalled["divergences"][0]["expected"] == {"tool": "refund_order", "args": None, "id": None}


def test_headway_eval_refuses_bad_input_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recorded(tmp_path / "t.db")
    ref = tmp_path / "ref.json"
    store = ["--store", str(tmp_path / "t.db")]
    ref.write_text("[{")
    assert main(["eval", "--reference", str(ref), *store]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    ref.write_text(json.dumps({"mode": "fuzzy", "calls": []}))
    assert main(["eval", "--reference", str(ref), *store]) == 1
    assert "mode must be one of strict, unordered, subset, superset" in capsys.readouterr().err
    ref.write_text(json.dumps(["lookup_order"]))
    assert main(["eval", "--reference", str(ref), "--run", "nope", *store]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["eval", "--reference", str(ref), "--store", str(tmp_path / "missing.db")]) == 1
    assert "no trace store or file at" in capsys.readouterr().err
    ref.write_text(json.dumps({"runs": {"good": "lookup_order"}}))
    assert main(["eval", "--reference", str(ref), *store]) == 1
    assert '"runs" an object of such lists' in capsys.readouterr().err


# ---- the pytest plugin ------------------------------------------------------------------------------------


def test_the_plugin_fixtures_build_guards_and_load_recorded_runs(
    headway_guard: GuardFactory, headway_trajectory: TrajectoryLoader, tmp_path: Path
) -> None:
    guard = headway_guard(POLICY)
    assert isinstance(guard.store, MemoryStore)
    run = guard.start_run("live")
    do(run, "lookup_order", {"order_id": "A1"}, "c1", {"ok": True})
    assert_trajectory(run, [LOOKUP])
    on_disk = headway_guard(POLICY, store=SQLiteStore(tmp_path / "t.db"))
    do(on_disk.start_run("kept"), "lookup_order", {"order_id": "A1"}, "c1", {"ok": True})
    on_disk.flush()
    events = headway_trajectory(tmp_path / "t.db", "kept")
    assert all(isinstance(e, Event) for e in events)
    assert_trajectory(events, [LOOKUP])
    assert headway_trajectory(tmp_path / "t.db") == events  # the only run
    do(on_disk.start_run("other"), "lookup_order", {"order_id": "A2"}, "c1", {"ok": True})
    on_disk.flush()
    with pytest.raises(HeadwayError, match=r"holds 2 runs; say which: 'kept', 'other'"):
        headway_trajectory(tmp_path / "t.db")
    from_file = headway_guard(Path(__file__).parents[2] / "examples" / "support_desk" / "policy.toml")
    assert from_file.policy.name == "support-desk"
