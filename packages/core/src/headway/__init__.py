"""headway: verification middleware for AI agents.

A Guard, built once from a Policy, gives every agent run a Run that checks each tool call before and
after it runs, tracks progress, and returns a Decision: allow, block, clarify, escalate or stop.
"""

from . import checks
from ._errors import HeadwayError, PolicyError, RunStopped
from ._escalations import Escalation, EscalationConflict, EscalationStore, HumanAction
from ._guard import Guard
from ._policy import Budgets, Identity, Milestone, Policy, Thresholds, Tool
from ._progress import Progress
from ._run import Run
from ._types import Action, Decision, Event, Finding, Kind, Risk, Severity, Stage
from ._view import RunView, ToolCall

__version__ = "0.1.0"

__all__ = [
    "Action",
    "Budgets",
    "Decision",
    "Escalation",
    "EscalationConflict",
    "EscalationStore",
    "Event",
    "Finding",
    "Guard",
    "HeadwayError",
    "HumanAction",
    "Identity",
    "Kind",
    "Milestone",
    "Policy",
    "PolicyError",
    "Progress",
    "Risk",
    "Run",
    "RunStopped",
    "RunView",
    "Severity",
    "Stage",
    "Thresholds",
    "Tool",
    "ToolCall",
    "checks",
]
