"""Crash tests with real processes: a LangGraph agent on SQLite checkpoints is killed with SIGKILL at
each point of the escalation path, restarted and resumed. Every side effect (counted in the desk's own
database) happens exactly once or is escalated as unknown; no escalation is lost or duplicated."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from examples.support_desk import SupportDesk
from headway.escalations import Escalation, SQLiteEscalations

ROOT = Path(__file__).resolve().parents[2]
RUN = "thread-c"


def _proc(mode: str, where: Path, crash_at: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.langgraph._crash", mode, str(where), *([crash_at] if crash_at else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ok(mode: str, where: Path) -> Any:
    proc = _proc(mode, where)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _killed(mode: str, where: Path, crash_at: str) -> None:
    proc = _proc(mode, where, crash_at)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _refunds(where: Path) -> int:
    desk = SupportDesk(where / "desk.db")
    try:
        return desk.count("refunds")
    finally:
        desk.close()


def _escalations(where: Path) -> list[Escalation]:
    store = SQLiteEscalations(where / "traces.db")
    try:
        return sorted(store.list(run_id=RUN), key=lambda e: e.created_at)
    finally:
        store.close()


def _decide(where: Path, escalation_id: str, action: Any, **kw: Any) -> None:
    store = SQLiteEscalations(where / "traces.db")
    try:
        store.decide(escalation_id, action, by="maria@support", **kw)
    finally:
        store.close()


def _paused(where: Path) -> str:
    paused = _ok("start", where)["paused"]
    assert [p["call_id"] for p in paused] == ["c4"]
    return str(paused[0]["escalation_id"])


def test_killed_before_the_escalation_record_is_stored(tmp_path: Path) -> None:
    _killed("start", tmp_path, "filing")
    assert _escalations(tmp_path) == []
    paused = _ok("continue", tmp_path)["paused"]  # the restart files the record the crash lost
    [esc] = _escalations(tmp_path)
    assert [p["escalation_id"] for p in paused] == [esc.id]
    _decide(tmp_path, esc.id, "approve")
    assert _ok("resume", tmp_path)["last"] == "Order A3 is refunded."
    assert _refunds(tmp_path) == 1


def test_killed_right_after_the_escalation_is_created(tmp_path: Path) -> None:
    _killed("start", tmp_path, "escalated")
    [esc] = _escalations(tmp_path)  # on disk before anyone was told
    assert esc.pending
    paused = _ok("continue", tmp_path)["paused"]
    assert [p["escalation_id"] for p in paused] == [esc.id]  # the same record, not a second one
    assert len(_escalations(tmp_path)) == 1
    _decide(tmp_path, esc.id, "approve")
    assert _ok("resume", tmp_path)["last"] == "Order A3 is refunded."
    assert _refunds(tmp_path) == 1


def test_killed_after_the_decision_before_the_call_starts(tmp_path: Path) -> None:
    first = _paused(tmp_path)
    _decide(tmp_path, first, "approve")
    _killed("resume", tmp_path, "decided")
    assert _refunds(tmp_path) == 0
    # Approved, no result: from its records headway cannot tell "not started" from "died mid-call",
    # so a person is asked again rather than risking a second refund.
    waiting = _proc("resume", tmp_path)
    assert waiting.returncode != 0
    assert "still waiting for a person's decision" in waiting.stderr
    [old, new] = _escalations(tmp_path)
    assert (old.id, old.status) == (first, "approved")
    assert (new.status, dict(new.metadata)) == ("pending", {"unknown_outcome": True})
    _decide(tmp_path, new.id, "approve")  # she checked the desk: no refund went out
    assert _ok("resume", tmp_path)["last"] == "Order A3 is refunded."
    assert _refunds(tmp_path) == 1


def test_killed_while_the_tool_runs(tmp_path: Path) -> None:
    _decide(tmp_path, _paused(tmp_path), "approve")
    _killed("resume", tmp_path, "running")
    assert _refunds(tmp_path) == 1  # the side effect happened; its result was never recorded
    assert _proc("resume", tmp_path).returncode != 0  # unknown outcome: a person must look first
    unknown = _escalations(tmp_path)[-1]
    assert unknown.pending
    assert "may already have happened" in unknown.reason
    _decide(tmp_path, unknown.id, "reject", message="It went through: A3 is already refunded.")
    _ok("resume", tmp_path)
    assert _refunds(tmp_path) == 1


def test_killed_after_the_call_ran_before_the_checkpoint(tmp_path: Path) -> None:
    _decide(tmp_path, _paused(tmp_path), "approve")
    _killed("resume", tmp_path, "ran")
    assert _refunds(tmp_path) == 1
    # LangGraph runs the tool node again; the ledger holds the result, which is handed back.
    assert _ok("resume", tmp_path)["last"] == "Order A3 is refunded."
    assert _refunds(tmp_path) == 1
    assert [e.status for e in _escalations(tmp_path)] == ["approved"]
