"""Diagnosis from recorded traces: the failure-taxonomy report over trace stores and JSONL exports.

`report(sources)` reads once, streaming, and ranks failure classes by frequency x severity, with decisions
per tool, the milestone funnel and example runs; `render_html(report)` makes it a self-contained page.
`replay(source, policy)` re-decides recorded runs under another policy and counts what would change;
`sweep(source, policy, labels=...)` trades unsafe actions allowed against automation kept over the
escalation thresholds.
"""

from ._replay import Change, ReplayResult, RunDiff, replay
from ._report import (
    MEANINGS,
    OUTCOMES,
    ClassRank,
    Example,
    FunnelStep,
    Report,
    TimeBucket,
    ToolStats,
    report,
)
from ._report_html import render_html
from ._sweep import LabelError, OperatingPoint, SweepResult, read_labels, store_labels, sweep

__all__ = [
    "MEANINGS",
    "OUTCOMES",
    "Change",
    "ClassRank",
    "Example",
    "FunnelStep",
    "LabelError",
    "OperatingPoint",
    "ReplayResult",
    "Report",
    "RunDiff",
    "SweepResult",
    "TimeBucket",
    "ToolStats",
    "read_labels",
    "render_html",
    "replay",
    "report",
    "store_labels",
    "sweep",
]
