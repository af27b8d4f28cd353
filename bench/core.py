"""Core decision cost: µs per tool_call + tool_result pair (read and write), flatness over a long run,
and memory per 10,000-step run. Run with `make bench` or `python -m bench.core`; prints a table.

Not a test: numbers depend on the machine. The policy is a realistic one (ten checks across the tools),
and the trace store is the embedded SQLite store on a temporary file, so write decisions include their
commit and read events go through the batched path.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench import build
from headway import Decision, Guard, Identity, Milestone, Policy, Run, Tool, checks


def bench_policy() -> Policy:
    return Policy(
        tools=[
            Tool("find_user", risk="read", after=[checks.no_error_payload()]),
            Tool("lookup_order", risk="read", after=[checks.no_error_payload(), checks.not_empty()]),
            Tool(
                "issue_credit",
                risk="irreversible",
                before=[
                    checks.requires_prior("lookup_order", same=["order_id"]),
                    checks.owned("order_id", via="lookup_order"),
                    checks.observed(
                        "lookup_order", match={"order_id": "order_id"}, where={"status": "delivered"}
                    ),
                    checks.grounded("order_id"),
                    checks.confirmed(covering=["order_id"]),
                    checks.bounds("amount", min=0, max=10_000_000),
                ],
                after=[checks.no_error_payload(), checks.consistent_with_args("amount")],
                approve_when=lambda call: call.args["amount"] > 100_000_000,
            ),
        ],
        milestones=[Milestone("identified", after="find_user"), Milestone("found", after="lookup_order")],
        identity=Identity(tool="find_user"),
        max_repeats=3,
    )


def _order(i: int) -> dict[str, Any]:
    return {"order_id": f"O{i}", "user_id": "u1", "item": "lamp", "amount": 40.0, "status": "delivered"}


def _prime(run: Run) -> None:
    run.user("I'm alice@example.com, please credit my order O0")
    run.tool_call("find_user", {"email": "alice@example.com"}, call_id="u")
    run.tool_result("u", output={"user_id": "u1", "email": "alice@example.com"})
    run.tool_call("lookup_order", {"order_id": "O0"}, call_id="p")
    run.tool_result("p", output=_order(0))
    run.model("Order O0 is eligible. Shall I issue a credit for order O0?")
    run.user("yes")


def read_pair(run: Run, i: int) -> int:
    t = time.perf_counter_ns()
    run.tool_call("lookup_order", {"order_id": f"O{i}"}, call_id=f"r{i}")
    run.tool_result(f"r{i}", output=_order(i))
    return time.perf_counter_ns() - t


def write_pair(run: Run, i: int) -> int:
    t = time.perf_counter_ns()
    d = run.tool_call("issue_credit", {"order_id": "O0", "amount": i + 1}, call_id=f"w{i}")
    run.tool_result(f"w{i}", output={"order_id": "O0", "amount": i + 1, "status": "ok"})
    elapsed = time.perf_counter_ns() - t
    if d.action != "allow":
        raise SystemExit(f"benchmark write was not allowed: {d.action} {d.reason}")
    return elapsed


def pct(xs: list[int], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000


def latency(guard: Guard, n: int) -> dict[str, tuple[float, float]]:
    run = guard.start_run("latency")
    _prime(run)
    for i in range(200):  # warm-up: caches, first allocations
        read_pair(run, 10_000_000 + i)
    reads = [read_pair(run, i + 1) for i in range(n)]
    writes = [write_pair(run, i) for i in range(n)]
    run.end()
    return {"read": (pct(reads, 0.5), pct(reads, 0.99)), "write": (pct(writes, 0.5), pct(writes, 0.99))}


def flatness(guard: Guard, steps: int, window: int = 200) -> tuple[float, float]:
    """Median µs of a read+write pair at step ~10 and at step ~`steps` of the same run."""
    early: list[int] = []
    late: list[int] = []
    for rep in range(3):
        run = guard.start_run(f"flat-{rep}")
        _prime(run)
        for i in range(steps):
            if i < window:
                early.append(read_pair(run, i + 1) + write_pair(run, 1_000_000 + i))
            elif i >= steps - window:
                late.append(read_pair(run, i + 1) + write_pair(run, 1_000_000 + i))
            else:
                read_pair(run, i + 1)
        run.end()
    return statistics.median(early) / 1000, statistics.median(late) / 1000


ACT_CLAIM = "I have issued a credit of $40 for order O0."
# A claim of a state rather than an act: backed by an output showing it, which is looked for in the run.
STATE_CLAIM = "A credit was already issued for order O0."


def answer_flatness(
    guard: Guard, steps: int, repeats: int = 50, answer: str = ACT_CLAIM
) -> tuple[float, float]:
    """Best µs of checking a final answer's claims at step ~10 and after `steps` read pairs: a
    conversation answers many times, and each answer must not rescan the run."""
    run = guard.start_run(f"answers-{answer[:12]}")
    _prime(run)
    early, _ = _best_answer(run, answer, repeats)
    for i in range(steps):
        read_pair(run, i + 1)
    late, _ = _best_answer(run, answer, repeats)
    run.end()
    return early, late


def _best_answer(run: Run, answer: str, repeats: int) -> tuple[float, Decision]:
    """Best µs of `repeats` checks of a final answer, and the decision on it."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        d = run.model(answer, final=True)
        times.append(time.perf_counter_ns() - t)
    return min(times) / 1000, d


def written_answer_flatness(guard: Guard, steps: int, repeats: int = 20) -> tuple[float, float]:
    """Best µs of an answer claiming the latest of many writes to one tool ("I have issued a credit of
    $N"), after 10 writes and after `steps`: the claim is backed by the newest call, so the check must
    not walk every earlier one."""

    def best(run: Run, n: int) -> float:
        us, d = _best_answer(run, f"I have issued a credit of ${n} for order O0.", repeats)
        if d.action != "allow":
            raise SystemExit(f"benchmark answer was not allowed: {d.action} {d.reason}")
        return us

    run = guard.start_run("answers-after-writes")
    _prime(run)
    for i in range(10):
        write_pair(run, i)
    early = best(run, 10)
    for i in range(10, steps):
        write_pair(run, i)
    late = best(run, steps)
    run.end()
    return early, late


def memory(guard: Guard, steps: int) -> float:
    """MB held by one run after `steps` read pairs (the run's own state; events are in SQLite)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    run = guard.start_run("memory")
    _prime(run)
    for i in range(steps):
        read_pair(run, i + 1)
    guard.flush()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    run.end()
    return used / 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=5000, help="pairs per latency sample")
    ap.add_argument("--steps", type=int, default=10_000, help="steps of the long run")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        guard = Guard(bench_policy(), store=Path(tmp) / "traces.db")
        lat = latency(guard, a.n)
        early, late = flatness(guard, a.steps)
        answer_early, answer_late = answer_flatness(guard, a.steps)
        state_early, state_late = answer_flatness(guard, a.steps, repeats=5, answer=STATE_CLAIM)
        written_early, written_late = written_answer_flatness(guard, a.steps)
        mem = memory(guard, a.steps)
        guard.close()
    rows = [
        ("read pair p50 / p99 (µs)", f"{lat['read'][0]:.1f} / {lat['read'][1]:.1f}", "p50 <= 15"),
        (
            "write pair incl. commit p50 / p99 (µs)",
            f"{lat['write'][0]:.1f} / {lat['write'][1]:.1f}",
            "p50 <= 60",
        ),
        (
            f"read+write at step 10 vs {a.steps} (µs)",
            f"{early:.1f} vs {late:.1f} (ratio {late / early:.2f})",
            "<= 1.5",
        ),
        (
            f"final answer at step 10 vs {a.steps} (µs)",
            f"{answer_early:.1f} vs {answer_late:.1f} (ratio {answer_late / answer_early:.2f})",
            "<= 1.5",
        ),
        (
            f"state-claim answer at step 10 vs {a.steps} (µs)",
            f"{state_early:.1f} vs {state_late:.1f} (ratio {state_late / state_early:.2f})",
            "<= 1.5",
        ),
        (
            f"answer after 10 vs {a.steps} writes (µs)",
            f"{written_early:.1f} vs {written_late:.1f} (ratio {written_late / written_early:.2f})",
            "<= 1.5",
        ),
        (f"memory per {a.steps}-step run (MB)", f"{mem:.1f}", "<= 20"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"headway build: {build()}")
    print(f"{'measure'.ljust(width)}  {'value':<28}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value:<28}  {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
