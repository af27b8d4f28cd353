"""headway for LangGraph: a callback handler that records and stops runs, a guarded ToolNode that
enforces every decision (pausing with `interrupt()` for people), and a `create_agent` middleware.

    handler = HeadwayCallbackHandler(guard)
    tools = guarded_tool_node([lookup_order, refund_order], guard)
    graph.invoke(inputs, config={"callbacks": [handler], "configurable": {"thread_id": "t-1"}})
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._decided import resume_from_store
from ._errors import AnswerWithheld, GraphRunStopped
from ._gate import INTERRUPT_TYPE, ToolGate
from ._handler import HeadwayCallbackHandler
from ._resume import Resolution, Resume
from ._toolnode import guarded_tool_node
from ._version import IncompatibleVersionError, __version__

if TYPE_CHECKING:
    from ._middleware import HeadwayMiddleware

__all__ = [
    "INTERRUPT_TYPE",
    "AnswerWithheld",
    "GraphRunStopped",
    "HeadwayCallbackHandler",
    "HeadwayMiddleware",
    "IncompatibleVersionError",
    "Resolution",
    "Resume",
    "ToolGate",
    "__version__",
    "guarded_tool_node",
    "resume_from_store",
]


def __getattr__(name: str) -> Any:
    # The middleware needs `langchain` (the `agents` extra); importing the adapter must not.
    if name == "HeadwayMiddleware":
        from ._middleware import HeadwayMiddleware

        return HeadwayMiddleware
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
