"""Regression tests from recorded runs: `headway export-test` end to end (the written file fails under the
weak policy the run was recorded with and passes under one that catches the failure, in a real pytest
subprocess), the failure signals it asserts on, replay semantics, `assert_decisions`, and bad input."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from headway import Decision, Guard, HeadwayError, Policy, Tool, checks
from headway.cli import main
from headway.testing import (
    NOT_ALLOW,
    assert_decisions,
    export_test,
    failures,
    load_policy,
    replay,
    steps_of,
)
from headway.traces import Event, SQLiteStore, export_jsonl

ROOT = Path(__file__).resolve().parents[2]
# Refunds need a lookup first. The weak policy tolerates findings up to high severity on an irreversible
# tool (risk 0.8 < 0.9), so a refund without a lookup is allowed, with the finding recorded.
TOOLS = """
[[tools]]
name = "lookup_order"
risk = "read"

[[tools]]
name = "refund_order"
risk = "irreversible"
before = [{ check = "requires_prior", tools = "lookup_order", same = ["order_id"] }]
"""
WEAK = 'name = "weak"\n\n[thresholds]\ntolerate = 0.9\nescalate = 1.0\n' + TOOLS
STRICT = 'name = "strict"\n' + TOOLS
# What the payment service echoed back: text an emitted Python literal must survive (quotes, backslash,
# newline, a terminal escape, a bidi override, wide characters).
ECHO = "refund \"A1\" done \\ ok\nnext line \x1b[31m red \u202e évité 日本語 'single'"


@pytest.fixture
def desk(tmp_path: Path) -> Path:
    """The two policy files, and run 'refund-1' recorded under the weak one: a refund without a lookup."""
    (tmp_path / "weak.toml").write_text(WEAK)
    (tmp_path / "strict.toml").write_text(STRICT)
    with Guard(Policy.load(tmp_path / "weak.toml"), store=tmp_path / "traces.db") as guard:
        run = guard.start_run("refund-1")
        run.user("Please refund order A1, $40, it arrived broken.")
        run.model("Refunding order A1 now.")
        assert run.tool_call("refund_order", {"order_id": "A1", "amount": 40}, call_id="c1").action == "allow"
        run.tool_result("c1", {"refunded": 40, "echo": ECHO, "ratio": 1e-7, "big": 10**20})
        run.end("I have refunded $40 for order A1.")
    return tmp_path


def pytest_file(path: Path) -> subprocess.CompletedProcess[str]:
    """Run one test file with pytest in a fresh interpreter, from its own directory (no repo config)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_exported_test_fails_under_the_weak_policy_and_passes_once_the_policy_catches_it(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = desk / "tests" / "test_regression_refund_1.py"
    store = ["--store", str(desk / "traces.db")]
    assert main(["export-test", "refund-1", *store, "--policy", str(desk / "weak.toml"), "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}: replays run 'refund-1'" in said
    assert "asserts c1 not allow" in said
    assert "it fails under this policy (until the policy catches the failure)" in said
    source = out.read_text(encoding="utf-8")

    # Readable: a docstring that names the run and what it asserts; the policy relative to the file.
    doc = ast.get_docstring(ast.parse(source)) or ""
    assert doc.startswith("Regression test for run 'refund-1', exported by `headway export-test`.")
    assert "- c1 (refund_order) must not be allowed; recorded allow despite unmet_precondition (high)" in doc
    assert 'POLICY = "../weak.toml"' in source
    # It imports headway and nothing else, and ruff (this repo's config) has nothing to say about it.
    imports = {
        n.module if isinstance(n, ast.ImportFrom) else a.name
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imports == {"headway.testing"}
    config = ["--config", str(ROOT / "pyproject.toml"), "--no-cache"]
    for ruff in (["check", *config, str(out)], ["format", "--check", *config, str(out)]):
        done = subprocess.run([sys.executable, "-m", "ruff", *ruff], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    # The data is the recorded run, JSON-safe, odd text included.
    namespace: dict[str, Any] = {"__file__": str(out)}
    exec(compile(source, str(out), "exec"), namespace)
    with SQLiteStore(desk / "traces.db") as traces:
        assert namespace["TRAJECTORY"] == steps_of(traces.events("refund-1"))
    assert namespace["TRAJECTORY"][3]["output"]["echo"] == ECHO
    assert namespace["EXPECT"] == {"c1": NOT_ALLOW}

    weak = pytest_file(out)
    assert weak.returncode == 1, weak.stdout + weak.stderr
    assert "c1 (refund_order): expected not allow, got allow: tolerated: refund_order needs" in weak.stdout
    assert "the policy still lets through what went wrong in the recorded run" in weak.stdout

    argv = ["export-test", "refund-1", *store, "--policy", str(desk / "strict.toml"), "-o", str(out)]
    assert main(argv) == 1  # the file exists
    assert "exists; pass --force to overwrite it" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert "it passes under this policy" in capsys.readouterr().out
    strict = pytest_file(out)
    assert strict.returncode == 0, strict.stdout + strict.stderr
    assert "1 passed" in strict.stdout


def test_unknown_runs_and_stores_exit_1_with_a_clear_message(
    desk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = ["--policy", str(desk / "strict.toml"), "-o", str(desk / "t.py")]
    assert main(["export-test", "nope", "--store", str(desk / "traces.db"), *policy]) == 1
    err = capsys.readouterr().err
    assert err == f"headway: no run 'nope' in {desk / 'traces.db'} (its runs: 'refund-1')\n"
    assert main(["export-test", "refund-1", "--store", str(desk / "none.db"), *policy]) == 1
    assert "no trace store or file at" in capsys.readouterr().err
    assert not (desk / "t.py").exists()
    # The default store is $HEADWAY_TRACES (tests/conftest.py points it at tmp_path/traces.db).
    assert (
        main(["export-test", "refund-1", "--policy", str(desk / "nothing.toml"), "-o", str(desk / "t.py")])
        == 1
    )
    assert "no policy file at" in capsys.readouterr().err


def test_a_clean_run_needs_pins_and_pins_are_checked(desk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Guard(Policy.load(desk / "strict.toml"), store=desk / "traces.db") as guard:
        run = guard.start_run("clean")
        run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")
        run.tool_result("c1", {"status": "delivered"})
        run.end("Order A1 was delivered.")
    base = ["export-test", "clean", "--store", str(desk / "traces.db"), "--policy", str(desk / "strict.toml")]
    out = desk / "t.py"
    assert main([*base, "-o", str(out)]) == 1
    assert "shows no failure" in capsys.readouterr().err
    for pin, message in (
        ("c1", "write STEP=ACTION"),
        ("c1=maybe", "unknown expectation 'maybe'"),
        ("c9=block", "the run has no step 'c9' (its steps: c1, c1/result, end)"),
    ):
        assert main([*base, "-o", str(out), "--expect", pin]) == 1
        assert message in capsys.readouterr().err
    assert not out.exists()
    assert main([*base, "-o", str(out), "--expect", "c1=allow", "--expect", "end=Not-Allow|allow"]) == 0
    assert "it passes under this policy" in capsys.readouterr().out
    source = out.read_text(encoding="utf-8")
    assert 'EXPECT = {"c1": "allow", "end": "not allow|allow"}' in source
    assert "- c1 (lookup_order) must be allow (pinned)" in source


def test_a_policy_by_import_path_and_a_jsonl_store(desk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export_jsonl(desk / "traces.db", desk / "runs.jsonl")
    out = desk / "t.py"
    spec = "examples.support_desk.policy:load_policy"
    assert (
        main(
            ["export-test", "refund-1", "--store", str(desk / "runs.jsonl"), "--policy", spec, "-o", str(out)]
        )
        == 0
    )
    assert f'POLICY = "{spec}"' in out.read_text(encoding="utf-8")
    # The support desk's policy blocks the unconfirmed refund without a lookup: the test passes there.
    assert "it passes under this policy" in capsys.readouterr().out


# ---- what is asserted, and how a replay decides -------------------------------------------------------


def reviewed_run(store_path: Path) -> list[Event]:
    """A run with every failure signal: a flagged result, a refund a person rejected, an unsupported claim."""
    policy = Policy(
        tools=[
            Tool("lookup_order", risk="read", after=[checks.no_error_payload()]),
            Tool("refund_order", risk="irreversible", approve_when=lambda c: c.args["amount"] > 100),
        ]
    )
    with Guard(policy, store=store_path) as guard:
        run = guard.start_run("reviewed")
        run.user("Refund order A1 please")
        run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c1")
        run.tool_result("c1", {"error": "order service unavailable"})
        run.tool_call("refund_order", {"order_id": "A1", "amount": 250}, call_id="c2")
        run.resolve("c2", "reject", by="maria", message="not without a lookup")
        run.end("I have refunded $250 for order A1.")
        return guard.store.events("reviewed")


def test_failures_are_flagged_results_people_saying_no_and_decisions_that_were_not_allow(
    tmp_path: Path,
) -> None:
    events = reviewed_run(tmp_path / "t.db")
    found = failures(events)
    assert list(found) == ["c1/result", "c2", "end"]
    assert found["c1/result"].startswith("recorded block: ")
    assert found["c2"].startswith("recorded escalate: refund_order needs a person's approval")
    assert found["c2"].endswith("; maria rejected it")
    assert found["end"].startswith("recorded ")


def test_replay_under_the_same_policy_gives_the_recorded_decisions(tmp_path: Path) -> None:
    events = reviewed_run(tmp_path / "t.db")
    policy = Policy(
        tools=[
            Tool("lookup_order", risk="read", after=[checks.no_error_payload()]),
            Tool("refund_order", risk="irreversible", approve_when=lambda c: c.args["amount"] > 100),
        ]
    )
    got = replay(policy, events)
    recorded = {
        "c1": "allow",
        "c1/result": "block",
        "c2": "escalate",
        "c2/human": "block",
        "end": events[-1].data["decision"]["action"],
    }
    assert {k: d.action for k, d in got.items()} == recorded
    assert_decisions({**dict.fromkeys(failures(events), NOT_ALLOW)}, got)
    # The steps a regression file embeds replay the same way.
    assert {k: d.action for k, d in replay(policy, steps_of(events)).items()} == recorded


def test_a_call_not_allowed_now_gets_no_result_and_not_allow_holds_where_it_was_never_reached(
    desk: Path,
) -> None:
    with SQLiteStore(desk / "traces.db") as traces:
        events = traces.events("refund-1")
    got = replay(desk / "strict.toml", events)
    assert {k: d.action for k, d in got.items()} == {"model#1": "allow", "c1": "block", "end": "block"}
    assert_decisions({"c1": "block|escalate", "c1/result": NOT_ALLOW}, got)
    with pytest.raises(AssertionError) as e:
        assert_decisions({"c1/result": "allow", "c1": "stop", "end": "block"}, got)
    assert str(e.value).splitlines() == [
        "2 of 3 steps decided otherwise than expected:",
        "  c1/result: expected allow, but the replay never reached this step",
        "  c1 (refund_order): expected stop, got block: refund_order needs a successful lookup_order with "
        "order_id='A1' first; call it before refund_order",
    ]
    with pytest.raises(ValueError, match="unknown expectation 'maybe'"):
        assert_decisions({"c1": "maybe"}, got)
    assert_decisions({"c1": "block"}, {"c1": "block"})  # plain actions work too
    assert_decisions({"c1": "not allow"}, {"c1": Decision.stop("budget")})


def test_a_stop_ends_the_replay(tmp_path: Path) -> None:
    policy = Policy(tools=[Tool("lookup_order", risk="read")], max_repeats=1, loop_stop_after=1)
    events: list[dict[str, Any]] = [
        {"call": "lookup_order", "id": f"c{i}", "args": {"order_id": "A1"}} for i in range(6)
    ]
    got = replay(policy, [*events, {"end": "done"}])
    assert list(got)[-1] != "end"
    assert got[list(got)[-1]].action == "stop"


def test_export_test_returns_source_and_policies_load_by_path_or_import_path(desk: Path) -> None:
    with SQLiteStore(desk / "traces.db") as traces:
        events = traces.events("refund-1")
    source = export_test(events, "policies/strict.toml", expect={"end": "allow"})
    assert "def test_regression_refund_1() -> None:" in source
    assert 'EXPECT = {"c1": "not allow", "end": "allow"}' in source
    assert load_policy("strict.toml", relative_to=desk / "t.py").name == "strict"
    assert load_policy("strict.toml", relative_to=desk).name == "strict"
    assert load_policy("examples.support_desk.policy:load_policy").name == "support-desk"
    with pytest.raises(HeadwayError, match="cannot import 'no_such_module'"):
        load_policy("no_such_module:policy")
    with pytest.raises(HeadwayError, match="has no 'nope'"):
        load_policy("examples.support_desk.policy:nope")
    with pytest.raises(HeadwayError, match="is a Run, not a Policy"):
        load_policy("tests.core._helpers:make_run")
    with pytest.raises(HeadwayError, match="no policy file at"):
        load_policy(desk / "missing.toml")
