"""Escalation load on PostgreSQL: many runs escalate a payment at once while worker processes poll the
pending list and decide; each run then resumes with the stored decision, claims the ledger and ends.

Two modes: live (the workers decide while runs are still escalating: latency under load) and backlog
(the workers start once every run has escalated: how fast they drain a queue). Each prints decisions/s and
latency created -> decided, and checks that no escalation was lost, duplicated or decided twice.

Run with `python -m bench.escalation_load [--runs 200] [--workers 4]`, which starts a throwaway server
(fsync on) as tests/postgres does, or against a database of yours with `--dsn DSN [--backlog]`. Not a
test: the figures depend on the machine; tests/postgres/test_race.py runs a small version and asserts
only the checks.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier, Event
from typing import Any

from headway import Guard, Policy, Tool
from headway.escalations import EscalationConflict
from headway.postgres import PostgresStore

_POLL = 0.002  # seconds a worker sleeps when nothing is pending
# How often a waiting run looks for its decision: 200 runs polling as fast as the workers would take
# the connections the runs need to escalate (a real deployment would be told, e.g. by a webhook).
_WAIT = 0.02
_TIMEOUT = 120.0  # a run that waits longer than this for its decision fails the benchmark


def pay_policy() -> Policy:
    """One tool that always needs a person's approval."""
    return Policy(tools=[Tool("pay", risk="irreversible", approve_when=lambda call: True)])


@dataclass
class Report:
    runs: int
    workers: int
    seconds: float  # first escalation created (backlog: workers released) -> last decided
    latencies: list[float]  # created -> decided, per escalation
    conflicts: int  # decide() calls that lost the race to another worker
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def _decider(dsn: str, name: str, ready: Barrier, go: Event, stop: Event, out: Any) -> None:
    """A worker process: poll the pending list, decide what it finds, until told to stop and none is left."""
    decided: list[tuple[str, float]] = []
    conflicts = 0
    rng = random.Random(name)
    with PostgresStore(dsn, pool_size=1) as store:
        ready.wait()
        go.wait()
        while True:
            stopping = stop.is_set()  # read before listing: creations before `stop` are all visible
            pending = store.list(status="pending", limit=50)
            if not pending:
                if stopping:
                    break
                time.sleep(_POLL)
                continue
            # Workers take the list in different orders, as independent people would; they still collide.
            rng.shuffle(pending)
            for esc in pending:
                try:
                    done = store.decide(esc.id, "approve", by=name)
                except EscalationConflict:
                    conflicts += 1
                    continue
                assert done.decided_at is not None
                decided.append((done.id, done.decided_at))
    out.put((name, decided, conflicts))


def _agent_run(
    guard: Guard, store: PostgresStore, i: int, escalated: threading.Semaphore, deciding: threading.Event
) -> tuple[str, str]:
    """One run: escalate, wait for a person, resume with the stored decision, pay once, end."""
    try:
        run = guard.start_run(f"run-{i}")
        run.user(f"Please pay invoice {i}, ${10 + i}.")
        d = run.tool_call("pay", {"invoice": i, "amount": 10 + i}, call_id="c1")
    finally:
        escalated.release()  # counted even when it failed, so --backlog never waits for it in vain
    if d.action != "escalate" or d.escalation_id is None:
        raise AssertionError(f"run {i}: expected an escalation with a record, got {d.action}: {d.reason}")
    deciding.wait(_TIMEOUT)  # with --backlog, polling before anyone decides would only slow the others
    deadline = time.monotonic() + _TIMEOUT
    while True:
        esc = store.get(d.escalation_id)
        if esc is not None and not esc.pending:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"run {i}: escalation {d.escalation_id} was never decided")
        time.sleep(_WAIT)
    resumed = run.resolve("c1", "approve", by="resume")  # must agree with what the store holds
    if resumed.action != "allow" or run.begin("c1") != "run":
        raise AssertionError(f"run {i}: resume gave {resumed.action}, or the ledger refused the call")
    run.tool_result("c1", output={"paid": 10 + i})
    run.end(f"Paid invoice {i}.")
    return d.escalation_id, str(esc.decided_by)


def run_load(dsn: str, *, runs: int = 200, workers: int = 4, backlog: bool = False) -> Report:
    """`backlog`: the workers start only once every run has escalated, which measures how fast they drain
    a queue; otherwise they decide while runs are still escalating, which measures latency under load."""
    ctx = mp.get_context("spawn")  # no inherited connections or threads in the workers
    ready, go, stop, out = ctx.Barrier(workers + 1), ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_decider, args=(dsn, f"worker-{n}", ready, go, stop, out)) for n in range(workers)
    ]
    for p in procs:
        p.start()
    results: list[tuple[str, list[tuple[str, float]], int]] = []
    problems: list[str] = []
    escalated, deciding = threading.Semaphore(0), threading.Event()
    store = PostgresStore(dsn, pool_size=16)
    try:
        ready.wait(timeout=60)
        guard = Guard(pay_policy(), store=store)
        go_at = time.time()
        if not backlog:
            go.set()
            deciding.set()
        with ThreadPoolExecutor(max_workers=runs) as pool:
            futures = [pool.submit(_agent_run, guard, store, i, escalated, deciding) for i in range(runs)]
            if backlog:
                for _ in range(runs):
                    escalated.acquire(timeout=_TIMEOUT)
                go_at = time.time()
                go.set()
                deciding.set()
            outcomes: list[tuple[str, str]] = []
            for f in futures:
                try:
                    outcomes.append(f.result())
                except Exception as exc:
                    problems.append(f"{type(exc).__name__}: {exc}")
        stop.set()
        for _ in procs:
            try:
                results.append(out.get(timeout=60))
            except queue.Empty:
                problems.append("a worker never reported")
                break
        problems += _check(store, runs, outcomes, results)
        escalations = {e.id: e for e in store.list(limit=10 * runs + 10)}
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
        store.close()
    latencies = []
    for _, decided, _ in results:
        for eid, at in decided:
            latencies.append(at - escalations[eid].created_at)
    first = go_at if backlog else min((e.created_at for e in escalations.values()), default=go_at)
    last = max((at for _, decided, _ in results for _, at in decided), default=first)
    return Report(runs, workers, last - first, latencies, sum(r[2] for r in results), problems)


def _check(
    store: PostgresStore,
    runs: int,
    outcomes: list[tuple[str, str]],
    results: list[tuple[str, list[tuple[str, float]], int]],
) -> list[str]:
    """No escalation lost, duplicated or decided twice; every run paid exactly once."""
    problems: list[str] = []
    created = store.list(limit=10 * runs + 10)
    ids = {e.id for e in created}
    if len(created) != runs or len(ids) != runs:
        problems.append(f"{len(created)} escalations stored ({len(ids)} distinct) for {runs} runs")
    if pending := store.list(status="pending"):
        problems.append(f"{len(pending)} escalations still pending")
    claims = [(eid, name) for name, decided, _ in results for eid, _ in decided]
    if len(claims) != len({eid for eid, _ in claims}):
        problems.append("an escalation was decided by more than one worker")
    if {eid for eid, _ in claims} != ids:
        problems.append("the escalations workers decided are not the escalations runs created")
    stored_by = {e.id: e.decided_by for e in created}
    if any(stored_by.get(eid) != name for eid, name in claims):
        problems.append("a worker believes it decided an escalation the store says another decided")
    if sorted(outcomes) != sorted((eid, stored_by.get(eid)) for eid, _ in outcomes):
        problems.append("a run resumed with a decision other than the stored one")
    unpaid = [
        i for i in range(runs) if (e := store.ledger(f"run-{i}", "c1")) is None or e.state != "executed"
    ]
    if unpaid:
        problems.append(f"{len(unpaid)} runs have no executed ledger entry")
    return problems


def _print(r: Report, title: str) -> None:
    print(f"{title}: {r.runs} concurrent runs, {r.workers} worker processes")
    print(f"  decisions   {len(r.latencies)} in {r.seconds:.2f} s = {r.throughput:.0f} decisions/s")
    print(
        f"  latency     created -> decided: p50 {r.percentile(50) * 1e3:.1f} ms, "
        f"p99 {r.percentile(99) * 1e3:.1f} ms, max {max(r.latencies, default=0.0) * 1e3:.1f} ms"
    )
    print(f"  lost races  {r.conflicts} decide() calls found the escalation already decided")
    print(f"  checks      {'ok: none lost, duplicated or decided twice' if not r.problems else r.problems}")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.escalation_load", description=__doc__)
    ap.add_argument("--dsn", help="an empty PostgreSQL database to use (one mode only; see --backlog)")
    ap.add_argument("--backlog", action="store_true", help="with --dsn: measure draining a backlog")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--workers", type=int, default=4)
    a = ap.parse_args()
    modes = [a.backlog] if a.dsn else [False, True]
    server = None
    if a.dsn is None:
        from bench._pg import start_server

        server = start_server(fsync=True)
    failed = False
    try:
        for backlog in modes:
            dsn = a.dsn if server is None else server.create_database("backlog" if backlog else "live")
            r = run_load(dsn, runs=a.runs, workers=a.workers, backlog=backlog)
            _print(r, "backlog (workers start once all have escalated)" if backlog else "live")
            failed |= bool(r.problems)
    finally:
        if server is not None:
            server.stop()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
