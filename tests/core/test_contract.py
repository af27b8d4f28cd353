"""The public names promised in the core issue, used exactly as documented, and the README's example run
as written: docs, examples and users rely on these."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import headway
from headway import Decision, Finding, Guard, Identity, Milestone, Policy, RunView, Tool, ToolCall, checks

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_example_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README lost its example"
    namespace: dict[str, Any] = {}
    exec(
        compile(blocks[0].replace("Guard(policy)", 'Guard(policy, store=":memory:")'), "README.md", "exec"),
        namespace,
    )
    d = namespace["d"]
    assert isinstance(d, Decision)
    assert d.action == "block"
    assert "lookup_order" in d.reason


def test_every_contract_name_is_public() -> None:
    for name in ("Guard", "Policy", "Tool", "Milestone", "Decision", "Finding", "checks"):
        assert name in headway.__all__
    for name in (
        "requires_prior", "confirmed", "grounded", "observed", "once", "owned", "any_of", "all_of", "check",
        "bounds", "one_of", "args_schema", "output_schema", "no_error_payload", "not_empty", "not_truncated",
        "consistent_with_args", "unambiguous",
    ):  # fmt: skip
        assert name in checks.__all__, name


def test_the_contract_signatures_work_as_the_issue_writes_them() -> None:
    @checks.check(kind="policy_violation", severity="high")
    def same_owner(call: ToolCall, view: RunView) -> str | None:
        order = view.last_output("get_order", order_id=call.args["order_id"])
        user = view.last_output("find_user_by_email") or view.last_output("find_user_by_name_zip")
        if order and user and order.get("user_id") != user:
            return "order belongs to another user"
        return None

    policy = Policy(
        tools=[
            Tool("find_user_by_*", risk="read"),
            Tool("get_*", risk="read"),
            Tool(
                "cancel_order",
                risk="irreversible",
                before=[
                    checks.requires_prior(["find_user_by_email", "find_user_by_name_zip"]),
                    checks.requires_prior("get_order", same=["order_id"]),
                    checks.confirmed(covering=["order_id"]),
                    checks.grounded("order_id", sources=["user", "get_*"], severity="high"),
                    checks.observed("get_order", match={"order_id": "order_id"}, where={"status": "pending"}),
                    checks.once(key=["order_id"], tools=["cancel_order", "modify_order"]),
                    checks.owned("order_id", owner_field="user_id", via="get_order*"),
                    same_owner,
                ],
            ),
        ],
        default=Tool("*", risk="write"),
        identity=Identity(tool="find_user_by_*"),
        milestones=[Milestone("found", after="get_order")],
    )
    run = Guard(policy, store=":memory:").start_run("contract")
    run.user("I'm jo@example.com; please cancel order #W1")
    run.tool_call("find_user_by_email", {"email": "jo@example.com"}, call_id="1")
    run.tool_result("1", output="u7")
    run.tool_call("get_order", {"order_id": "#W1"}, call_id="2")
    run.tool_result("2", output={"order_id": "#W1", "user_id": "u7", "status": "pending"})
    run.model("Shall I cancel order #W1?")
    run.user("yes")
    d = run.tool_call("cancel_order", {"order_id": "#W1"}, call_id="3")
    assert d.action == "allow", d.reason
    other = run.tool_call("delete_everything", {}, call_id="4")  # an unlisted tool gets the default
    assert isinstance(other, Decision)
    assert all(isinstance(f, Finding) for f in d.findings)
    assert run.progress.reached == ("found",)


def test_decisions_and_events_are_frozen_values_in_either_build() -> None:
    # Both write their fields in a hand-written __init__ (compiled, slot stores); frozen must still hold,
    # and keyword construction, defaults, equality and hashing behave as dataclasses' own.
    from dataclasses import FrozenInstanceError

    from headway.traces import Event

    d = Decision(action="block", reason="no lookup", tool="refund_order", call_id="c1")
    assert d == Decision("block", "no lookup", (), 0.0, "refund_order", "c1")
    assert hash(d) == hash(Decision("block", "no lookup", tool="refund_order", call_id="c1"))
    assert (d.stage, d.question, d.escalation_id) == ("call", None, None)
    e = Event("r", 1, 0.5, "user", {"text": "hi"})
    for obj, name in ((d, "action"), (e, "seq")):
        with pytest.raises(FrozenInstanceError):
            setattr(obj, name, "x")
    with pytest.raises(TypeError):
        Decision()  # type: ignore[call-arg]
