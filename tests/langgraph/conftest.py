"""Fixtures for the LangGraph adapter tests: the support-desk policy, desk and guard, and graph builders.

Real graphs and checkpointers throughout; only the chat model is scripted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.langgraph_support_desk.agent import load_policy
from examples.support_desk import SupportDesk
from headway import Guard, Policy
from headway.traces import MemoryStore


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture
def guard(policy: Policy) -> Iterator[Guard]:
    with Guard(policy, store=MemoryStore()) as g:
        yield g


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SupportDesk]:
    d = SupportDesk(tmp_path / "desk.db")
    yield d
    d.close()
