"""The adapter's exception: a typed stop that carries the decision."""

from __future__ import annotations

from headway import RunStopped


class GraphRunStopped(RunStopped):
    """headway stopped a LangGraph run; `.decision` says why and `.run_id` is the thread id.

    Raised out of `graph.invoke` before the offending tool runs. The checkpoint is left where the run
    stopped, so `graph.get_state(config)` still shows it.
    """
