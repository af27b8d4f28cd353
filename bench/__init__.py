"""headway's benchmarks (`make bench`); each module prints its own table."""

from __future__ import annotations

import headway._run


def build() -> str:
    """Which headway the figures are of: the compiled wheel (mypyc) or the pure-Python source."""
    where = headway._run.__file__ or ""
    return "compiled (mypyc)" if where.endswith((".so", ".pyd")) else "pure Python"
