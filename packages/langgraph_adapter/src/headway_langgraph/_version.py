"""The adapter's version and the framework versions it supports, declared once and checked on attach.

The floor is langgraph 1.2: in 1.1 every interrupt of a task shared one id, and its prebuilt ToolNode
turned an interrupt raised in a tool-call wrapper into an error message under `handle_tool_errors=True`.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

from headway import HeadwayError

__version__ = "0.1.0"

# distribution -> (lowest supported, first unsupported); the same ranges as pyproject.toml.
REQUIRED: dict[str, tuple[str, str]] = {
    "langgraph": ("1.2", "2"),
    "langgraph-prebuilt": ("1.1", "2"),
    "langchain-core": ("1.0", "2"),
}
REQUIRED_AGENTS: dict[str, tuple[str, str]] = {"langchain": ("1.0", "2")}


class IncompatibleVersionError(HeadwayError, ImportError):
    """An installed framework version is outside the range headway-langgraph supports."""


def _release(v: str) -> tuple[int, ...]:
    m = re.match(r"\d+(?:\.\d+)*", v)
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def _within(installed: str, low: str, high: str) -> bool:
    got = _release(installed)
    return bool(got) and _release(low) <= got < _release(high)


# Checks that passed: (lookup function, requirements). Installed versions do not change while a process
# runs, and a handler is often built per request, where reading the package metadata costs ~0.5 ms. The
# lookup function is part of the key so that a replaced `version` (as in tests) is asked again.
_PASSED: set[tuple[object, tuple[tuple[str, str, str], ...]]] = set()


def check_versions(extra: dict[str, tuple[str, str]] | None = None) -> None:
    """Raise IncompatibleVersionError naming the installed and the required version of each framework."""
    wanted = {**REQUIRED, **(extra or {})}
    key = (version, tuple((dist, low, high) for dist, (low, high) in wanted.items()))
    if key in _PASSED:
        return
    problems = []
    for dist, (low, high) in wanted.items():
        try:
            installed = version(dist)
        except PackageNotFoundError:
            problems.append(f"{dist} is not installed (headway-langgraph needs {dist}>={low},<{high})")
            continue
        if not _within(installed, low, high):
            problems.append(
                f"{dist} {installed} is installed; headway-langgraph {__version__} needs {dist}>={low},<{high}"
            )
    if problems:
        hint = 'pip install "headway-langgraph[agents]"' if extra else "pip install headway-langgraph"
        raise IncompatibleVersionError("; ".join(problems) + f". Install a supported version ({hint}).")
    _PASSED.add(key)
