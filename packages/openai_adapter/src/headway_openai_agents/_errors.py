"""The adapter's exceptions: headway's own, made native to the Agents SDK so they surface with run data."""

from __future__ import annotations

from agents import AgentsException

from headway import Decision, HeadwayError, RunStopped


class HeadwayStopped(RunStopped, AgentsException):
    """headway's policy stopped the run. `decision` says why; `run_data` is the SDK's run details.

    Deriving from `AgentsException` lets the SDK attach `run_data` and pass it through tool and hook
    wrappers unchanged; deriving from `headway.RunStopped` lets framework-neutral code catch it.
    """

    def __init__(self, decision: Decision, run_id: str | None = None) -> None:
        RunStopped.__init__(self, decision, run_id)
        self.run_data = None


class HeadwayRunIdError(HeadwayError, AgentsException):
    """A run needs a headway run id and none was given (see `headway_run`)."""

    def __init__(self, message: str) -> None:
        HeadwayError.__init__(self, message)
        self.run_data = None
