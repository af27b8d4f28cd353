"""The six support-desk scenarios through the real Agents SDK Runner, with a scripted model.

`script(scenario)` turns the framework-neutral scenario into ScriptedModel steps (adding the triage ->
refunds handoff before the first refund); `play` runs it the way an application would: a Runner.run
per user message, `escalations` / `resolve` / `resume` when a person must decide; `decisions` reads what
headway recorded, keyed like `Scenario.expect`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents import Agent, OutputGuardrailTripwireTriggered, RunConfig, Runner, RunResult, RunResultStreaming
from agents.items import TResponseInputItem, TResponseOutputItem
from agents.testing import ScriptedModel, assistant_message, function_call
from agents.testing.model import ModelScriptItem

from examples.support_desk import Scenario, SupportDesk
from headway import Decision, Guard
from headway_openai_agents import RUN_ID_KEY, HeadwayStopped, guard_agent, resolve, resume, settle

from .support_agents import REFUND_TOOLS, TRIAGE_TOOLS, build_agents

Result = RunResult | RunResultStreaming


def script(scenario: Scenario) -> list[ModelScriptItem]:
    """The model's turns: one step per scripted model step, plus the handoff the agent graph needs."""
    steps: list[ModelScriptItem] = []
    agent_tools: tuple[str, ...] = TRIAGE_TOOLS
    handoffs = 0
    for step in scenario.steps:
        if step.kind not in ("model", "end"):
            continue
        if any(c.tool not in agent_tools and c.tool in REFUND_TOOLS for c in step.calls):
            handoffs += 1
            steps.append([function_call("transfer_to_refunds", {}, call_id=f"handoff-{handoffs}")])
            agent_tools = REFUND_TOOLS
        output: list[TResponseOutputItem] = [assistant_message(step.text)] if step.text else []
        output.extend(function_call(c.tool, dict(c.args), call_id=c.id) for c in step.calls)
        steps.append(output)
    return steps


def decisions(guard: Guard, run_id: str) -> dict[str, Decision]:
    """headway's recorded decisions: "<call id>", "<call id>/human", "<call id>/result", "end"."""
    guard.flush()
    out: dict[str, Decision] = {}
    for ev in guard.store.events(run_id):
        data = ev.data
        if ev.type == "tool_call":
            out.setdefault(str(data["call_id"]), Decision.from_dict(data["decision"]))
        elif ev.type in ("human", "tool_result"):
            suffix = "human" if ev.type == "human" else "result"
            out[f"{data['call_id']}/{suffix}"] = Decision.from_dict(data["decision"])
        elif ev.type == "end":
            out["end"] = Decision.from_dict(data["decision"])
    return out


async def _drain(result: RunResultStreaming) -> RunResultStreaming:
    async for _ in result.stream_events():
        pass
    return result


async def play(
    scenario: Scenario,
    guard: Guard,
    desk: SupportDesk,
    *,
    run_id: str | None = None,
    streamed: bool = False,
    echo: Callable[[str], None] | None = None,
    max_turns: int | None = None,
) -> dict[str, Decision]:
    """Play one scenario through guarded agents and the real Runner; returns headway's decisions.

    `max_turns`: model turns per `Runner.run` (the SDK's default is 10); long scripts need more.
    """
    say = echo or (lambda _line: None)
    turns: dict[str, Any] = {} if max_turns is None else {"max_turns": max_turns}
    rid = run_id or scenario.name
    model = ScriptedModel(script(scenario))
    config = RunConfig(model=model, workflow_name=f"support-desk {scenario.name}")
    context = {RUN_ID_KEY: rid}
    agent: Agent[Any] = guard_agent(build_agents(desk), guard)
    result: Result | None = None
    withheld: str | None = None  # the last answer headway withheld, if the last turn ended that way
    started = agent
    try:
        for step in scenario.steps:
            if step.kind == "user":
                say(f"  user      {step.text}")
                given: str | list[TResponseInputItem] = step.text
                if result is None:
                    started = agent
                else:
                    started = result.last_agent
                    given = [*result.to_input_list(), {"role": "user", "content": step.text}]
                withheld = None
                try:
                    if streamed:
                        result = await _drain(
                            Runner.run_streamed(started, given, context=context, run_config=config, **turns)
                        )
                    else:
                        result = await Runner.run(started, given, context=context, run_config=config, **turns)
                except OutputGuardrailTripwireTriggered as e:
                    # headway withheld the answer (a claim no result backs): the user is told so instead,
                    # and the run's end is judged on what the model said.
                    withheld = str(e.guardrail_result.agent_output)
                    say(f"  agent     (withheld) {withheld}")
            elif step.kind == "human" and result is not None:
                state = result.to_state()
                d = resolve(
                    state,
                    guard,
                    step.call_id,
                    step.action,
                    by=step.by,
                    text=step.text or None,
                    args=dict(step.args) if step.args is not None else None,
                )
                say(f"  person    {step.action} {step.call_id} by {step.by} -> {d.action}")
                withheld = None
                try:
                    if streamed:
                        settle(state, guard)
                        result = await _drain(Runner.run_streamed(started, state, run_config=config, **turns))
                    else:
                        result = await resume(started, state, guard, run_config=config, **turns)
                except OutputGuardrailTripwireTriggered as e:
                    withheld = str(e.guardrail_result.agent_output)
                    say(f"  agent     (withheld) {withheld}")
            elif step.kind == "end" and withheld is not None:
                guard.end_run(rid, withheld)
            elif step.kind == "end" and result is not None:
                say(f"  agent     {result.final_output}")
                guard.end_run(rid, str(result.final_output))
    except HeadwayStopped as e:
        say(f"  (stopped: {e.decision.reason})")
    if result is not None and result.interruptions:
        say(f"  (waiting for a person: {[i.call_id for i in result.interruptions]})")
    return decisions(guard, rid)
