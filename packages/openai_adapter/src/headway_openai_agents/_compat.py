"""The Agents SDK versions this adapter supports, checked when a guard is attached (not deep in a hook)."""

from __future__ import annotations

import functools
import importlib.metadata
import re

from headway import HeadwayError

# The oldest release with everything the adapter relies on: tool guardrails, `needs_approval` with
# per-invocation approvals, `RunState.reject(rejection_message=)`, agent-scoped `always_approve`.
MIN_VERSION = (0, 23, 1)
BELOW_VERSION = (1,)
REQUIRED = "openai-agents>=0.23.1,<1"


def _parse(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
    return tuple(parts)


@functools.cache
def check_sdk_version() -> str:
    """The installed openai-agents version; raises HeadwayError naming both versions if unsupported."""
    try:
        installed = importlib.metadata.version("openai-agents")
    except importlib.metadata.PackageNotFoundError:
        raise HeadwayError(f'headway-openai-agents needs {REQUIRED}; run: pip install "{REQUIRED}"') from None
    v = _parse(installed)
    if not (MIN_VERSION <= v < BELOW_VERSION):
        raise HeadwayError(
            f"headway-openai-agents supports {REQUIRED}, but openai-agents {installed} is installed; "
            f'run: pip install "{REQUIRED}"'
        )
    return installed
