"""Plays a support-desk scenario through the LangGraph agent and reads headway's decisions back.

User steps are `graph.invoke` calls, the model's steps come from the scripted model inside the graph,
a person's step resumes the paused graph with `Command(resume=...)`, the final answer ends the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.pregel import Pregel
from langgraph.types import Command

from examples.support_desk import SupportDesk
from examples.support_desk.scenarios import Scenario, Step
from examples.support_desk.show import paint
from headway import Decision, Event, Guard
from headway_langgraph import GraphRunStopped, HeadwayCallbackHandler

from .agent import build_graph, desk_tools
from .scripted import ScriptedChatModel, script_for

Echo = Callable[[str], None]


def decisions(guard: Guard, run_id: str) -> dict[str, Decision]:
    """Every decision of a run from the trace store, keyed like the scenarios: "c3", "c3/human",
    "c3/result", "end" (the first decision on a call; re-deliveries are not recorded twice)."""
    guard.flush()
    out: dict[str, Decision] = {}
    for ev in guard.store.events(run_id):
        d = ev.data.get("decision")
        if d is None:
            continue
        key = {"tool_call": "{}", "human": "{}/human", "tool_result": "{}/result"}.get(ev.type)
        name = "end" if ev.type == "end" else key.format(ev.data["call_id"]) if key else None
        if name is not None and name not in out:
            out[name] = Decision.from_dict(d)
    return out


def describe(ev: Event, tty: bool) -> str | None:
    """One trace event as a line of the demo's output (None: not shown)."""
    d = ev.data
    dec = Decision.from_dict(d["decision"]) if "decision" in d else None
    why = f"\n            why: {dec.reason}" if dec is not None and dec.reason else ""
    if ev.type == "user":
        return f"  user      {d['text']}"
    if ev.type == "model":
        return f"  agent     {d['text']}" if d.get("text") else None
    if ev.type == "tool_call" and dec is not None:
        args = ", ".join(f"{k}={v!r}" for k, v in (d.get("args") or {}).items())
        return f"  {paint(dec.action, tty)}  {d['tool']}({args}){why}"
    if ev.type == "tool_result" and dec is not None and dec.action != "allow":
        return f"  {paint(dec.action, tty)}  result of {d['tool']}{why}"
    if ev.type == "human" and dec is not None:
        said = f": {d['text']!r}" if d.get("text") else ""
        return (
            f"  person    {d['action']} by {d['by']}{said}\n"
            f"  {paint(dec.action, tty)}  {d['call_id']} after the person's {d['action']}{why}"
        )
    if ev.type == "end" and dec is not None:
        return f"  {paint(dec.action, tty)}  final answer{why}"
    return None


def resume_value(step: Step) -> dict[str, Any]:
    value: dict[str, Any] = {"action": step.action, "by": step.by}
    if step.text:
        value["text"] = step.text
    if step.args is not None:
        value["args"] = dict(step.args)
    return value


def play(
    scenario: Scenario,
    guard: Guard,
    desk: SupportDesk,
    checkpointer: BaseCheckpointSaver[Any],
    *,
    thread_id: str,
    model: BaseChatModel | None = None,
    graph: Pregel[Any, Any, Any, Any] | None = None,
    echo: Echo | None = None,
    tty: bool = False,
) -> dict[str, Decision]:
    """Play one scenario; returns headway's decision per call id, as `core_demo.play` does.

    `graph`: another agent over the same desk (e.g. a `create_agent` one with `HeadwayMiddleware`, which
    records model turns itself, so no callback handler is added).
    """
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    scripted = model is None
    if graph is None:
        model = model or ScriptedChatModel(script=script_for(scenario))
        graph = build_graph(model, desk_tools(desk), guard, checkpointer)
        config["callbacks"] = [HeadwayCallbackHandler(guard)]
    shown = 0

    def show() -> None:
        nonlocal shown
        guard.flush()
        for ev in guard.store.events(thread_id):
            if ev.seq > shown and echo is not None:
                line = describe(ev, tty)
                if line is not None:
                    echo(line)
            shown = max(shown, ev.seq)

    out: dict[str, Any] = {}
    for step in scenario.steps:
        try:
            if step.kind == "user":
                out = graph.invoke({"messages": [HumanMessage(step.text)]}, config)
            elif step.kind == "human":
                paused = [i.value for i in out.get("__interrupt__", ())]
                if not paused:
                    continue  # a real model may not have made the call the script expects a person for
                if scripted and paused[0].get("call_id") != step.call_id:
                    raise RuntimeError(f"expected the graph to wait on {step.call_id}, it waits on {paused}")
                if echo is not None:
                    echo(f"  (paused: {paused[0]['kind']} on {paused[0]['tool']}; a person answers)")
                out = graph.invoke(Command(resume=resume_value(step)), config)
            elif step.kind == "end":
                last = out["messages"][-1] if out.get("messages") else None
                # HeadwayMiddleware replaces an answer it withholds with its own note: the run's end is
                # judged on what the model answered, as the script has it.
                final = (
                    last.content
                    if isinstance(last, AIMessage)
                    and isinstance(last.content, str)
                    and last.name != "headway"
                    else step.text
                )
                guard.end_run(thread_id, final)
        except GraphRunStopped as stopped:
            show()
            if echo is not None:
                echo(f"  (the run is stopped: {stopped.decision.reason[:80]}...)")
            break
        show()
    return decisions(guard, thread_id)
