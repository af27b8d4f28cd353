"""Many processes, one database: four worker processes race to decide the same escalations and to claim
the same ledger keys, and each escalation is decided once, each key owned once. Then a small version of
the escalation load benchmark (bench/escalation_load.py) with its checks as assertions."""

from __future__ import annotations

import multiprocessing as mp
import random
from collections import Counter
from typing import Any

import pytest

from bench.escalation_load import run_load
from headway.escalations import Escalation, escalation_id
from headway.postgres import PostgresStore
from tests.postgres._race import contend

N = 50
WORKERS = 4


@pytest.mark.slow
def test_four_processes_decide_each_escalation_once_and_claim_each_key_once(dsn: str) -> None:
    with PostgresStore(dsn) as store:
        ids = [
            store.create(
                Escalation(
                    escalation_id(f"run-{i % 7}", f"c{i}", 0),
                    f"run-{i % 7}",
                    f"c{i}",
                    "pay",
                    {},
                    "escalate",
                    "",
                )
            ).id
            for i in range(N)
        ]
    keys = [f"call-{i}" for i in range(N)]
    # Two workers in the same order (they collide on every item), one reversed, one shuffled.
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    orders = [(ids, keys), (ids, keys), (ids[::-1], keys[::-1]), (shuffled, sorted(keys))]
    ctx = mp.get_context("spawn")  # fresh interpreters: nothing inherited from this process
    start, out = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [
        ctx.Process(target=contend, args=(dsn, f"w{n}", o_ids, o_keys, start, out))
        for n, (o_ids, o_keys) in enumerate(orders)
    ]
    for p in procs:
        p.start()
    try:
        results: list[dict[str, Any]] = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    assert [p.exitcode for p in procs] == [0] * WORKERS

    winner = {eid: r["name"] for r in results for eid in r["won"]}
    assert Counter(eid for r in results for eid in r["won"]) == Counter(ids)  # each decided exactly once
    for r in results:
        assert len(r["won"]) + len(r["lost"]) == N  # everyone tried everything
        for entry in r["lost"]:
            eid, named = entry.split(":")
            assert named == winner[eid]  # a loser is told who won
    with PostgresStore(dsn) as store:
        assert {e.id: e.decided_by for e in store.list(limit=1000)} == winner
        assert store.list(status="pending") == []

    assert Counter(k for r in results for k in r["owned"]) == Counter(keys)  # each key owned exactly once
    assert Counter(s for r in results for s in r["seen"]) == {"executing": (WORKERS - 1) * N}


@pytest.mark.slow
@pytest.mark.parametrize("backlog", [False, True], ids=["live", "backlog"])
def test_escalation_load_loses_nothing(dsn: str, backlog: bool) -> None:
    report = run_load(dsn, runs=40, workers=WORKERS, backlog=backlog)
    assert report.problems == []
    assert len(report.latencies) == 40
    assert all(lat >= 0 for lat in report.latencies)
