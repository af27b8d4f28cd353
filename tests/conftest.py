"""Test-wide set-up: no network (a kill switch on sockets), no tracing export, traces in a temp dir,
and the support-desk fixtures every suite uses (the shared policy, a desk, a guard on SQLite)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from examples.support_desk import SupportDesk
from examples.support_desk.policy import load_policy
from headway import Guard, Policy

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
os.environ.pop("OPENAI_API_KEY", None)

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _loopback_only(address: Any) -> None:
    if isinstance(address, tuple) and address:
        host = str(address[0])
        if host in ("localhost", "::1") or host.startswith("127."):
            return
        raise RuntimeError(f"network access is disabled in tests (tried {address!r})")
    # AF_UNIX paths and the like stay local.


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _loopback_only(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _loopback_only(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign,assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _traces_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A Guard built without a store writes .headway/traces.db; keep that out of the checkout.
    monkeypatch.setenv("HEADWAY_TRACES", str(tmp_path / "traces.db"))


@pytest.fixture(scope="session")
def policy() -> Policy:
    """The support desk's policy, loaded from the shared policy.toml."""
    return load_policy()


@pytest.fixture
def guard(policy: Policy, tmp_path: Path) -> Iterator[Guard]:
    with Guard(policy, store=tmp_path / "traces.db") as g:
        yield g


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[SupportDesk]:
    d = SupportDesk(tmp_path / "desk.db")
    yield d
    d.close()
