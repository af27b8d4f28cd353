"""Escalations a person decides, and the exactly-once ledger: the store API and its backends.

`guard.escalations` is the store a Guard uses (beside its traces by default). A person's decision goes
through `decide` (the CLI, the inbox, or your code); a resume then applies it. PostgreSQL:
`headway.postgres.PostgresStore` (`headway[postgres]`).
"""

from __future__ import annotations

from ._escalations import (
    HUMAN_ACTIONS,
    STATUSES,
    Claim,
    Delivery,
    Escalation,
    EscalationConflict,
    EscalationStore,
    HumanAction,
    LedgerEntry,
    LedgerState,
    MemoryEscalations,
    SQLiteEscalations,
    Status,
    UnknownEscalation,
    escalation_id,
)

__all__ = [
    "HUMAN_ACTIONS",
    "STATUSES",
    "Claim",
    "Delivery",
    "Escalation",
    "EscalationConflict",
    "EscalationStore",
    "HumanAction",
    "LedgerEntry",
    "LedgerState",
    "MemoryEscalations",
    "SQLiteEscalations",
    "Status",
    "UnknownEscalation",
    "escalation_id",
]
