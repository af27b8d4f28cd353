"""Small helpers shared by the core tests: guards over an in-memory store and finding lookups.

Also the import-path targets that policy-file tests reference (`tests.core._helpers:...`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from headway import Decision, Finding, Guard, Policy, Run, RunView, Tool, ToolCall
from headway.traces import MemoryStore


def make_run(policy: Policy | None = None, *tools: Tool, run_id: str = "r", **kw: Any) -> Run:
    """A fresh run over an in-memory store: `make_run(None, Tool(...), max_repeats=2)` builds the policy."""
    if policy is None:
        policy = Policy(tools=list(tools), **kw)
    return Guard(policy, store=MemoryStore()).start_run(run_id)


def found(d: Decision, check: str | None = None) -> list[Finding]:
    """The findings of a decision, optionally only those of one check (by name)."""
    return [f for f in d.findings if check is None or f.check == check]


def one(d: Decision, check: str) -> Finding:
    """The single finding of `check` in a decision (fails the test when there is none or several)."""
    fs = found(d, check)
    assert len(fs) == 1, f"expected one {check!r} finding, got {[f.to_dict() for f in d.findings]}"
    return fs[0]


def active(d: Decision) -> list[Finding]:
    """Findings above note level (the ones that can change a decision)."""
    return [f for f in d.findings if f.severity != "note"]


def do(run: Run, tool: str, args: Any, call_id: str, output: Any = None, *, error: Any = None) -> Decision:
    """Propose a call and, when it is allowed, deliver its result; returns the call's decision."""
    d = run.tool_call(tool, args, call_id=call_id)
    if d.action == "allow":
        run.tool_result(call_id, output=output, error=error)
    return d


def actions(ds: Sequence[Decision]) -> list[str]:
    return [d.action for d in ds]


# ---- import-path targets for policy files ------------------------------------------------------------


def two_lookups(view: RunView) -> bool:
    """Milestone predicate: two lookups ran."""
    return len(view.calls("lookup_order")) >= 2


def big_amount(call: ToolCall) -> bool:
    """Approval condition: amount over 1000."""
    amount = call.args.get("amount", 0)
    return isinstance(amount, int | float) and amount > 1000


def no_weekend(call: ToolCall, view: RunView) -> str | None:
    """A custom check referenced by import path: reason must not be 'weekend'."""
    if call.args.get("reason") == "weekend":
        return "no refunds for weekend reasons"
    return None


def reason_is(value: str) -> Any:
    """A custom check factory referenced by import path with keyword arguments."""
    from headway import checks

    @checks.check(kind="policy_violation", severity="high", name="reason_is")
    def _reason(call: ToolCall, view: RunView) -> str | None:
        got = call.args.get("reason")
        return None if got == value else f"reason must be {value!r}, got {got!r}"

    return _reason
