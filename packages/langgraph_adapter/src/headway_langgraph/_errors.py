"""The adapter's exceptions: a typed stop that carries the decision."""

from __future__ import annotations

from headway import RunStopped


class GraphRunStopped(RunStopped):
    """headway stopped a LangGraph run; `.decision` says why and `.run_id` is the thread id.

    Raised out of `graph.invoke` before the offending tool runs. The checkpoint is left where the run
    stopped, so `graph.get_state(config)` still shows it.
    """


class AnswerWithheld(GraphRunStopped):
    """A final answer claimed an outcome no tool result backs, and the handler was built with
    `withhold_answers=True`: raised from the model's turn, so the answer never enters the graph's state.
    `.decision` says what the answer claimed and why nothing backs it. Tell the user something true.
    """
