"""`headway.analysis.replay` and `headway replay`: recorded support-desk runs re-decided under other
policies. The same policy changes nothing; a stricter one newly blocks, with the right failure class; a
looser one newly allows. Runs stream one at a time, from every kind of source."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from headway import Finding, Guard, HeadwayError, Policy, RunView, Tool, ToolCall, checks
from headway.analysis import Change, ReplayResult, replay
from headway.cli import main
from headway.traces import Event, MemoryStore, export_jsonl, read_events
from tests.core._helpers import do
from tests.core._recordings import ALICE, ALL, policy_file, record

DECIDED = ("model", "tool_call", "tool_result", "human", "end")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Path:
    return record(tmp_path_factory.mktemp("recorded"), policy)


def calls_changed(result: ReplayResult, stage: str = "call") -> dict[tuple[str, str | None], Change]:
    """Every change at `stage`, by (run id, call id) (the fixtures' runs have fewer than the cap)."""
    return {(c.run_id, c.call_id): c for r in result.runs for c in r.examples if c.stage == stage}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- the invariant: the policy that recorded the runs re-decides them the same ---------------------------


@pytest.mark.parametrize("scenario", [s.name for s in ALL])
def test_the_same_policy_changes_nothing(recorded: Path, policy: Policy, scenario: str) -> None:
    result = replay(recorded, policy, runs=[scenario])
    assert [r.run_id for r in result.runs] == [scenario]
    diff = result.runs[0]
    assert diff.tally.n_changed == 0, [str(c) for c in diff.examples]
    assert diff.notes == []
    # every recorded decision was compared, the people's decisions included
    events = [e for e in read_events(recorded) if e.run_id == scenario]
    assert diff.tally.compared == sum(1 for e in events if e.type in DECIDED and "decision" in e.data)


def test_the_same_policy_changes_nothing_from_any_source(
    recorded: Path, policy: Policy, tmp_path: Path
) -> None:
    jsonl = tmp_path / "runs.jsonl"
    export_jsonl(recorded, jsonl)
    memory = MemoryStore()
    for e in read_events(recorded):
        memory.append(e)
    for source in (recorded, str(recorded), jsonl, memory, list(read_events(jsonl))):
        result = replay(source, policy)
        assert len(result.runs) == len(ALL)
        assert result.total.n_changed == 0
        assert result.total.compared > 50
    assert "0 changed" in result.to_text()


# ---- stricter and looser policies ---------------------------------------------------------------------


def test_a_lower_refund_bound_newly_blocks_refunds_as_invalid_args(recorded: Path, tmp_path: Path) -> None:
    strict = Policy.load(policy_file(tmp_path, "strict", ("max = 500", "max = 30")))
    result = replay(recorded, strict)
    changed = calls_changed(result)
    # every refund above $30 as the agent proposed it; the $25 refund of A2 still passes
    assert set(changed) == {
        ("clean_refund", "c3"),
        ("refund_without_lookup", "c4"),
        ("over_threshold", "c3"),
        ("over_threshold_rejected", "c3"),
        ("over_threshold_edited", "c3"),
        ("silent_wrong_result", "c3"),
    }
    c = changed[("clean_refund", "c3")]
    assert (c.tool, c.old, c.new, c.category) == ("refund_order", "allow", "block", "newly_blocked")
    assert c.kinds == ("invalid_args",)
    assert "above the maximum 30" in c.reason
    assert changed[("over_threshold", "c3")].old == "escalate"  # was waiting for a person's approval
    assert result.total.by_kind["invalid_args"]["newly_blocked"] == 6
    assert result.total.by_stage["call"]["newly_blocked"] == 6
    assert result.total.transitions["allow -> block"] >= 3
    # the final answers now claim refunds that never ran under this policy
    ends = calls_changed(result, "end")
    assert ends[("clean_refund", None)].kinds == ("unsupported_claim",)
    # a person's approval of a call the new policy blocks outright is skipped, and said so
    notes = next(r for r in result.runs if r.run_id == "over_threshold").notes
    assert any("approve on c3 was not replayed" in n and "'block'" in n for n in notes)
    assert not next(r for r in result.runs if r.run_id == "ambiguous_order").changed
    assert not next(r for r in result.runs if r.run_id == "lookup_loop").changed


def test_a_new_precondition_newly_blocks_as_unmet_precondition(recorded: Path, tmp_path: Path) -> None:
    path = policy_file(
        tmp_path,
        "list-first",
        (
            '{ check = "once", key = ["order_id"] },',
            '{ check = "once", key = ["order_id"] },\n  { check = "requires_prior", tools = "list_orders" },',
        ),
    )
    result = replay(recorded, Policy.load(path))
    changed = calls_changed(result)
    c = changed[("clean_refund", "c3")]
    assert (c.old, c.new, c.kinds) == ("allow", "block", ("unmet_precondition",))
    assert "list_orders" in c.reason
    # the run that listed the orders first is unaffected
    assert ("ambiguous_order", "c5") not in changed
    assert result.total.by_kind["unmet_precondition"]["newly_blocked"] == len(changed)


def test_a_looser_policy_newly_allows(recorded: Path, tmp_path: Path) -> None:
    loose = Policy.load(
        policy_file(
            tmp_path,
            "loose",
            ('approve_when = { arg = "amount", gt = 100 }\n', ""),
            ("max_repeats = 2", "max_repeats = 5"),
        )
    )
    result = replay(recorded, loose)
    changed = calls_changed(result)
    assert {k: (c.old, c.new) for k, c in changed.items()} == {
        ("lookup_loop", "c4"): ("block", "allow"),
        ("lookup_loop", "c5"): ("stop", "allow"),
        ("over_threshold", "c3"): ("escalate", "allow"),
        ("over_threshold_rejected", "c3"): ("escalate", "allow"),
        ("over_threshold_edited", "c3"): ("escalate", "allow"),
    }
    assert changed[("lookup_loop", "c5")].kinds == ("loop",)
    assert changed[("over_threshold", "c3")].kinds == ()  # the approval rule, not a finding
    assert result.total.changed["newly_allowed"] == 5
    assert result.total.by_kind["loop"]["newly_allowed"] == 2
    assert result.total.by_kind["(approval rule)"]["newly_allowed"] == 3
    assert "was: refund_order needs a person's approval" in changed[("over_threshold", "c3")].reason


def test_results_of_newly_blocked_calls_are_still_fed(recorded: Path, policy: Policy, tmp_path: Path) -> None:
    """The trajectory continues as recorded: the refund the new policy blocks still has its (inflated)
    result fed, which is checked and escalated as it was."""
    strict = Policy.load(policy_file(tmp_path, "strict", ("max = 500", "max = 30")))
    diff = replay(recorded, strict, runs=["silent_wrong_result"]).runs[0]
    same = replay(recorded, policy, runs=["silent_wrong_result"]).runs[0]
    assert diff.tally.compared == same.tally.compared  # the result was fed, decided and compared
    assert [(c.call_id, c.stage, c.old, c.new) for c in diff.examples] == [
        ("c3", "call", "allow", "block"),
        (None, "end", "escalate", "block"),  # the claimed refund never ran under this policy
    ]


def test_a_run_restored_after_a_crash_replays_unchanged(policy: Policy, tmp_path: Path) -> None:
    """A crash between a refund's start and its result: the restart escalates the unknown outcome, a
    person approves, the result arrives. A replay has no crash: it notes the re-decision, changes nothing."""
    db = tmp_path / "traces.db"
    with Guard(policy, store=db) as guard:
        run = guard.start_run("r")
        run.user(f"{ALICE} Refund order A1, $40, it arrived broken.")
        do(run, "find_user", {"email": "alice@example.com"}, "c1", {"user_id": "u1"})
        lookup = {"order_id": "A1", "user_id": "u1", "amount": 40, "status": "delivered"}
        do(run, "lookup_order", {"order_id": "A1"}, "c2", lookup)
        run.model("Shall I refund $40 for order A1 (reason: broken)?")
        run.user("Yes.")
        assert run.tool_call(
            "refund_order", {"order_id": "A1", "amount": 40, "reason": "broken"}, "c3"
        ).allowed
        assert run.begin("c3") == "run"
    with Guard(policy, store=db) as guard:  # the process died while the refund ran
        run = guard.start_run("r")
        assert run.pending[0].call_id == "c3"
        assert run.resolve("c3", "approve", by="ops@desk").allowed
        run.tool_result("c3", {"refund_id": "R1", "order_id": "A1", "amount": 40})
        assert run.end("I have refunded $40 for order A1.").allowed
    diff = replay(db, policy).runs[0]
    assert diff.tally.n_changed == 0
    assert [n.split(": ", 1)[1] for n in diff.notes] == [
        "c3 was decided again after a restart; not replayed",
        "the recorded approve on c3 was not replayed: under this policy it was decided 'allow'",
    ]


# ---- the report ---------------------------------------------------------------------------------------


def test_json_and_text_report(recorded: Path, tmp_path: Path) -> None:
    strict = Policy.load(policy_file(tmp_path, "strict", ("max = 500", "max = 30")))
    result = replay(recorded, strict)
    data = json.loads(result.to_json())
    assert data["policy"]["name"] == "strict"
    assert data["runs_replayed"] == len(ALL)
    assert data["runs_changed"] == len(result.changed_runs)
    assert data["total"]["newly_blocked"] == result.total.changed["newly_blocked"]
    assert data["total"]["by_kind"]["invalid_args"] == {"newly_blocked": 6}
    example = next(e for e in data["examples"] if e["call_id"] == "c3" and e["run_id"] == "clean_refund")
    assert example == {
        "run_id": "clean_refund",
        "call_id": "c3",
        "tool": "refund_order",
        "stage": "call",
        "seq": example["seq"],
        "old": "allow",
        "new": "block",
        "category": "newly_blocked",
        "kinds": ["invalid_args"],
        "reason": example["reason"],
    }
    per_run = {r["run_id"]: r for r in data["runs"]}
    assert per_run["lookup_loop"]["changed"] == 0
    text = result.to_text()
    assert "newly blocked" in text
    assert "allow -> block" in text
    assert (
        "clean_refund c3 refund_order: allow -> block [invalid_args]: amount=40 is above the maximum 30"
        in text
    )


# ---- streaming, ordering, time --------------------------------------------------------------------------


def test_runs_stream_one_at_a_time(recorded: Path, policy: Policy) -> None:
    events = list(read_events(recorded))
    consumed = 0

    def source() -> Iterator[Event]:
        nonlocal consumed
        for e in events:
            consumed += 1
            yield e

    from headway._replay import iter_replay

    diffs = iter_replay(source(), policy)
    first = next(diffs)
    first_run = [e for e in events if e.run_id == first.run_id]
    assert consumed == len(first_run) + 1  # that run, and the first event of the next
    assert len(list(diffs)) == len(ALL) - 1


def test_interleaved_or_unordered_runs_are_refused(policy: Policy) -> None:
    def ev(run: str, seq: int) -> Event:
        return Event(run, seq, 1.0, "user", {"text": "hello"})

    with pytest.raises(HeadwayError, match="events of run 'a' are not together"):
        replay([ev("a", 1), ev("b", 1), ev("a", 2)], policy)
    with pytest.raises(HeadwayError, match="out of order"):
        replay([ev("a", 2), ev("a", 1)], policy)


def _recent_only(call: ToolCall, view: RunView) -> Finding | None:
    if view.now.year < 2010:
        return Finding("recent_only", "policy_violation", "high", f"no refunds dated {view.now.year}")
    return None


def test_checks_see_the_recorded_time_unless_the_policy_has_a_clock() -> None:
    allow = {"action": "allow", "reason": "", "risk": 0.0, "findings": []}
    ts = datetime(2001, 5, 1, tzinfo=UTC).timestamp()
    events = [
        Event("old", 1, ts, "user", {"text": "refund A1, 40, yes"}),
        Event("old", 2, ts, "tool_call", {"call_id": "c1", "tool": "refund", "args": {}, "decision": allow}),
    ]
    check = checks.check(kind="policy_violation", name="recent_only")(_recent_only)
    tools = [Tool("refund", risk="write", before=[check])]
    replayed = replay(events, Policy(tools=tools))
    (change,) = replayed.runs[0].examples
    assert (change.new, change.reason) == ("block", "no refunds dated 2001")
    clocked = replay(events, Policy(tools=tools, now=datetime(2020, 1, 1, tzinfo=UTC)))
    assert clocked.total.n_changed == 0


# ---- the command line ---------------------------------------------------------------------------------


def test_cli_replay(recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    strict = policy_file(tmp_path, "strict", ("max = 500", "max = 30"))
    code, out, _ = run_cli(capsys, "replay", "--policy", str(strict), "--store", str(recorded))
    assert code == 0
    assert "newly blocked" in out
    assert "clean_refund c3 refund_order: allow -> block" in out
    code, out, _ = run_cli(
        capsys, "--store", str(recorded), "replay", "--policy", str(strict), "--run", "clean_refund", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert [r["run_id"] for r in data["runs"]] == ["clean_refund"]
    # several sources: the same runs twice, once from SQLite and once from a JSONL export
    jsonl = tmp_path / "runs.jsonl"
    export_jsonl(recorded, jsonl)
    code, out, _ = run_cli(
        capsys, "replay", "--policy", str(strict), "--store", str(recorded), "--store", str(jsonl), "--json"
    )
    assert code == 0
    assert json.loads(out)["runs_replayed"] == 2 * len(ALL)


def test_cli_replay_bad_input(recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = policy_file(tmp_path, "same")
    code, _, err = run_cli(
        capsys, "replay", "--policy", str(tmp_path / "nope.toml"), "--store", str(recorded)
    )
    assert (code, err.strip()) == (1, f"headway: no policy file at {tmp_path / 'nope.toml'}")
    broken = tmp_path / "broken.toml"
    broken.write_text("max_repeats = 'many'\n")
    code, _, err = run_cli(capsys, "replay", "--policy", str(broken), "--store", str(recorded))
    assert code == 1
    assert "broken.toml" in err
    assert "max_repeats" in err
    missing = tmp_path / "missing.db"
    code, _, err = run_cli(capsys, "replay", "--policy", str(good), "--store", str(missing))
    assert (code, err.strip()) == (1, f"headway: no trace store or file at {missing}")
    assert not missing.exists()
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"run_id": "r", "seq": 1}\n')
    code, _, err = run_cli(capsys, "replay", "--policy", str(good), "--store", str(bad_jsonl))
    assert code == 1
    assert "line 1" in err
    code, _, err = run_cli(capsys, "replay", "--policy", str(good), "--store", str(recorded), "--run", "nope")
    assert (code, err.strip()) == (1, "headway: no recorded run 'nope' in the given traces")
    code, _, err = run_cli(capsys, "replay", "--store", str(recorded))
    assert code == 2
    assert "--policy" in err
