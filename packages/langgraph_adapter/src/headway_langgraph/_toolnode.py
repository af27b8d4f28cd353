"""`guarded_tool_node`: a prebuilt ToolNode whose every call goes through headway first."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from typing import Any, Union, get_args, get_origin, get_type_hints

from langchain_core.tools import BaseTool
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import TOOL_CALL_ERROR_TEMPLATE

from headway import Guard, HeadwayError

from ._gate import ToolGate
from ._version import check_versions

ErrorFlag = bool | str | Callable[..., str] | type[Exception] | tuple[type[Exception], ...]


def _handled_types(fn: Callable[..., str]) -> tuple[type[BaseException], ...]:
    """The exception types a handler's first parameter is annotated with, as ToolNode reads them."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values() if p.name not in ("self", "cls")]
        hint = get_type_hints(fn).get(params[0].name) if params else None
    except (TypeError, ValueError, NameError, IndexError):
        return (Exception,)
    if get_origin(hint) in (Union, types.UnionType):
        found = tuple(a for a in get_args(hint) if isinstance(a, type) and issubclass(a, BaseException))
        return found or (Exception,)
    return (hint,) if isinstance(hint, type) and issubclass(hint, BaseException) else (Exception,)


def _keep_headway_errors(flag: ErrorFlag) -> Callable[[Exception], str]:
    """`handle_tool_errors` as ToolNode takes it, except that headway's own errors (a stop, a bad
    resume) always propagate: ToolNode would otherwise turn them into a message to the model."""

    def handle(e: Exception) -> str:
        if isinstance(e, HeadwayError):
            raise e
        if isinstance(flag, bool):
            if not flag:
                raise e
            return TOOL_CALL_ERROR_TEMPLATE.format(error=repr(e))
        if isinstance(flag, str):
            return flag
        if isinstance(flag, tuple | type):
            if not isinstance(e, flag):
                raise e
            return TOOL_CALL_ERROR_TEMPLATE.format(error=repr(e))
        if not isinstance(e, handled):
            raise e
        return str(flag(e))

    handled = _handled_types(flag) if callable(flag) and not isinstance(flag, type) else (Exception,)
    return handle


def guarded_tool_node(
    tools: Sequence[BaseTool | Callable[..., Any]],
    guard: Guard,
    *,
    handle_tool_errors: ErrorFlag | None = None,
    messages_key: str = "messages",
    **toolnode_kwargs: Any,
) -> ToolNode:
    """A `ToolNode` that asks headway before every call and enforces the decision.

    `block`: the tool does not run and the model gets a ToolMessage saying what is missing.
    `clarify` / `escalate`: the graph pauses with `interrupt()` on your checkpointer; resume it with
    `Command(resume={"action": "approve" | "reject" | "edit" | "answer", "by": ..., ...})`.
    `stop`: `GraphRunStopped` is raised out of `invoke`. A call whose result is already recorded never
    runs again (LangGraph re-runs the node on resume). Other keyword arguments go to `ToolNode`;
    `handle_tool_errors` keeps ToolNode's meaning (default: only bad arguments become messages).
    """
    check_versions()
    gate = ToolGate(guard, messages_key=messages_key)
    if "wrap_tool_call" in toolnode_kwargs or "awrap_tool_call" in toolnode_kwargs:
        raise TypeError(
            "guarded_tool_node sets wrap_tool_call/awrap_tool_call itself; to add your own wrapper, "
            "call it from yours around headway_langgraph.ToolGate(guard).wrap"
        )
    kwargs: dict[str, Any] = dict(toolnode_kwargs)
    if handle_tool_errors is not None:
        kwargs["handle_tool_errors"] = _keep_headway_errors(handle_tool_errors)
    return ToolNode(
        tools,
        wrap_tool_call=gate.wrap,
        awrap_tool_call=gate.awrap,
        messages_key=messages_key,
        **kwargs,
    )
