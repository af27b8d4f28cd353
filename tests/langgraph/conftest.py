"""Fixtures for the LangGraph adapter tests: a guard on an in-memory trace store (policy and desk come
from tests/conftest.py). Real graphs and checkpointers throughout; only the chat model is scripted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from headway import Guard, Policy
from headway.traces import MemoryStore


@pytest.fixture
def guard(policy: Policy) -> Iterator[Guard]:
    with Guard(policy, store=MemoryStore()) as g:
        yield g
