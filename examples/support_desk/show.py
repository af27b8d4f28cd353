"""How the example agents print a decision: one coloured label per action (plain when not a terminal)."""

from __future__ import annotations

_COLOURS = {"allow": "32", "block": "33", "clarify": "36", "escalate": "35", "stop": "31"}


def paint(action: str, tty: bool) -> str:
    label = action.upper().ljust(8)
    return f"\x1b[1;{_COLOURS.get(action, '0')}m{label}\x1b[0m" if tty else label
