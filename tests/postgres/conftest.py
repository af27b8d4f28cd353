"""A real PostgreSQL server for this folder: started once per session (initdb into a temp dir, Unix socket
only), a fresh database per test. Without server binaries the tests skip, unless HEADWAY_REQUIRE_POSTGRES=1
(CI), where they fail."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import NoReturn

import pytest

from bench._pg import Server, Unavailable, start_server

_names = itertools.count()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("HEADWAY_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"HEADWAY_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(f"no PostgreSQL: {reason}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    try:
        server = start_server()
    except Unavailable as exc:
        reason = str(exc)  # reported outside the handler: a skip or failure, not a chained traceback
    else:
        yield server
        server.stop()
        return
    _unavailable(reason)


@pytest.fixture
def dsn(pg_server: Server) -> Iterator[str]:
    """A DSN to a new, empty database of the session's server, dropped after the test."""
    name = f"headway_test_{next(_names)}"
    yield pg_server.create_database(name)
    pg_server.drop_database(name)
