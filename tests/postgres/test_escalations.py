"""PostgresStore as an escalation store, side by side with SQLiteEscalations: idempotent creation, filters,
one decision per escalation, malformed decisions refused, deliveries and the exactly-once ledger."""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from headway import Finding, HeadwayError
from headway.escalations import (
    Delivery,
    Escalation,
    EscalationConflict,
    EscalationStore,
    SQLiteEscalations,
    UnknownEscalation,
    escalation_id,
)
from headway.postgres import PostgresStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EscalationStore]:
    """Both backends: every test here is also a conformance check against SQLite."""
    s: EscalationStore
    if request.param == "postgres":
        s = PostgresStore(request.getfixturevalue("dsn"))
    else:
        s = SQLiteEscalations(tmp_path / "esc.db")
    yield s
    s.close()


def esc(run_id: str = "r1", call_id: str = "c1", created_at: float = 100.0, **kw: Any) -> Escalation:
    return Escalation(
        escalation_id(run_id, call_id, 0),
        run_id,
        call_id,
        kw.pop("tool", "refund_order"),
        kw.pop("args", {"order_id": "A3", "amount": 250}),
        kw.pop("kind", "escalate"),
        kw.pop("reason", "refund_order needs approval"),
        created_at=created_at,
        **kw,
    )


def test_create_is_idempotent_and_round_trips_every_field(store: EscalationStore) -> None:
    first = esc(
        args={
            "order_id": "A3",
            "note": "naïve ☃ \U0001f600",
            "nested": {"n": [1, 2.5, None]},
            "nan": math.nan,
        },
        question="Refund $250?",
        findings=(
            Finding("bounds", "policy_violation", "high", "amount over 100", {"amount": 250}, "escalate"),
        ),
        metadata={"unknown_outcome": True},
        created_at=1700000000.123456,
    )
    stored = store.create(first)
    assert stored.args["nan"] == "nan"  # what JSON cannot hold is kept as its repr, as SQLite does
    assert stored == Escalation.from_dict({**first.to_dict(), "args": {**first.args, "nan": "nan"}})
    assert stored.created_at == first.created_at  # exact: Run tells "new" from "re-created" by it
    again = store.create(esc(reason="a replay says something else", created_at=200.0))
    assert again == stored
    assert store.get(first.id) == stored
    assert store.get("esc_missing") is None


def test_list_is_newest_first_and_filters(store: EscalationStore) -> None:
    for i, (run_id, t) in enumerate([("a", 1.0), ("b", 3.0), ("a", 2.0), ("b", 4.0)]):
        store.create(esc(run_id, f"c{i}", created_at=t))
    assert [e.created_at for e in store.list()] == [4.0, 3.0, 2.0, 1.0]
    assert [e.created_at for e in store.list(run_id="a")] == [2.0, 1.0]
    assert [e.created_at for e in store.list(limit=2)] == [4.0, 3.0]
    assert store.list(limit=-1) == []
    store.decide(escalation_id("b", "c1", 0), "approve", by="maria")
    assert [e.created_at for e in store.list(status="pending")] == [4.0, 2.0, 1.0]
    assert [e.run_id for e in store.list(status="approved")] == ["b"]
    assert store.list(status="approved", run_id="a") == []
    with pytest.raises(HeadwayError, match="status must be one of"):
        store.list(status="done")  # type: ignore[arg-type]


def test_decide_once_then_conflict(store: EscalationStore) -> None:
    e = store.create(esc())
    out = store.decide(e.id, "approve", by="  maria@support  ")
    assert (out.status, out.decided_by, out.action) == ("approved", "maria@support", "approve")
    assert out.decided_at is not None
    assert store.get(e.id) == out
    with pytest.raises(EscalationConflict, match="already approved by maria@support") as info:
        store.decide(e.id, "reject", by="bob", message="no")
    assert info.value.current == out
    with pytest.raises(EscalationConflict):
        store.decide(e.id, "approve", by="maria@support")  # the same decision again is a conflict too
    with pytest.raises(UnknownEscalation, match="esc_nope"):
        store.decide("esc_nope", "approve", by="maria")
    with pytest.raises(KeyError):
        store.decide("esc_nope", "approve", by="maria")


def test_each_action_keeps_what_the_person_supplied(store: EscalationStore) -> None:
    ids = [store.create(esc(call_id=f"c{i}")).id for i in range(3)]
    rejected = store.decide(ids[0], "reject", by="bob", message="too much")
    edited = store.decide(ids[1], "edit", by="bob", args={"order_id": "A3", "amount": 100})
    answered = store.decide(ids[2], "answer", by="alice", text="the desk, A3")
    assert (rejected.status, rejected.message) == ("rejected", "too much")
    assert (edited.status, edited.new_args) == ("edited", {"order_id": "A3", "amount": 100})
    assert (answered.status, answered.text) == ("answered", "the desk, A3")
    assert edited.resolution() == {"action": "edit", "by": "bob", "args": {"order_id": "A3", "amount": 100}}
    assert [store.get(i) for i in ids] == [rejected, edited, answered]


@pytest.mark.parametrize(
    ("action", "kw", "match"),
    [
        ("maybe", {}, "action must be one of"),
        ("approve", {"by": "  "}, "`by`"),
        ("approve", {"by": "x" * 201}, "longer than 200"),
        ("edit", {}, "`args`"),
        ("edit", {"args": {"amount": math.nan}}, "plain JSON"),
        ("approve", {"args": {"amount": 1}}, "belong to an edit"),
        ("answer", {}, "needs the user's `text`"),
        ("reject", {"message": "m" * 5000}, "at most"),
    ],
)
def test_malformed_decisions_are_refused_and_change_nothing(
    store: EscalationStore, action: Any, kw: dict[str, Any], match: str
) -> None:
    e = store.create(esc())
    with pytest.raises(HeadwayError, match=match):
        store.decide(e.id, action, **{"by": "maria", **kw})
    assert store.get(e.id) == e


def test_deliveries_are_recorded_in_order(store: EscalationStore) -> None:
    e = store.create(esc())
    store.record_delivery(Delivery(e.id, "https://hooks.example/a", 2, True, "200 OK", 11.0))
    store.record_delivery(Delivery(e.id, "https://hooks.example/a", 1, False, "timeout " + "x" * 3000, 10.0))
    got = store.deliveries(e.id)
    assert [(d.attempt, d.ok) for d in got] == [(1, False), (2, True)]
    assert len(got[0].detail) == 2000
    assert got[1] == Delivery(e.id, "https://hooks.example/a", 2, True, "200 OK", 11.0)
    assert store.deliveries("esc_other") == []


def test_ledger_begin_finish_release(store: EscalationStore) -> None:
    assert store.ledger("r", "c1") is None
    assert store.begin("r", "c1").owner
    second = store.begin("r", "c1")
    assert not second.owner
    assert second.entry is not None
    assert (second.entry.state, second.entry.output) == ("executing", None)
    store.release("r", "c1")  # a person checked the unknown outcome: the call may be claimed afresh
    assert store.ledger("r", "c1") is None
    assert store.begin("r", "c1").owner
    output = {"refund_id": "R-1", "amount": 250.0, "note": "☃", "odd": math.inf}
    store.finish("r", "c1", output, None)
    done = store.begin("r", "c1")
    assert not done.owner
    assert done.entry is not None
    assert (done.entry.state, done.entry.output, done.entry.error) == (
        "executed",
        {"refund_id": "R-1", "amount": 250.0, "note": "☃", "odd": "inf"},
        None,
    )
    store.release("r", "c1")  # an executed call is never forgotten
    assert store.ledger("r", "c1") == done.entry
    store.finish("r", "c2", None, "HTTP 500")  # finish without begin records the result all the same
    entry = store.ledger("r", "c2")
    assert entry is not None
    assert (entry.state, entry.output, entry.error) == ("executed", None, "HTTP 500")
    assert store.ledger("other-run", "c1") is None


def _decide_and_close(store: PostgresStore, eid: str) -> None:
    store.decide(eid, "approve", by="child")
    store.close()  # closes what the child opened; must not end the parent's sessions
    gc.collect()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_store_inherited_through_fork_leaves_the_parents_connections_alone(dsn: str) -> None:
    with PostgresStore(dsn, pool_size=1) as store:
        e = store.create(esc())  # the parent now holds an idle connection the child inherits
        child = mp.get_context("fork").Process(target=_decide_and_close, args=(store, e.id))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 0
        got = store.get(e.id)  # on the parent's same connection, still alive
        assert got is not None
        assert (got.status, got.decided_by) == ("approved", "child")
