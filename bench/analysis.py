"""The taxonomy report at scale: events per second over 1,000,000 recorded events, from the SQLite store
and from a JSONL export, on one core; and peak memory at 100k against 1M events (it must stay flat).

Run with `make bench` or `python -m bench.analysis [--events N]`. Not a test: the figures depend on the
machine. The events are written once to a temporary directory: support-desk runs of 20-60 events shaped
like the ones a Guard records (tool calls and results, findings, blocks, escalations, loops, stops).
"""

from __future__ import annotations

import argparse
import gc
import random
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from headway.analysis import Report, report
from headway.traces import Event, SQLiteStore, export_jsonl

TARGET = 200_000  # events per second on one core
DAY = 86_400.0
START = 1_767_225_600.0  # 2026-01-01 UTC: a fixed origin keeps the data, and so the report, reproducible

_ALLOW = {"action": "allow", "reason": "", "risk": 0.0, "findings": []}
# kind: (check, severity, message), as the support desk's checks word them
_FINDINGS: dict[str, tuple[str, str, str]] = {
    "unmet_precondition": (
        "requires_prior",
        "high",
        "refund_order needs a successful lookup_order with order_id='{o}' first; call it before refund_order",
    ),
    "unconfirmed": (
        "confirmed",
        "high",
        "refund_order needs the user's explicit yes: describe the action (order_id='{o}') and wait for it",
    ),
    "ungrounded": ("grounded", "medium", "amount=35 appears in no user message and no tool result"),
    "ambiguous": (
        "unambiguous",
        "high",
        "order_id='{o}' is one of 3 candidates list_orders returned and the user did not say which",
    ),
    "loop": ("repeats", "high", "lookup_order was already called with these arguments 2 times"),
    "stall": ("progress", "medium", "8 tool calls without reaching a new milestone"),
    "silent_tool_error": (
        "consistent_with_args",
        "high",
        "refund_order was called with amount={a} but its result says amount={b}",
    ),
    "ignored_tool_error": (
        "claims",
        "high",
        "the answer says 'I have refunded' but refund_order was flagged",
    ),
    "unsupported_claim": ("claims", "high", "the answer says 'I have refunded' but refund_order failed"),
}


class _Writer:
    """Builds one run's events with rising seq and timestamps."""

    def __init__(self, rng: random.Random, run_id: str, ts: float, order: str, amount: float) -> None:
        self.rng, self.run_id, self.ts, self.seq = rng, run_id, ts, 0
        self.order, self.amount = order, amount
        self.events: list[Event] = []
        self.calls = 0

    def add(self, type_: Any, data: dict[str, Any]) -> None:
        self.seq += 1
        self.ts += self.rng.uniform(0.05, 4.0)
        self.events.append(Event(self.run_id, self.seq, self.ts, type_, data))

    def decision(
        self, action: str, tool: str | None, call_id: str | None, stage: str, kinds: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        findings: list[dict[str, Any]] = []
        for kind in kinds:
            check, severity, message = _FINDINGS[kind]
            text = message.format(o=self.order, a=self.amount, b=self.amount * 10)
            findings.append(
                {"check": check, "kind": kind, "severity": severity, "message": text, "evidence": {}}
            )
        reason = "; ".join(f["message"] for f in findings)
        d: dict[str, Any] = {"action": action, "reason": reason, "risk": 0.8 if findings else 0.0}
        d["findings"] = findings
        if tool is not None:
            d["tool"], d["call_id"] = tool, call_id
        if stage != "call":
            d["stage"] = stage
        return d

    def say(self, text: str) -> None:
        self.add(
            "model", {"text": text, "tool_calls": [], "tokens": 0, "decision": {**_ALLOW, "stage": "model"}}
        )

    def call(
        self,
        tool: str,
        args: dict[str, Any],
        output: Any = None,
        *,
        action: str = "allow",
        kinds: tuple[str, ...] = (),
        milestones: tuple[str, ...] = (),
        result: tuple[str, tuple[str, ...]] = ("allow", ()),
        error: str | None = None,
    ) -> str:
        self.calls += 1
        cid = f"c{self.calls}"
        proposed = [{"name": tool, "args": args, "id": cid}]
        self.add(
            "model",
            {"text": "", "tool_calls": proposed, "tokens": 0, "decision": {**_ALLOW, "stage": "model"}},
        )
        decision = self.decision(action, tool, cid, "call", kinds)
        self.add("tool_call", {"call_id": cid, "tool": tool, "args": args, "decision": decision})
        if action == "allow":
            self.result(cid, tool, output, milestones, result, error)
        return cid

    def human(self, cid: str, action: str, decided: str, **extra: Any) -> None:
        decision = self.decision(decided, "refund_order", cid, "call")
        self.add(
            "human", {"call_id": cid, "action": action, "by": "maria@support", **extra, "decision": decision}
        )

    def result(
        self,
        cid: str,
        tool: str,
        output: Any,
        milestones: tuple[str, ...] = (),
        result: tuple[str, tuple[str, ...]] = ("allow", ()),
        error: str | None = None,
    ) -> None:
        data = {"call_id": cid, "tool": tool, "output": None if error else output, "error": error}
        data["milestones"] = [] if error else list(milestones)
        data["decision"] = self.decision(result[0], tool, cid, "result", result[1])
        self.add("tool_result", data)


def _order(o: str, amount: float) -> dict[str, Any]:
    return {"order_id": o, "user_id": "u1", "item": "desk lamp", "amount": amount, "status": "delivered"}


def _run(rng: random.Random, i: int) -> list[Event]:
    """One run: identify, browse orders (the length), then one of the support desk's endings."""
    o, amount = f"A{rng.randrange(1, 99)}", float(rng.choice((25, 40, 60, 90, 250)))
    w = _Writer(rng, f"run-{i:07d}", START + rng.uniform(0, 14 * DAY), o, amount)
    w.add("start", {"policy": {"name": "support-desk", "fingerprint": "14950b83c7f8cec2"}, "metadata": {}})
    w.add("user", {"text": f"Hi, I'm alice@example.com. My order {o} arrived broken, please refund it."})
    user = {"user_id": "u1", "email": "alice@example.com", "name": "Alice Ng", "orders": [o, "A2", "A3"]}
    w.call("find_user", {"email": "alice@example.com"}, user, milestones=("identified",))
    fate = rng.random()
    if fate < 0.06:  # a refund before any lookup: blocked, then the agent recovers
        w.call(
            "refund_order",
            {"order_id": o, "amount": amount},
            action="block",
            kinds=("unmet_precondition", "unconfirmed"),
        )
    w.call("lookup_order", {"order_id": o}, _order(o, amount), milestones=("order_found",))
    for _ in range(rng.randrange(3, 17)):  # browsing: the bulk of a run's events
        other = f"A{rng.randrange(1, 99)}"
        if rng.random() < 0.6:
            w.call("lookup_order", {"order_id": other}, _order(other, 40.0))
        else:
            w.say("Let me check the shipping status of your other orders as well.")
    if fate < 0.14:  # a lookup loop: told, then stopped; the run never ends
        w.call("lookup_order", {"order_id": o}, action="block", kinds=("loop",))
        w.call("lookup_order", {"order_id": o}, action="stop", kinds=("loop",))
        return w.events
    if fate < 0.18:  # the agent wanders without a milestone until the stall detector stops it
        w.call("list_orders", {"user_id": "u1"}, action="stop", kinds=("stall",))
        return w.events
    if fate < 0.22:  # abandoned: the conversation just stops
        return w.events
    w.say(f"Order {o} is eligible. Shall I refund ${amount:.0f} for order {o}?")
    w.add("user", {"text": "Yes, please go ahead."})
    args = {"order_id": o, "amount": amount, "reason": "arrived broken"}
    refund = {"refund_id": f"R-{i:08x}", "order_id": o, "amount": amount, "status": "refunded"}
    end_kinds: tuple[str, ...] = ()
    if fate < 0.26:  # an assumed amount
        w.call("refund_order", {**args, "amount": 35}, action="block", kinds=("ungrounded",))
    elif fate < 0.30:  # which order? a person answers
        cid = w.call("refund_order", args, action="clarify", kinds=("ambiguous",))
        w.human(cid, "answer", "block", text=o)
    if amount > 100:  # over the approval threshold: a person approves, then it runs
        cid = w.call("refund_order", args, action="escalate")
        w.human(cid, "approve", "allow")
        w.result(cid, "refund_order", refund, ("resolved",))
    elif fate < 0.36:  # a silently wrong result, and a final answer that claims success anyway
        bad = {**refund, "amount": amount * 10}
        w.call("refund_order", args, bad, result=("escalate", ("silent_tool_error",)))
        end_kinds = ("ignored_tool_error",)
    elif fate < 0.39:  # the payment service fails; the answer claims a refund all the same
        w.call("refund_order", args, error="payment service unavailable (503)")
        end_kinds = ("unsupported_claim",)
    else:
        w.call("refund_order", args, refund, milestones=("resolved",))
    answer = f"I have refunded ${amount:.0f} for order {o}. It will show on your card in 3-5 days."
    action = "escalate" if end_kinds else "allow"
    w.add("end", {"final_answer": answer, "decision": w.decision(action, None, None, "end", end_kinds)})
    return w.events


def events(n: int, seed: int = 6) -> Iterator[Event]:
    """`n` events of whole runs (the last run cut short), the same for the same seed."""
    rng = random.Random(seed)
    done = i = 0
    while done < n:
        run = _run(rng, i)[: n - done]
        yield from run
        done += len(run)
        i += 1


def write(directory: Path, n: int) -> tuple[Path, Path]:
    """Record `n` events into a SQLite trace store and export them as JSONL; returns both paths."""
    db, jsonl = directory / f"traces-{n}.db", directory / f"traces-{n}.jsonl"
    with SQLiteStore(db, synchronous="OFF", max_batch=10_000, flush_interval=60.0) as store:
        for e in events(n):
            store.append(e)
    export_jsonl(db, jsonl)
    return db, jsonl


def _timed(path: Path, repeat: int) -> tuple[float, float, Report]:
    """The best of `repeat` reports: CPU seconds (the report is single-threaded, so this is its cost on
    one core; the best run is the one other processes disturbed least), wall seconds, and the report."""
    best: tuple[float, float, Report] | None = None
    for _ in range(repeat):
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        r = report([path])
        took = (time.process_time() - cpu, time.perf_counter() - wall, r)
        best = took if best is None or took[0] < best[0] else best
    assert best is not None
    return best


def _peak(path: Path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        report([path])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000, help="the size the memory peak is compared with")
    ap.add_argument("--repeat", type=int, default=3, help="timed reports per source; the best counts")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="headway-bench-") as tmp:
        t0 = time.perf_counter()
        big, small = write(Path(tmp), args.events), write(Path(tmp), args.small)
        print(f"wrote {args.events:,} + {args.small:,} events in {time.perf_counter() - t0:.1f} s")
        head = ("source", "events", "runs", "cpu s", "wall s", "events/s")
        print("{:<8} {:>10} {:>8} {:>7} {:>7} {:>10}".format(*head), f" one core, best of {args.repeat}")
        for name, path in (("sqlite", big[0]), ("jsonl", big[1])):
            cpu, wall, r = _timed(path, max(1, args.repeat))
            rate = r.events / cpu
            verdict = "ok" if rate >= TARGET else f"BELOW the target of {TARGET:,}"
            print(
                f"{name:<8} {r.events:>10,} {r.runs:>8,} {cpu:>7.2f} {wall:>7.2f} {rate:>10,.0f}  {verdict}"
            )
        print(f"{'source':<8} {f'peak MiB at {args.small:,}':>20} {f'at {args.events:,}':>12}")
        for name, i in (("sqlite", 0), ("jsonl", 1)):
            lo, hi = _peak(small[i]), _peak(big[i])
            flat = "flat" if hi < 1.5 * lo + 2**20 else "GROWS"
            print(f"{name:<8} {lo / 2**20:>20.2f} {hi / 2**20:>12.2f}  {flat}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
