"""Property tests: bad input never raises into the agent, and the trace store keeps every event.

Arbitrary tool names, arguments (any JSON, JSON text good and bad, bytes, objects, NaN, ~1 MB strings,
~500-level nesting), outputs, errors, call ids and texts go through the support-desk policy; every call
must return a Decision with a valid action, and every event must be in the store afterwards.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from examples.support_desk import POLICY_FILE, TOOL_SPECS
from headway import Decision, Guard, Policy, Run
from headway._types import ACTIONS, KINDS, SEVERITIES
from headway.traces import MemoryStore, SQLiteStore, TraceStore

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


def _nested(depth: int) -> Any:
    v: Any = "bottom"
    for i in range(depth):
        v = {"k": v, "i": i} if i % 2 else [v]
    return v


class Model(BaseModel):
    order_id: str
    amount: float


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class BrokenDump:
    def model_dump(self, **kw: Any) -> Any:
        raise ValueError("dump exploded")


HUGE = "x" * 1_000_000
DEEP = _nested(500)
NASTY: list[Any] = [
    HUGE,
    {"order_id": HUGE, "amount": HUGE},
    {"order_id": "A1", "amount": float("nan")},
    {"amount": float("inf"), "x": -float("inf")},
    DEEP,
    {"deep": DEEP},
    json.dumps({"deep": _nested(400)}),
    "[" * 5000,
    '{"order_id": "A1", "amount": 40',
    '{"amount": NaN}',
    "[1, 2, 3]",
    "null",
    '"a string"',
    b'{"order_id": "A1"}',
    b"\xff\xfe\x00garbage",
    object(),
    BrokenDump(),
    Model(order_id="A1", amount=40),
    {1: "int key", None: "none key", (1, 2): "tuple key"},
    {"s": {1, 2, 3}, "d": Decimal("1.5"), "t": datetime(2026, 1, 1), "b": b"bytes"},
    ["not", "a", "dict"],
    42,
    -0.0,
    True,
    "",
    "   ",
    "\x00\ud800 lone surrogate",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)
desk_args = st.fixed_dictionaries(
    {},
    optional={
        "order_id": st.sampled_from(["A1", "A2", "A3", "B1", "a1 ", "A10"]) | st.text(max_size=8),
        "amount": st.sampled_from([40, 25.0, "$40.00", 250, 501, -1, 0]) | scalars,
        "email": st.sampled_from(["alice@example.com", "bob@example.com"]) | st.text(max_size=12),
        "user_id": st.sampled_from(["u1", "u2"]),
        "reason": st.text(max_size=20),
    },
)
args_st = st.one_of(
    desk_args,
    json_like,
    desk_args.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=40),
    st.sampled_from(NASTY),
)
tool_names = st.one_of(
    st.sampled_from([*TOOL_SPECS, "unknown_tool", ""]), st.text(max_size=20), st.none(), st.integers()
)
texts = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.sampled_from(
        [
            "Yes",
            "no",
            "Hi, I'm alice@example.com. Refund order A1 for $40.",
            "Shall I refund $40 for order A1?",
            "I have refunded $40 for order A1 and created a ticket.",
            HUGE,
        ]
    ),
)
outputs = st.one_of(json_like, st.text(max_size=60), st.sampled_from(NASTY))
errors = st.one_of(
    st.none(), st.text(max_size=40), st.sampled_from([ValueError("boom"), 500, {"e": 1}, object()])
)


@dataclass
class Op:
    kind: str
    a: Any = None
    b: Any = None
    c: Any = None


ops = st.one_of(
    st.builds(Op, st.just("user"), texts),
    st.builds(Op, st.just("model"), texts, st.one_of(st.none(), st.lists(json_like, max_size=3)), scalars),
    st.builds(Op, st.just("call"), tool_names, args_st),
    st.builds(Op, st.just("result"), st.integers(min_value=0, max_value=30), outputs, errors),
    st.builds(
        Op,
        st.just("unknown_result"),
        st.one_of(st.none(), st.text(max_size=10), st.integers()),
        outputs,
        errors,
    ),
)


def valid(d: Any) -> None:
    assert isinstance(d, Decision), d
    assert d.action in ACTIONS
    assert isinstance(d.reason, str)
    assert math.isfinite(d.risk)
    for f in d.findings:
        assert f.kind in KINDS
        assert f.severity in SEVERITIES
        assert isinstance(f.message, str)
    json.dumps(d.to_dict(), default=repr)  # serialisable for traces and adapters
    assert isinstance(d.for_model(), str)


@dataclass
class Tally:
    user: int = 0
    model: int = 0
    tool_call: int = 0
    tool_result: int = 0


def drive(run: Run, script: list[Op], final: Any) -> Tally:
    """Play the ops; every call must return a valid Decision. Returns how many events each type should have."""
    tally = Tally()
    called: list[str] = []
    answered: set[str] = set()
    for i, op in enumerate(script):
        if op.kind == "user":
            run.user(op.a)
            tally.user += 1
        elif op.kind == "model":
            valid(run.model(op.a, tool_calls=op.b, tokens=op.c))
            tally.model += 1
        elif op.kind == "call":
            cid = f"c{i}"
            valid(run.tool_call(op.a, op.b, call_id=cid))
            called.append(cid)
            tally.tool_call += 1
        elif op.kind == "result":
            cid = called[op.a % len(called)] if called else f"never-{i}"
            valid(run.tool_result(cid, output=op.b, error=op.c))
            if cid not in answered:
                answered.add(cid)
                tally.tool_result += 1
        else:
            unknown = None if op.a is None else f"u-{op.a}"
            valid(run.tool_result(unknown, output=op.b, error=op.c))
            if unknown is None or unknown not in answered:
                if unknown is not None:
                    answered.add(unknown)
                tally.tool_result += 1
    valid(run.end(final))
    return tally


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICY_FILE)


@pytest.fixture(scope="module", params=["memory", "sqlite"])
def guard(
    request: pytest.FixtureRequest, policy: Policy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Guard]:
    store: TraceStore
    if request.param == "memory":
        store = MemoryStore()
    else:
        store = SQLiteStore(tmp_path_factory.mktemp("props") / "traces.db")
    g = Guard(policy, store=store)
    yield g
    g.close()


_counter = iter(range(10**9))


@SETTINGS
@given(script=st.lists(ops, min_size=1, max_size=12), final=texts)
def test_bad_input_never_raises_and_every_event_is_kept(guard: Guard, script: list[Op], final: Any) -> None:
    run_id = f"prop-{next(_counter)}"
    run = guard.start_run(run_id)
    tally = drive(run, script, final)
    events = guard.store.events(run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    by_type = {
        t: sum(e.type == t for e in events)
        for t in ("start", "user", "model", "tool_call", "tool_result", "end")
    }
    assert by_type == {
        "start": 1,
        "user": tally.user,
        "model": tally.model,
        "tool_call": tally.tool_call,
        "tool_result": tally.tool_result,
        "end": 1,
    }
    assert guard.active_runs == 0 or guard.get_run(run_id) is None


@pytest.mark.parametrize("args", NASTY, ids=lambda a: type(a).__name__)
def test_each_nasty_argument_gets_a_decision(policy: Policy, args: Any) -> None:
    run = Guard(policy, store=MemoryStore()).start_run("nasty")
    run.user("Hi, I'm alice@example.com. Refund order A1 for $40.")
    for tool in ("refund_order", "lookup_order", "something_new"):
        d = run.tool_call(tool, args, call_id=f"{tool}-1")
        valid(d)
        valid(run.tool_result(f"{tool}-1", output=args, error=None))
    valid(run.end(args if isinstance(args, str) else None))


def test_non_object_arguments_are_invalid_args(policy: Policy) -> None:
    run = Guard(policy, store=MemoryStore()).start_run("non-object")
    for i, args in enumerate(["[1, 2]", "{broken", b"\xff", object(), 42]):
        d = run.tool_call("refund_order", args, call_id=f"c{i}")
        assert d.action == "block", (args, d)
        assert "invalid_args" in d.kinds


def test_an_object_whose_repr_raises_still_gets_a_decision(policy: Policy) -> None:
    run = Guard(policy, store=MemoryStore()).start_run("broken-repr")
    valid(run.model("x", tool_calls=[BrokenRepr()]))  # type: ignore[list-item]
    valid(run.tool_call("lookup_order", BrokenRepr(), call_id="c1"))
    valid(run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c2"))
    valid(run.tool_result("c2", error=BrokenRepr()))


def test_objects_whose_repr_raises_inside_arguments_and_outputs(policy: Policy) -> None:
    run = Guard(policy, store=MemoryStore()).start_run("broken-repr-inside")
    valid(run.tool_call("refund_order", {"order_id": BrokenRepr()}, call_id="c1"))
    valid(run.tool_call("lookup_order", {"order_id": "A1"}, call_id="c2"))
    valid(run.tool_result("c2", output=BrokenRepr()))
    valid(run.tool_result("c9", output={"x": BrokenRepr()}))
    valid(run.end("done"))


@SETTINGS
@given(text=texts, tokens=scalars)
def test_texts_of_any_shape(policy: Policy, text: Any, tokens: Any) -> None:
    run = Guard(policy, store=MemoryStore()).start_run("texts")
    run.user(text)
    valid(run.model(text, tokens=tokens))
    valid(run.end(text))


def test_the_whole_file_stays_fast(tmp_path: Path) -> None:
    # guard against a regression that makes one huge payload quadratic: ~1 MB through every path
    import time

    run = Guard(Policy.load(POLICY_FILE), store=SQLiteStore(tmp_path / "t.db")).start_run("huge")
    t0 = time.perf_counter()
    run.user(HUGE)
    run.model(HUGE)
    valid(run.tool_call("lookup_order", {"order_id": HUGE}, call_id="c1"))
    valid(run.tool_result("c1", output={"order_id": HUGE, "note": HUGE}))
    valid(run.end(HUGE))
    assert time.perf_counter() - t0 < 5.0
