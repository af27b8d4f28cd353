"""Activity-without-progress detectors: identical repeats, short cycles, stalls and budgets.

Each detector keeps O(1) state per run (counters, a six-call window, output hashes), so detection at
step 10,000 costs what it costs at step 10. Responses are graduated: the first strike blocks with a
message saying what the agent already knows; a persistent loop or stall stops the run.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._normalize import any_match
from ._types import Finding

if TYPE_CHECKING:
    from ._policy import Policy
    from ._view import RunView, ToolCall

REPEAT = "repeats"
CYCLE = "cycle"
STALL = "stall"
BUDGET = "budget"
NOTHING_NEW = "no_new_information"


@dataclass(frozen=True, slots=True)
class Progress:
    """A run's progress measure: milestones reached out of declared, and steps since the last progress."""

    reached: tuple[str, ...]
    remaining: tuple[str, ...]
    steps_since_progress: int

    @property
    def fraction(self) -> float:
        total = len(self.reached) + len(self.remaining)
        return 1.0 if total == 0 else len(self.reached) / total


def _short(value: object, limit: int = 160) -> str:
    s = repr(value)
    return s if len(s) <= limit else s[: limit - 1] + "…"


class Tracker:
    """Per-run detector state. `check_call` only reads; `on_*` methods update (also when restoring)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.counts: dict[str, tuple[int, ...]] = {}  # signature -> steps of calls that ran
        self.window: deque[str] = deque(maxlen=6)
        self.outputs: dict[str, int] = {}  # signature -> hash of its latest result
        self.changed: set[str] = set()  # signatures whose latest result differed from the one before
        self.seen_outputs: set[int] = set()
        self.since_progress = 0
        self.loop_strikes = 0
        self.stall_strikes = 0
        self.started = time.monotonic()

    # ---- reading ---------------------------------------------------------------------------------

    def check_call(self, sig: str, call: ToolCall, view: RunView) -> list[Finding]:
        out: list[Finding] = []
        p = self.policy
        prior = self.counts.get(sig, ())
        # Repeating a call whose last result was new (a status being polled) is not a loop: a loop is a
        # repeat without new information. Budgets and the stall detector still bound polling.
        if len(prior) >= p.max_repeats and self._unchanged(sig):
            out.append(
                self._loop_finding(
                    REPEAT,
                    f"{call.tool} was already called with these arguments "
                    f"{'once' if len(prior) == 1 else f'{len(prior)} times'} (steps "
                    f"{', '.join(map(str, prior[-5:]))}); {self._known(call, view)}",
                    steps=list(prior[-10:]),
                )
            )
        else:
            period = self._cycle(sig)
            if period:
                names = [s.split("\x00", 1)[0] for s in list(self.window)[-period + 1 :]] + [call.tool]
                out.append(
                    self._loop_finding(
                        CYCLE,
                        f"the calls {' -> '.join(names)} repeat with nothing new learned (period {period}); "
                        "use the results you already have or ask the user",
                        period=period,
                    )
                )
        limit = p.max_steps_without_progress
        if limit is not None and self.since_progress + 1 > limit and not self._would_progress(call, view):
            reached = ", ".join(view.milestones) or "none"
            strikes = self.stall_strikes + 1
            out.append(
                Finding(
                    STALL,
                    "stall",
                    "high" if strikes >= 2 else "medium",
                    f"{self.since_progress + 1} tool calls without progress (milestones reached: {reached}); "
                    "step back: use what you know, change approach, or ask the user",
                    {"steps_since_progress": self.since_progress + 1, "strike": strikes},
                    "stop" if strikes >= 2 else "block",
                )
            )
        out.extend(self.check_budgets(view, extra_calls=1))
        return out

    def _would_progress(self, call: ToolCall, view: RunView) -> bool:
        """Whether this call's success reaches a milestone not reached yet: the step out of a stall is
        not itself stalling (a long audit ends in the refund that resolves it)."""
        for m in self.policy.milestones:
            if m.after is None or m.name in view.milestones:
                continue
            if any_match((m.after,) if isinstance(m.after, str) else tuple(m.after), call.tool):
                return True
        return False

    def check_budgets(self, view: RunView, *, extra_calls: int = 0, extra_steps: int = 1) -> list[Finding]:
        b = self.policy.budgets
        if b.steps is None and b.tool_calls is None and b.tokens is None and b.seconds is None:
            return []
        over: list[str] = []
        if b.steps is not None and view.steps + extra_steps > b.steps:
            over.append(f"steps {view.steps + extra_steps} > {b.steps}")
        if b.tool_calls is not None and view.tool_calls + extra_calls > b.tool_calls:
            over.append(f"tool calls {view.tool_calls + extra_calls} > {b.tool_calls}")
        if b.tokens is not None and view.tokens > b.tokens:
            over.append(f"tokens {view.tokens} > {b.tokens}")
        if b.seconds is not None and time.monotonic() - self.started > b.seconds:
            over.append(f"wall time {time.monotonic() - self.started:.1f}s > {b.seconds:g}s")
        if not over:
            return []
        return [
            Finding(BUDGET, "budget", "high", "budget exhausted: " + "; ".join(over), {"over": over}, "stop")
        ]

    def nothing_new(self, sig: str, output_hash: int) -> Finding | None:
        if self.outputs.get(sig) != output_hash:
            return None
        return Finding(
            NOTHING_NEW, "loop", "note", "the call returned exactly what the same call returned before"
        )

    def progress(self, view: RunView) -> Progress:
        names = [m.name for m in self.policy.milestones]
        reached = tuple(view.milestones)
        return Progress(reached, tuple(n for n in names if n not in reached), self.since_progress)

    def _loop_finding(self, check: str, message: str, **evidence: object) -> Finding:
        strikes = self.loop_strikes + 1
        stop = strikes >= self.policy.loop_stop_after
        evidence["strike"] = strikes
        return Finding(
            check, "loop", "high" if stop else "medium", message, evidence, "stop" if stop else "block"
        )

    def _cycle(self, sig: str) -> int:
        win = self.window
        # A period-p cycle repeats the call made p steps ago: without that, no list needs building.
        if not ((len(win) >= 3 and win[-2] == sig) or (len(win) >= 5 and win[-3] == sig)):
            return 0
        w = [*win, sig]
        for period in (2, 3):
            if len(w) < 2 * period:
                continue
            head, tail = w[-2 * period : -period], w[-period:]
            if head != tail or len(set(tail)) < 2:
                continue
            # A cycle whose calls keep returning new results (polling a changing status) is not a loop.
            if all(self._unchanged(s) for s in set(tail)):
                return period
        return 0

    def _unchanged(self, sig: str) -> bool:
        return sig not in self.changed

    @staticmethod
    def _known(call: ToolCall, view: RunView) -> str:
        last = None
        for c in reversed(view.calls(call.tool)):
            if c.done:
                last = c
                break
        if last is None:
            return "its result is still pending; wait for it instead of calling again"
        if last.error is not None:
            return f"it failed with {_short(last.error)}; calling again will not help, ask the user or stop"
        return f"you already know the result: {_short(last.output)}"

    # ---- updating --------------------------------------------------------------------------------

    def on_attempt(self, sig: str, findings: tuple[Finding, ...]) -> None:
        self.window.append(sig)
        self.since_progress += 1
        if any(f.check in (REPEAT, CYCLE) for f in findings):
            self.loop_strikes += 1
        if any(f.check == STALL for f in findings):
            self.stall_strikes += 1
            # After the warning the agent gets half a window more before the run is stopped.
            limit = self.policy.max_steps_without_progress or 0
            self.since_progress = max(0, limit - max(1, limit // 2))

    def on_ran(self, sig: str, step: int) -> None:
        # Tuples, not lists: most signatures run once, and a long run holds thousands of them.
        keep = max(16, self.policy.max_repeats + 1)
        self.counts[sig] = (*self.counts.get(sig, ()), step)[-keep:]

    def on_result(self, sig: str, output_hash: int, new_milestone: bool) -> None:
        prev = self.outputs.get(sig)
        self.outputs[sig] = output_hash
        if prev is not None and prev != output_hash:
            self.changed.add(sig)
        else:
            self.changed.discard(sig)
        new_info = output_hash not in self.seen_outputs
        self.seen_outputs.add(output_hash)
        # With milestones declared only milestones are progress; otherwise any new information is.
        if new_milestone or (new_info and not self.policy.milestones):
            self.since_progress = 0
