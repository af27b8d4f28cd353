"""The six support-desk scenarios through the real Runner reach the decisions the core reaches on the
same scripted turns (and the scenarios' expectations), in plain and streamed runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.openai_support_desk import play
from examples.support_desk import SCENARIOS, Scenario, SupportDesk
from examples.support_desk.core_demo import play as core_play
from headway import Guard, testing


@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_same_decisions_as_core(
    scenario: Scenario, streamed: bool, guard: Guard, tmp_path: Path
) -> None:
    core_desk = SupportDesk(tmp_path / "core.db", faults=scenario.faults)
    sdk_desk = SupportDesk(tmp_path / "sdk.db", faults=scenario.faults)
    want = {k: d.action for k, d in core_play(scenario, guard, core_desk, run_id="core").items()}
    got = {
        k: d.action
        for k, d in (await play(scenario, guard, sdk_desk, run_id="sdk", streamed=streamed)).items()
    }
    testing.assert_conforms(got, want, scenario)  # the shared conformance check (headway.testing)
    assert got == want  # and the adapter saw exactly the steps the core saw
    assert sdk_desk.count("refunds") == core_desk.count("refunds")
    core_desk.close()
    sdk_desk.close()


def test_example_entry_point_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agents import set_trace_processors

    from examples.openai_support_desk.__main__ import main

    try:
        assert main(["--traces", str(tmp_path / "t.db")]) == 0
    finally:
        set_trace_processors([])
    assert "6/6 scenarios decided as expected" in capsys.readouterr().out
