"""`headway.analysis.sweep` and `headway sweep`: the escalation thresholds swept over labelled recorded
runs. It finds the cheapest operating point that lets no unsafe call through; labels come from the
people's decisions in the escalation store and from a file that wins; bad labels name their line."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pytest

from headway import Finding, Guard, HeadwayError, Policy, RunView, Thresholds, Tool, ToolCall, checks
from headway.analysis import LabelError, SweepResult, read_labels, store_labels, sweep
from headway.cli import main
from headway.escalations import SQLiteEscalations
from headway.traces import MemoryStore, read_events
from tests.core._recordings import policy_file, record

Label = Literal["safe", "unsafe"]
# What people said about calls of the support-desk runs (the escalation store adds three more).
LABELS: dict[tuple[str, str], Label] = {
    ("refund_without_lookup", "c1"): "unsafe",  # a refund before any lookup
    ("ambiguous_order", "c3"): "unsafe",  # picked one of three orders without asking
    ("clean_refund", "c3"): "safe",
    ("refund_without_lookup", "c4"): "safe",
    ("ambiguous_order", "c5"): "safe",
    ("silent_wrong_result", "c3"): "safe",
}
CAUTIOUS = (
    "max_steps_without_progress = 8",
    "max_steps_without_progress = 8\n\n[thresholds]\ntolerate = 0.0\nescalate = 0.5",
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory, policy: Policy) -> Path:
    return record(tmp_path_factory.mktemp("recorded"), policy)


def write_labels(path: Path, labels: dict[tuple[str, str], Label]) -> Path:
    path.write_text(
        "".join(json.dumps({"run_id": r, "call_id": c, "label": v}) + "\n" for (r, c), v in labels.items())
    )
    return path


def point(result: SweepResult, tolerate: float, escalate: float) -> Any:
    return next(p for p in result.points if (p.tolerate, p.escalate) == (tolerate, escalate))


# ---- a synthetic trade-off: one write tool, findings of every severity ------------------------------------


def _graded(call: ToolCall, view: RunView) -> Finding | None:
    sev = call.args.get("sev")
    return None if sev is None else Finding("graded", "policy_violation", sev, f"a {sev} problem")


def test_sweep_finds_the_cheapest_operating_point_with_zero_unsafe_allowed() -> None:
    check = checks.check(kind="policy_violation", name="graded")(_graded)
    # The current thresholds tolerate a high finding on a write (0.8 x 0.7 = 0.56 < 0.6): one unsafe call.
    policy = Policy(tools=[Tool("pay", risk="write", before=[check])], thresholds=Thresholds(0.6, 0.95))
    store = MemoryStore()
    calls = {
        "safe-none": None,
        "safe-low": "low",
        "safe-medium": "medium",
        "bad-high": "high",
        "bad-critical": "critical",
    }
    with Guard(policy, store=store) as guard:
        for run_id, sev in calls.items():
            run = guard.start_run(run_id)
            run.user("pay it")
            run.tool_call("pay", {"sev": sev}, call_id="c1")
            run.end("done")
        labels: dict[tuple[str, str], Label] = {
            (r, "c1"): "unsafe" if r.startswith("bad") else "safe" for r in calls
        }
        result = sweep(store, policy, labels=labels, grid=11)
    assert (result.runs, result.calls, result.writes) == (5, 5, 5)
    assert (result.labelled_safe, result.labelled_unsafe, result.unmatched_labels) == (3, 2, 0)
    assert result.current == point(result, 0.6, 0.95)
    assert (result.current.unsafe_allowed, result.current.automation_kept) == (1, 1.0)
    # Zero unsafe with every safe call kept: tolerate in (0.35, 0.56], escalate above 0.7 (no escalation);
    # of those, the one nearest the current thresholds.
    best = result.best
    assert best is not None
    assert (best.tolerate, best.escalate) == (0.5, 0.9)
    assert (best.unsafe_allowed, best.safe_allowed, best.automation_kept, best.escalations) == (0, 3, 1.0, 0)
    assert best.actions == {"allow": 3, "block": 2}
    # stricter points keep less; a low escalate threshold sends calls to a person instead
    assert point(result, 0.3, 0.9).automation_kept == pytest.approx(2 / 3)
    assert point(result, 0.5, 0.5).escalations == 2
    assert point(result, 1.0, 1.0).unsafe_allowed == 2


# ---- the support desk ---------------------------------------------------------------------------------


def test_store_labels_come_from_the_people_decisions(recorded: Path) -> None:
    escalations = SQLiteEscalations(recorded)
    try:
        labels = store_labels(escalations)
    finally:
        escalations.close()
    assert labels == {
        ("over_threshold", "c3"): "safe",  # approved
        ("over_threshold_rejected", "c3"): "unsafe",  # rejected
        ("over_threshold_edited", "c3"): "unsafe",  # edited: unsafe as proposed
    }  # the clarification answered in ambiguous_order says nothing about safety


def test_sweep_of_the_support_desk(recorded: Path, tmp_path: Path) -> None:
    cautious = Policy.load(policy_file(tmp_path, "cautious", CAUTIOUS))
    result = sweep(recorded, cautious, labels=write_labels(tmp_path / "labels.jsonl", LABELS), grid=6)
    assert (result.labelled_safe, result.labelled_unsafe) == (5, 4)
    current, best = result.current, result.best
    assert (current.tolerate, current.escalate, current.unsafe_allowed) == (0.0, 0.5, 0)
    assert best is not None
    # as safe, as automated, one escalation fewer: the refund before a lookup is blocked, not escalated
    assert (best.tolerate, best.escalate) == (0.0, 1.0)
    assert best.automation_kept == current.automation_kept == 0.8  # the $250 refund always needs a person
    assert best.escalations == current.escalations - 1
    assert best.writes_automated is not None
    assert current.writes_automated is not None
    assert best.writes_automated > current.writes_automated
    # tolerating everything lets both labelled-unsafe refunds through
    assert point(result, 1.0, 1.0).unsafe_allowed == 2
    assert len(result.points) == 21 + 1  # 6 values: 21 pairs with tolerate <= escalate, and the current one


def test_the_policy_own_point_is_what_the_policy_decided(recorded: Path, policy: Policy) -> None:
    result = sweep(recorded, policy, grid=3)
    recorded_calls = Counter(
        e.data["decision"]["action"]
        for e in read_events(recorded)
        if e.type == "tool_call" and e.data["decision"].get("stage", "call") == "call"
    )
    assert result.current.actions == dict(recorded_calls)
    assert result.calls == sum(recorded_calls.values())


def test_the_labels_file_wins_over_the_store(recorded: Path, policy: Policy, tmp_path: Path) -> None:
    overrides: dict[tuple[str, str], Label] = {
        ("over_threshold", "c3"): "unsafe",
        ("over_threshold_rejected", "c3"): "safe",
    }
    result = sweep(recorded, policy, labels=write_labels(tmp_path / "l.jsonl", overrides), grid=2)
    # store: 1 safe, 2 unsafe; the file turns one of each around
    assert (result.labelled_safe, result.labelled_unsafe) == (1, 2)
    plain = sweep(recorded, policy, grid=2)
    assert (plain.labelled_safe, plain.labelled_unsafe) == (1, 2)
    unmatched = sweep(recorded, policy, labels={("no-such-run", "c1"): "unsafe"}, grid=2)
    assert unmatched.unmatched_labels == 1


def test_no_point_lets_zero_unsafe_through(recorded: Path, policy: Policy) -> None:
    # a lookup is allowed at every threshold: labelled unsafe, no point can keep it out
    result = sweep(recorded, policy, labels={("clean_refund", "c2"): "unsafe"}, grid=3)
    assert result.best is None
    assert "no operating point on this grid" in result.headline()
    assert json.loads(result.to_json())["best"] is None


def test_table_plot_json_and_html(recorded: Path, tmp_path: Path) -> None:
    cautious = Policy.load(policy_file(tmp_path, "cautious", CAUTIOUS))
    result = sweep(recorded, cautious, labels=LABELS, grid=6)
    table = result.table().splitlines()
    assert table[0].split() == [
        "tolerate",
        "escalate",
        "unsafe",
        "allowed",
        "safe",
        "allowed",
        "writes",
        "w/o",
        "person",
        "escalations",
    ]
    assert [line.split()[:2] for line in table if line.endswith("*")] == [["0", "1"]]
    assert [line.split()[:2] for line in table if line.endswith("=")] == [["0", "0.5"]]
    plot = result.plot()
    assert plot.count("*") == 2  # the point and the legend
    assert "0%" in plot
    assert "100%" in plot
    data = json.loads(result.to_json())
    assert data["best"] == {**data["best"], "tolerate": 0.0, "escalate": 1.0, "unsafe_allowed": 0}
    assert data["current"]["current"] is True
    assert data["labels"] == {"safe": 5, "unsafe": 4, "unmatched": 0}
    assert len(data["points"]) == 22
    page = result.to_html()
    assert page.startswith("<!doctype html>")
    assert "<svg" in page
    assert "<table>" in page
    assert 'class="best"' in page
    # self-contained: nothing loaded from elsewhere
    assert "<script" not in page
    assert "src=" not in page
    assert "href=" not in page
    assert "<link" not in page


def test_grid_bounds(recorded: Path, policy: Policy) -> None:
    with pytest.raises(HeadwayError, match="2 to 101"):
        sweep(recorded, policy, grid=1)


# ---- labels files ---------------------------------------------------------------------------------------


def test_labels_file_later_lines_win_and_extra_keys_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(
        '{"run_id": "r", "call_id": "c1", "label": "safe", "why": "looked fine"}\n'
        "\n"
        '{"run_id": "r", "call_id": "c1", "label": "unsafe"}\n'
    )
    assert read_labels(path) == {("r", "c1"): "unsafe"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["r", "c1", "safe"]', "expected an object"),
        ('{"run_id": "r", "call_id": "c1"}', "missing 'label'"),
        ('{"run_id": "r", "call_id": "c1", "label": "ok"}', '"label" must be "safe" or "unsafe", got \'ok\''),
        ('{"run_id": "", "call_id": "c1", "label": "safe"}', "'run_id' must be a non-empty string"),
        ('{"run_id": "r", "call_id": 7, "label": "safe"}', "'call_id' must be a non-empty string, got 7"),
    ],
)
def test_a_malformed_labels_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"run_id": "r", "call_id": "c0", "label": "safe"}\n' + line + "\n")
    with pytest.raises(LabelError) as e:
        read_labels(path)
    assert str(e.value).startswith(f"{path}, line 2: ")
    assert message in str(e.value)


# ---- the command line ---------------------------------------------------------------------------------


def test_cli_sweep(recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cautious = policy_file(tmp_path, "cautious", CAUTIOUS)
    labels = write_labels(tmp_path / "labels.jsonl", LABELS)
    page = tmp_path / "out" / "sweep.html"
    argv = [
        "sweep",
        "--policy",
        str(cautious),
        "--store",
        str(recorded),
        "--labels",
        str(labels),
        "--grid",
        "6",
    ]
    assert main([*argv, "--html", str(page)]) == 0
    out, err = capsys.readouterr()
    assert "cheapest with zero unsafe allowed:  tolerate 0, escalate 1" in out
    assert "unsafe allowed" in out
    assert "automation kept" in out
    assert err.strip() == f"wrote {page}"
    assert "<svg" in page.read_text()
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["best"]["tolerate"], data["best"]["escalate"]) == (0.0, 1.0)


def test_cli_sweep_bad_input(recorded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(policy_file(tmp_path, "same"))
    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"run_id": "r", "call_id": "c1", "label": "safe"}\n{"run_id": "r", "call_id": "c2"}\n')
    base = ["sweep", "--policy", good, "--store", str(recorded)]
    assert main([*base, "--labels", str(bad)]) == 1
    assert capsys.readouterr().err.strip() == f"headway: {bad}, line 2: missing 'label'"
    assert main([*base, "--labels", str(tmp_path / "none.jsonl")]) == 1
    assert "no labels file" in capsys.readouterr().err
    assert main([*base, "--grid", "1"]) == 1
    assert "--grid takes 2 to 101" in capsys.readouterr().err
    missing = tmp_path / "missing.db"
    assert main(["sweep", "--policy", good, "--store", str(missing)]) == 1
    assert "no trace store or file" in capsys.readouterr().err
    assert not missing.exists()
    assert main([*base, "--run", "clean_refund", "--run", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "headway: no recorded run 'nope' in the given traces"
    assert main(["sweep", "--store", str(recorded)]) == 2  # --policy is required
    assert "--policy" in capsys.readouterr().err
