"""The `headway` command line: listing, showing and deciding escalations, in-process and as the installed
console script. The store is the SQLite file conftest points HEADWAY_TRACES at."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from headway import Finding
from headway.cli import main
from headway.escalations import Delivery, Escalation, SQLiteEscalations
from headway.traces import Event, SQLiteStore


def esc(
    id_: str,
    *,
    run: str = "r1",
    tool: str = "refund_order",
    args: dict[str, Any] | None = None,
    kind: Literal["escalate", "clarify"] = "escalate",
    created: float = 1000.0,
    findings: tuple[Finding, ...] = (),
    question: str | None = None,
) -> Escalation:
    return Escalation(
        id=id_,
        run_id=run,
        call_id=f"c-{id_}",
        tool=tool,
        args={"order_id": "A1", "amount": 250} if args is None else args,
        kind=kind,
        reason="refunds over $100 need a person",
        question=question,
        findings=findings,
        created_at=created,
    )


def add(path: Path, *escalations: Escalation) -> None:
    store = SQLiteEscalations(path)
    try:
        for e in escalations:
            store.create(e)
    finally:
        store.close()


def stored(path: Path, id_: str) -> Escalation:
    store = SQLiteEscalations(path)
    try:
        found = store.get(id_)
    finally:
        store.close()
    assert found is not None
    return found


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two pending escalations (one with findings and a delivery), one decided, and run r1's trace."""
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps to 80 columns when not on a terminal
    monkeypatch.delenv("HEADWAY_APPROVER", raising=False)
    path = tmp_path / "traces.db"  # what HEADWAY_TRACES names (tests/conftest.py)
    with SQLiteStore(path) as traces:
        traces.append(Event("r1", 0, 900.0, "start", {"policy": {"name": "support"}}))
        for i in range(1, 20):
            traces.append(Event("r1", i, 900.0 + i, "user", {"text": f"message number {i}"}))
        call = {
            "call_id": "c-esc_a",
            "tool": "refund_order",
            "args": {"order_id": "A1", "amount": 250},
            "decision": {"action": "escalate", "reason": "refunds over $100 need a person"},
        }
        traces.append(Event("r1", 20, 950.0, "tool_call", call), durable=True)
    finding = Finding("bounds", "policy_violation", "high", "amount 250 is over the 100 limit")
    add(
        path,
        esc("esc_a", created=1002.0, findings=(finding,)),
        esc("esc_b", run="r2", tool="cancel_order", created=1001.0),
        esc("esc_old", created=1000.0),
    )
    store = SQLiteEscalations(path)
    store.decide("esc_old", "approve", by="carol")
    store.record_delivery(Delivery("esc_a", "https://hooks.test/inbox", 1, False, "HTTP 503", 1003.0))
    store.close()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_pending_newest_first(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "escalations", "list")
    assert code == 0
    assert out.index("esc_a") < out.index("esc_b")
    assert "esc_old" not in out
    assert "refund_order" in out
    assert "cancel_order" in out


def test_list_filters_and_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "escalations", "list", "--status", "all", "--json")
    assert code == 0
    assert [e["id"] for e in json.loads(out)["escalations"]] == ["esc_a", "esc_b", "esc_old"]
    _, out, _ = run(capsys, "escalations", "list", "--status", "approved", "--json")
    assert [(e["id"], e["decided_by"]) for e in json.loads(out)["escalations"]] == [("esc_old", "carol")]
    _, out, _ = run(capsys, "escalations", "list", "--run", "r2", "--json")
    assert [e["id"] for e in json.loads(out)["escalations"]] == ["esc_b"]
    # --store works before or after the command
    _, out, _ = run(capsys, "escalations", "list", "--limit", "1", "--json", "--store", str(db))
    assert [e["id"] for e in json.loads(out)["escalations"]] == ["esc_a"]
    _, out, _ = run(capsys, "--store", str(db), "escalations", "list", "--status", "rejected")
    assert "no rejected escalations" in out


def test_show_has_findings_deliveries_and_the_recent_trajectory(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "escalations", "show", "esc_a")
    assert code == 0
    assert "amount 250 is over the 100 limit" in out
    assert "https://hooks.test/inbox" in out
    assert "HTTP 503" in out
    assert (
        'refund_order({"order_id": "A1", "amount": 250}) => escalate: refunds over $100 need a person' in out
    )
    assert "message number 19" in out
    assert "message number 5" not in out  # only the last 15 events

    code, out, _ = run(capsys, "escalations", "show", "esc_a", "--json")
    shown = json.loads(out)
    assert shown["escalation"]["findings"][0]["check"] == "bounds"
    assert shown["deliveries"] == [
        {"target": "https://hooks.test/inbox", "attempt": 1, "ok": False, "detail": "HTTP 503", "at": 1003.0}
    ]
    assert [t["seq"] for t in shown["trajectory"]] == list(range(6, 21))
    assert shown["trajectory"][-1]["action"] == "escalate"


def test_approve_with_the_approver_from_the_environment(
    db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWAY_APPROVER", "alice")
    code, out, _ = run(capsys, "escalations", "approve", "esc_a")
    assert code == 0
    assert "esc_a: approved by alice" in out
    assert (stored(db, "esc_a").status, stored(db, "esc_a").decided_by) == ("approved", "alice")


def test_reject_edit_and_answer(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "escalations", "reject", "esc_a", "--message", "too much", "--by", "bob")[0] == 0
    rejected = stored(db, "esc_a")
    assert (rejected.status, rejected.message, rejected.decided_by) == ("rejected", "too much", "bob")

    new_args = '{"order_id": "A1", "amount": 90}'
    assert run(capsys, "escalations", "edit", "esc_b", "--args", new_args, "--by", "bob")[0] == 0
    edited = stored(db, "esc_b")
    assert (edited.status, edited.new_args) == ("edited", {"order_id": "A1", "amount": 90})

    add(db, esc("esc_q", kind="clarify", question="Which order?"))
    assert run(capsys, "escalations", "answer", "esc_q", "--text", "the blue one", "--by", "bob")[0] == 0
    answered = stored(db, "esc_q")
    assert (answered.status, answered.text) == ("answered", "the blue one")


def test_a_second_decision_is_refused_naming_who_decided(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "escalations", "approve", "esc_a", "--by", "alice")[0] == 0
    code, _, err = run(capsys, "escalations", "reject", "esc_a", "--message", "no", "--by", "bob")
    assert code == 1
    assert "already approved by alice at " in err
    assert stored(db, "esc_a").status == "approved"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("{not json", "--args is not valid JSON"),
        ("[1, 2]", "a JSON object"),
        ('{"amount": NaN}', "plain JSON"),
    ],
)
def test_malformed_edit_args_are_refused(
    db: Path, capsys: pytest.CaptureFixture[str], args: str, says: str
) -> None:
    code, _, err = run(capsys, "escalations", "edit", "esc_a", "--args", args, "--by", "bob")
    assert code == 1
    assert says in err
    assert stored(db, "esc_a").pending


def test_unknown_ids_missing_stores_and_usage_errors(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "escalations", "approve", "esc_nope", "--by", "bob")
    assert (code, "no escalation 'esc_nope'" in err) == (1, True)
    code, _, err = run(capsys, "escalations", "show", "esc_nope")
    assert (code, "no escalation 'esc_nope'" in err) == (1, True)
    code, _, err = run(capsys, "escalations", "list", "--store", str(tmp_path / "typo.db"))
    assert (code, "no headway store at" in err) == (1, True)
    assert not (tmp_path / "typo.db").exists()
    code, _, err = run(capsys, "escalations", "approve", "esc_a")  # nobody named
    assert (code, "--by NAME or the HEADWAY_APPROVER" in err) == (2, True)
    assert stored(db, "esc_a").pending
    assert run(capsys)[0] == 2
    assert run(capsys, "escalations", "reject", "esc_a", "--by", "bob")[0] == 2  # --message is required
    assert run(capsys, "escalations", "list", "--status", "maybe")[0] == 2


def test_agent_text_cannot_drive_the_terminal_or_rich_markup(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add(db, esc("esc_x", args={"note": "[bold red]x[/bold red] \x1b[2J\u202egnp.exe"}, created=2000.0))
    code, out, _ = run(capsys, "escalations", "show", "esc_x")
    assert code == 0
    assert "[bold red]x[/bold red]" in out
    # escaped, so they show instead of acting
    assert "\x1b" not in out
    assert "\u202e" not in out
    assert "\\u001b[2J" in out
    assert "\\u202e" in out


def test_the_installed_console_script(db: Path) -> None:
    script = Path(sys.executable).parent / "headway"
    assert script.exists(), "no headway console script: run `.venv/bin/pip install -e packages/core`"
    env = {**os.environ, "HEADWAY_TRACES": str(db)}
    done = subprocess.run(
        [str(script), "escalations", "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [e["id"] for e in json.loads(done.stdout)["escalations"]] == ["esc_a", "esc_b"]
    done = subprocess.run(
        [str(script), "escalations", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "esc_a" in done.stdout
