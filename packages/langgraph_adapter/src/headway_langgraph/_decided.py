"""Resuming a paused thread with the decisions people recorded in the escalation store."""

from __future__ import annotations

from typing import Any

from langgraph.types import Command

from headway import Guard, HeadwayError

from ._gate import INTERRUPT_TYPE, thread_id


def resume_from_store(graph: Any, config: Any, guard: Guard) -> Command[Any]:
    """The `Command` that resumes a paused thread with the decisions people recorded in the escalation
    store (the inbox, `headway escalations ...`, or `guard.escalations.decide`).

    Raises HeadwayError naming every escalation still pending, so nothing is resumed half-decided.
    The resume is checked against the store again when it is applied: it cannot claim more than it holds.
    """
    run = guard.start_run(thread_id(config))
    resume: dict[str, Any] = {}
    waiting: list[str] = []
    for intr in graph.get_state(config).interrupts:
        value = intr.value
        if not (isinstance(value, dict) and value.get("type") == INTERRUPT_TYPE):
            continue  # another node's interrupt: not ours to answer
        decisions: dict[str, Any] = {}
        for call in value.get("calls") or ():
            cid = str(call["call_id"])
            esc = run.escalation(cid)
            if esc is None:
                raise HeadwayError(f"call {cid} of thread {run.run_id} has no escalation record")
            if esc.pending:
                waiting.append(esc.id)
            else:
                decisions[cid] = {**esc.resolution(), "escalation_id": esc.id}
        resume[intr.id] = {"decisions": decisions}
    if waiting:
        raise HeadwayError(f"still waiting for a person's decision: {', '.join(waiting)}")
    if not resume:
        raise HeadwayError(f"thread {run.run_id} is not paused by headway")
    return Command(resume=resume)
