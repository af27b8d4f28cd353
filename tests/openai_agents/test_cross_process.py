"""Interrupt in one process, approve and resume in another, replay the approved state in a third: the
refund runs exactly once, and headway's record (restored from its trace store) stays whole."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from examples.support_desk import SupportDesk
from examples.support_desk.policy import load_policy
from headway import Guard

ROOT = Path(__file__).resolve().parents[2]


def _phase(phase: str, where: Path) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    env.pop("OPENAI_API_KEY", None)
    out = subprocess.run(
        [sys.executable, "-m", "tests.openai_agents.xproc_desk", phase, str(where)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    pid, _, rest = out.stdout.strip().splitlines()[-1].partition(" ")
    return int(pid), rest


def test_interrupt_resume_replay_across_processes(tmp_path: Path) -> None:
    p1, pending = _phase("interrupt", tmp_path)
    assert pending == "['c3']"
    p2, final = _phase("approve", tmp_path)
    assert final == "Refunded (approve)."
    p3, final = _phase("replay", tmp_path)
    assert final == "Refunded (replay)."
    assert len({p1, p2, p3, os.getpid()}) == 4
    desk = SupportDesk(tmp_path / "desk.db")
    assert desk.count("refunds") == 1
    desk.close()
    with Guard(load_policy(), store=tmp_path / "traces.db") as guard:
        events = guard.store.events("x1")
        humans = [e.data for e in events if e.type == "human"]
        assert [(h["call_id"], h["action"], h["by"]) for h in humans] == [("c3", "approve", "maria@support")]
        results = [e.data for e in events if e.type == "tool_result" and e.data["call_id"] == "c3"]
        assert len(results) == 1
        assert results[0]["decision"]["action"] == "allow"
