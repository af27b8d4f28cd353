"""The six support-desk scenarios through the LangGraph agent reach the core's decisions, call by call."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from examples.langgraph_support_desk.__main__ import main
from examples.langgraph_support_desk.agent import POLICY_FILE
from examples.langgraph_support_desk.play import play
from examples.support_desk import POLICY_FILE as SHARED_POLICY_FILE
from examples.support_desk import SCENARIOS, Scenario, SupportDesk
from examples.support_desk.core_demo import play as core_play
from headway import Guard, Policy
from headway.traces import MemoryStore


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_same_decisions_as_the_core(scenario: Scenario, policy: Policy, tmp_path: Path) -> None:
    with Guard(policy, store=MemoryStore()) as guard:
        core_desk = SupportDesk(tmp_path / "core.db", faults=scenario.faults)
        expected = core_play(scenario, guard, core_desk, run_id="core")
        graph_desk = SupportDesk(tmp_path / "graph.db", faults=scenario.faults)
        got = play(scenario, guard, graph_desk, InMemorySaver(), thread_id="graph")

        assert {k: d.action for k, d in got.items()} == {k: d.action for k, d in expected.items()}
        assert {k: d.reason for k, d in got.items()} == {k: d.reason for k, d in expected.items()}
        for key, action in scenario.expect.items():
            assert got[key].action == action, key
        # the side effects match too: the same refunds ran, no more
        assert graph_desk.count("refunds") == core_desk.count("refunds")


def test_policy_beside_the_example_is_the_shared_one() -> None:
    # the policy sits beside the example (a template users copy) as a link to the shared one: one file
    assert Path(POLICY_FILE).resolve() == Path(SHARED_POLICY_FILE).resolve()


def test_example_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--traces", str(tmp_path / "traces.db")]) == 0
    out = capsys.readouterr().out
    assert "6/6 scenarios decided as expected" in out
    assert "ESCALATE  refund_order(order_id='A3', amount=250" in out
    assert "person    approve by maria@support" in out
