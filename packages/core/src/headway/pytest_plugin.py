"""pytest fixtures for testing agents with headway, loaded by pytest through the `headway` entry point.

`headway_guard(policy)` builds a Guard over an in-memory store, closed after the test;
`headway_trajectory(source, run_id)` loads a recorded run's events. Assertions are in `headway.testing`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from ._guard import Guard
from ._policy import Policy
from ._recorded import Source, load_run
from ._regression import load_policy
from ._store import MemoryStore, TraceStore
from ._types import Event

__all__ = ["GuardFactory", "TrajectoryLoader", "headway_guard", "headway_trajectory"]


class GuardFactory(Protocol):
    """`headway_guard(policy, store=None, **guard_options) -> Guard`."""

    def __call__(
        self, policy: Policy | str | os.PathLike[str], *, store: TraceStore | None = None, **kw: Any
    ) -> Guard: ...


class TrajectoryLoader(Protocol):
    """`headway_trajectory(source, run_id=None) -> list[Event]`."""

    def __call__(self, source: Source, run_id: str | None = None) -> list[Event]: ...


@pytest.fixture
def headway_guard() -> Iterator[GuardFactory]:
    """A factory of Guards: a Policy, a policy file or `pkg.module:attr`; an in-memory trace store unless
    one is given. Every Guard it made is closed after the test."""
    made: list[Guard] = []

    def make(policy: Policy | str | os.PathLike[str], *, store: TraceStore | None = None, **kw: Any) -> Guard:
        guard = Guard(load_policy(policy), store=MemoryStore() if store is None else store, **kw)
        made.append(guard)
        return guard

    yield make
    for guard in made:
        guard.close()


@pytest.fixture
def headway_trajectory() -> TrajectoryLoader:
    """A loader of recorded runs: `headway_trajectory("traces.db", "run-1")` is that run's events (from a
    store, a `.db` or `.jsonl` file, or a PostgreSQL DSN); without a run id the source must hold one run."""
    return load_run
