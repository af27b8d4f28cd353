"""The worker side of the race test: a process that tries to decide every escalation and claim every
ledger key, started by `multiprocessing` (spawn) from tests/postgres/test_race.py."""

from __future__ import annotations

from typing import Any

from headway.escalations import EscalationConflict
from headway.postgres import PostgresStore


def contend(dsn: str, name: str, ids: list[str], keys: list[str], start: Any, out: Any) -> None:
    """Decide each escalation and `begin` each key; report which ones this process won."""
    won: list[str] = []
    lost: list[str] = []  # conflicts, with the winner the store named
    owned: list[str] = []
    seen: list[str] = []  # the states a non-owner was shown
    with PostgresStore(dsn, pool_size=1) as store:
        start.wait()  # all processes connected: the race starts at once
        for eid in ids:
            try:
                store.decide(eid, "approve", by=name)
                won.append(eid)
            except EscalationConflict as exc:
                lost.append(f"{eid}:{exc.current.decided_by}")
        for key in keys:
            claim = store.begin("race", key)
            if claim.owner:
                owned.append(key)
            else:
                assert claim.entry is not None
                seen.append(claim.entry.state)
    out.put({"name": name, "won": won, "lost": lost, "owned": owned, "seen": seen})
