"""Exceptions headway raises to its callers (never to the agent: the agent gets Decisions)."""

from __future__ import annotations

from ._types import Decision


class HeadwayError(Exception):
    """Base of every headway error: a caller's mistake, not an agent's."""


class PolicyError(HeadwayError, ValueError):
    """A policy file or definition is invalid; the message names the file, the key and what was expected."""


class RunStopped(HeadwayError):
    """The policy stopped the run; `decision` says why. Adapters raise subclasses native to their framework."""

    def __init__(self, decision: Decision, run_id: str | None = None) -> None:
        self.decision = decision
        self.run_id = run_id
        where = f" (run {run_id})" if run_id else ""
        super().__init__(f"headway stopped the run{where}: {decision.reason}")
