"""A Guard on PostgreSQL: a run recorded by one Guard (or one process) is restored by another with its
trajectory, its pending escalation (decided from elsewhere) and its ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import conninfo

from headway import Guard, Policy, Tool, checks
from headway.postgres import PostgresStore
from tests.core._helpers import do, one

ROOT = Path(__file__).resolve().parents[2]


def refund_policy() -> Policy:
    return Policy(
        tools=[
            Tool("lookup_order", risk="read"),
            Tool(
                "refund_order",
                risk="irreversible",
                before=[checks.confirmed(), checks.requires_prior("lookup_order", same=["order_id"])],
                approve_when=lambda call: call.args.get("amount", 0) > 100,
            ),
        ],
        max_repeats=2,
    )


def test_a_run_is_restored_by_a_second_guard_and_resumed_with_the_stored_decision(dsn: str) -> None:
    policy = refund_policy()
    store = PostgresStore(dsn)
    g1 = Guard(policy, store=store)
    assert g1.escalations is store  # one database for traces and escalations
    run = g1.start_run("t-1")
    run.user("order A1 and A3 are broken")
    do(run, "lookup_order", {"order_id": "A1"}, "c1", {"order_id": "A1", "amount": 40})
    do(run, "lookup_order", {"order_id": "A1"}, "c2", {"order_id": "A1", "amount": 40})
    do(run, "lookup_order", {"order_id": "A3"}, "c3", {"order_id": "A3", "amount": 250})
    run.model("Shall I refund $250 for order A3?")
    run.user("Yes")
    first = run.tool_call("refund_order", {"order_id": "A3", "amount": 250}, call_id="c4")
    assert first.action == "escalate"
    assert first.escalation_id is not None
    g1.close()

    # A person decides in the inbox, through a store of their own.
    with PostgresStore(dsn) as inbox:
        (waiting,) = inbox.list(status="pending")
        assert (waiting.id, waiting.run_id, waiting.call_id) == (first.escalation_id, "t-1", "c4")
        inbox.decide(waiting.id, "approve", by="maria@support")

    with Guard(policy, store=PostgresStore(dsn)) as g2:
        again = g2.start_run("t-1")
        assert again is not run
        assert again.view.tool_calls == 4
        assert [c.call_id for c in again.pending] == ["c4"]
        assert again.decision("c4") == first  # the recorded decision, and re-delivery returns it
        assert again.tool_call("refund_order", {"order_id": "A3", "amount": 250}, call_id="c4") == first
        loop = again.tool_call("lookup_order", {"order_id": "A1"}, call_id="c5")
        assert loop.action == "block"  # repeats counted across the restart
        assert one(loop, "repeats").kind == "loop"
        ok = again.resolve("c4", "approve", by="whoever resumes")
        assert ok.action == "allow"
        assert ok.reason == "approved by maria@support"  # the store's decision, not the resumer's claim
        assert again.begin("c4") == "run"
        assert again.tool_result("c4", output={"order_id": "A3", "amount": 250}).action == "allow"
        entry = g2.escalations.ledger("t-1", "c4")
        assert entry is not None
        assert (entry.state, entry.output) == ("executed", {"order_id": "A3", "amount": 250})

    with Guard(policy, store=PostgresStore(dsn)) as g3:
        third = g3.start_run("t-1")
        assert third.pending == []
        c4 = third.view.call("c4")
        assert c4 is not None
        assert c4.succeeded


def _url(dsn: str) -> str:
    """The same database as a postgresql:// URL (the socket directory goes in the query string)."""
    p = conninfo.conninfo_to_dict(dsn)
    return f"postgresql://{p['user']}@/{p['dbname']}?host={quote(str(p['host']), safe='')}&port={p['port']}"


CHILD = textwrap.dedent(
    """
    import json, os, sys
    from headway import Guard
    from tests.postgres.test_guard import refund_policy

    guard = Guard(refund_policy(), store=sys.argv[1])
    run = guard.start_run("x-1")
    run.user("order A3 is broken")
    out = {}
    for cid, tool, args, output in [
        ("c1", "lookup_order", {"order_id": "A3"}, {"order_id": "A3", "amount": 250}),
        ("c2", "lookup_order", {"order_id": "A3"}, {"order_id": "A3", "amount": 250}),
    ]:
        d = run.tool_call(tool, args, call_id=cid)
        out[cid] = d.action
        if d.action == "allow":
            run.tool_result(cid, output=output)
    run.model("Shall I refund $250 for order A3?")
    run.user("Yes, go ahead.")
    out["c3"] = run.tool_call("refund_order", {"order_id": "A3", "amount": 250}, call_id="c3").action
    print(json.dumps({"type": type(guard.store).__name__, "actions": out}), flush=True)
    os._exit(0)  # no close, no flush: what the escalation committed is all there is
    """
)


def test_restore_across_a_real_subprocess_from_a_postgresql_url(dsn: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, _url(dsn)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "type": "PostgresStore",
        "actions": {"c1": "allow", "c2": "allow", "c3": "escalate"},
    }
    with psycopg.connect(dsn) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM headway_escalations WHERE status = 'pending'"
        ).fetchone() or (0,)
    assert n == 1

    with Guard(refund_policy(), store=_url(dsn)) as guard:
        assert isinstance(guard.store, PostgresStore)
        run = guard.start_run("x-1")
        assert [c.call_id for c in run.pending] == ["c3"]
        assert run.view.tool_calls == 3
        assert run.resolve("c3", "reject", by="maria@support", message="not this one").action == "block"
        (decided,) = guard.escalations.list(run_id="x-1")
        assert (decided.status, decided.decided_by, decided.message) == (
            "rejected",
            "maria@support",
            "not this one",
        )


def test_a_keyword_dsn_opens_postgresql_not_a_sqlite_file(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headway.postgres import PostgresStore

    monkeypatch.chdir(tmp_path)
    guard = Guard(refund_policy(), store=dsn)  # "host=... dbname=..." as libpq writes it
    try:
        assert isinstance(guard.store, PostgresStore)
        assert guard.escalations is guard.store
    finally:
        guard.close()
    assert list(tmp_path.iterdir()) == []  # no file named after the DSN
