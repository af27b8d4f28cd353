"""Recorded runs for the replay and sweep tests: the support-desk scenarios played into a SQLite trace
store, plus two runs whose escalation a person rejected or edited, and policy files derived from the
desk's own policy by text edits."""

from __future__ import annotations

from pathlib import Path

from examples.support_desk import POLICY_FILE, SCENARIOS, Scenario, SupportDesk
from examples.support_desk.core_demo import play
from headway import Guard, Policy
from headway.testing import call, end, human, say, user

ALICE = "Hi, I'm alice@example.com."


def _over_threshold(name: str, decision: str) -> Scenario:
    """The $250 refund of `over_threshold`, decided otherwise by the person."""
    if decision == "reject":
        verdict = human("c3", "reject", by="maria@support")
    else:
        fixed = {"order_id": "A3", "amount": 90, "reason": "cracked top"}
        verdict = human("c3", "edit", by="maria@support", args=fixed)
    return Scenario(
        name,
        f"the over-threshold refund, {decision}ed by a person",
        (
            user(f"{ALICE} The standing desk, order A3, came with a cracked top. Refund please."),
            call("find_user", "c1", email="alice@example.com"),
            call("lookup_order", "c2", order_id="A3"),
            say("Order A3 (standing desk, $250) qualifies. Shall I refund $250 for order A3?"),
            user("Yes, go ahead."),
            call("refund_order", "c3", order_id="A3", amount=250, reason="cracked top"),
            verdict,
            end("Your refund for order A3 is on its way."),
        ),
        {},
    )


EXTRA = (
    _over_threshold("over_threshold_rejected", "reject"),
    _over_threshold("over_threshold_edited", "edit"),
)
ALL = (*SCENARIOS, *EXTRA)


def record(directory: Path, policy: Policy, scenarios: tuple[Scenario, ...] = ALL) -> Path:
    """Play the scenarios through a Guard on a SQLite store in `directory`; returns the store's path.

    The people's decisions go through `run.resolve`, so they are in the escalation store beside the traces.
    """
    db = directory / "traces.db"
    with Guard(policy, store=db) as guard:
        for scenario in scenarios:
            desk = SupportDesk(directory / f"{scenario.name}.desk.db", faults=scenario.faults)
            try:
                play(scenario, guard, desk)
            finally:
                desk.close()
    return db


def policy_file(directory: Path, name: str, *edits: tuple[str, str]) -> Path:
    """The desk's policy.toml with text replaced (each `old` must occur), written as `name`.toml."""
    text = Path(POLICY_FILE).read_text(encoding="utf-8")
    for old, new in edits:
        assert old in text, f"the desk's policy no longer contains {old!r}"
        text = text.replace(old, new)
    text = text.replace('name = "support-desk"', f'name = "{name}"')
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path
