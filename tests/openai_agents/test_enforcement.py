"""Decisions enforced with the SDK's own mechanisms: block -> reject_content with the reason, stop -> a
typed exception with the decision and run data, untrusted results replaced, parallel calls, streaming."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agents import AgentsException, RunErrorDetails, Runner
from agents.testing import function_call

from examples.support_desk import SupportDesk
from headway import Guard, RunStopped
from headway_openai_agents import HeadwayStopped, escalations

from .conftest import ALICE, Convo, call, confirmed_refund_setup, handoff, text


async def test_block_rejects_content_with_the_reason(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    convo.script(
        handoff(),
        call("refund_order", "c1", order_id="A1", amount=40, reason="broken"),
        text("Let me check."),
    )
    result = await convo.say(f"{ALICE} Refund order A1, $40.")
    assert result.final_output == "Let me check."
    seen = convo.last_tool_output("c1")
    assert seen.startswith("[headway] refund_order: not done.")
    assert "lookup_order" in seen
    assert desk.count("refunds") == 0
    [g] = [r for r in result.tool_input_guardrail_results if r.guardrail.get_name() == "headway"]
    assert g.output.behavior["type"] == "reject_content"


async def test_stop_raises_typed_exception_with_decision_and_run_data(
    guard: Guard, desk: SupportDesk
) -> None:
    convo = Convo(guard, desk)
    convo.script(
        call("find_user", "c1", email="alice@example.com"),
        *(call("lookup_order", f"c{i}", order_id="A1") for i in range(2, 6)),
    )
    with pytest.raises(HeadwayStopped) as info:
        await convo.say(f"{ALICE} Where is my order A1?")
    e = info.value
    assert isinstance(e, AgentsException)
    assert isinstance(e, RunStopped)
    assert e.decision.action == "stop"
    assert e.decision.call_id == "c5"
    assert e.decision.kinds == ("loop",)
    assert e.run_id == "r1"
    assert isinstance(e.run_data, RunErrorDetails)
    assert e.run_data.last_agent.name == "triage"
    assert "headway stopped the run (run r1)" in str(e)


async def test_wrong_result_is_replaced_for_the_model(guard: Guard, tmp_path: Any) -> None:
    desk = SupportDesk(
        tmp_path / "d.db", faults={"refund_order": lambda r: {**r, "amount": r["amount"] * 10}}
    )
    convo = Convo(guard, desk)
    await confirmed_refund_setup(convo, "A1", 40)
    convo.script(call("refund_order", "c3", order_id="A1", amount=40, reason="arrived broken"), text("Hm."))
    await convo.say("Yes, go ahead.")
    seen = convo.last_tool_output("c3")
    assert seen.startswith("[headway] refund_order ran, but its result needs a person's review")
    assert desk.count("refunds") == 1  # the side effect happened once; the model is not told it succeeded
    desk.close()


async def test_parallel_tool_calls(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    convo.script(
        call("find_user", "c1", email="alice@example.com"),
        [
            function_call("lookup_order", {"order_id": "A1"}, call_id="c2"),
            function_call("lookup_order", {"order_id": "A3"}, call_id="c3"),
        ],
        text("Shall I refund $40 for order A1 and $250 for order A3?"),
    )
    await convo.say(f"{ALICE} Orders A1 and A3 arrived broken, refund both.")
    assert json.loads(convo.last_tool_output("c2"))["order_id"] == "A1"
    assert json.loads(convo.last_tool_output("c3"))["order_id"] == "A3"
    # Two refunds in one turn: A1 is allowed and runs, A3 is over the threshold and waits.
    convo.script(
        handoff(),
        [
            function_call(
                "refund_order", {"order_id": "A1", "amount": 40, "reason": "arrived broken"}, call_id="c4"
            ),
            function_call(
                "refund_order", {"order_id": "A3", "amount": 250, "reason": "arrived broken"}, call_id="c5"
            ),
        ],
    )
    result = await convo.say("Yes, both.")
    assert [i.call_id for i in result.interruptions] == ["c5"]
    assert [e.call_id for e in escalations(result, guard)] == ["c5"]
    assert desk.count("refunds") == 1
    run = guard.start_run("r1")
    assert [run.view.call(c).action for c in ("c4", "c5")] == ["allow", "escalate"]  # type: ignore[union-attr]


async def test_streamed_run_is_guarded_the_same(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    convo.script(
        handoff(),
        call("refund_order", "c1", order_id="A1", amount=40, reason="broken"),
        text("Let me check."),
    )
    streamed = Runner.run_streamed(
        convo.agent, f"{ALICE} Refund A1.", context=convo.context, run_config=convo.config
    )
    async for _ in streamed.stream_events():
        pass
    assert streamed.final_output == "Let me check."
    assert convo.last_tool_output("c1").startswith("[headway] refund_order: not done.")
    assert desk.count("refunds") == 0


async def test_streamed_stop_raises(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    convo.script(
        call("find_user", "c1", email="alice@example.com"),
        *(call("lookup_order", f"c{i}", order_id="A1") for i in range(2, 6)),
    )
    streamed = Runner.run_streamed(
        convo.agent, f"{ALICE} Where is A1?", context=convo.context, run_config=convo.config
    )
    with pytest.raises(HeadwayStopped) as info:
        async for _ in streamed.stream_events():
            pass
    assert info.value.decision.action == "stop"


async def test_a_tool_that_raises_is_recorded_as_a_failed_call(guard: Guard) -> None:
    from agents import Agent, OutputGuardrailTripwireTriggered, RunConfig, function_tool
    from agents.testing import ScriptedModel

    from headway_openai_agents import RUN_ID_KEY, guard_agent

    @function_tool
    def open_ticket(subject: str) -> str:
        """Open a support ticket."""
        raise RuntimeError("ticket service down")

    model = ScriptedModel(
        [call("open_ticket", "t1", subject="lamp"), text("I have opened a ticket for you.")]
    )
    agent = guard_agent(Agent[Any](name="desk", tools=[open_ticket]), guard)
    # The answer claims the ticket the failed call never opened: withheld, not handed to the user.
    with pytest.raises(OutputGuardrailTripwireTriggered):
        await Runner.run(
            agent, "open a ticket", context={RUN_ID_KEY: "raises"}, run_config=RunConfig(model=model)
        )
    run = guard.start_run("raises")
    c = run.view.call("t1")
    assert c is not None
    assert c.error is not None  # the SDK's error text, recorded as a failure, not as an output
    guard.flush()
    final = [e for e in guard.store.events("raises") if e.type == "model"][-1]
    assert [f["kind"] for f in final.data["decision"]["findings"]] == ["ignored_tool_error"]


async def test_an_unsupported_final_answer_trips_the_output_guardrail(
    guard: Guard, desk: SupportDesk
) -> None:
    # No refund ran, yet the agent says it refunded: the SDK must not hand that answer to the user.
    from agents import OutputGuardrailTripwireTriggered

    convo = Convo(guard, desk)
    convo.script(text("I have refunded $40 for order A1."))
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        await convo.say(f"{ALICE} Refund order A1, it arrived broken.")
    got = info.value.guardrail_result
    assert got.guardrail.get_name() == "headway_final_answer"
    assert got.output.output_info["action"] in ("block", "escalate")
    assert "refund_order" in got.output.output_info["reason"]
    assert desk.count("refunds") == 0


async def test_a_supported_final_answer_passes(guard: Guard, desk: SupportDesk) -> None:
    convo = Convo(guard, desk)
    convo.script(text("Could you tell me your order number?"))
    result = await convo.say(f"{ALICE} Something is wrong with my order.")
    assert result.final_output == "Could you tell me your order number?"
    # judged when the model answered (the agent hooks), so the SDK ran no output guardrail of headway's
    assert result.output_guardrail_results == []
    guard.flush()
    [answer] = [e for e in guard.store.events("r1") if e.type == "model" and e.data["text"]]
    assert answer.data["decision"]["action"] == "allow"


async def test_a_withheld_answer_reaches_the_agents_own_hooks_and_the_stream(
    guard: Guard, desk: SupportDesk
) -> None:
    from agents import AgentHooks, OutputGuardrailTripwireTriggered

    from examples.openai_support_desk import build_agents
    from headway_openai_agents import guard_agent

    seen: list[str] = []

    class Mine(AgentHooks[Any]):
        async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
            seen.append(agent.name)

    convo = Convo(guard, desk)
    convo.agent = guard_agent(build_agents(desk).clone(hooks=Mine()), guard)
    convo.script(text("I have refunded $40 for order A1."))
    streamed = Runner.run_streamed(
        convo.agent, f"{ALICE} Refund order A1.", context=convo.context, run_config=convo.config
    )
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        async for _ in streamed.stream_events():
            pass
    got = info.value.guardrail_result
    assert got.guardrail.get_name() == "headway_final_answer"
    assert got.agent_output == "I have refunded $40 for order A1."
    assert got.output.output_info["action"] in ("block", "escalate")
    assert seen == ["triage"]  # the agent's own hook saw the turn before headway withheld it


@pytest.mark.parametrize(
    "change",
    [
        {"tool_use_behavior": "stop_on_first_tool"},
        {"output_type": dict},
        {"hooks": False},
    ],
    ids=["tool_use_behavior", "output_type", "no_hooks"],
)
def test_an_agent_whose_output_may_not_be_a_model_answer_keeps_the_output_guardrail(
    guard: Guard, change: dict[str, Any]
) -> None:
    from agents import Agent

    from headway_openai_agents import guard_agent

    hooks = change.pop("hooks", True)
    plain = guard_agent(Agent[Any](name="plain"), guard)
    assert [g.name for g in plain.output_guardrails] == []
    other = guard_agent(Agent[Any](name="other", **change), guard, hooks=hooks)
    assert [g.name for g in other.output_guardrails] == ["headway_final_answer"]


async def test_a_tool_result_as_final_output_is_judged_by_the_output_guardrail(guard: Guard) -> None:
    from agents import Agent, OutputGuardrailTripwireTriggered, RunConfig, function_tool
    from agents.testing import ScriptedModel

    from headway_openai_agents import RUN_ID_KEY, guard_agent

    @function_tool
    def open_ticket(subject: str) -> str:
        """Open a support ticket."""
        raise RuntimeError("ticket service down")

    @function_tool
    def tell(message: str) -> str:
        """Say something to the user."""
        return message

    model = ScriptedModel(
        [call("open_ticket", "t1", subject="lamp"), call("tell", "t2", message="I have opened a ticket.")]
    )
    agent = guard_agent(
        Agent[Any](
            name="desk", tools=[open_ticket, tell], tool_use_behavior={"stop_at_tool_names": ["tell"]}
        ),
        guard,
    )
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        await Runner.run(
            agent, "open a ticket", context={RUN_ID_KEY: "told"}, run_config=RunConfig(model=model)
        )
    # The SDK strips a tool's output from the exception (its data-free payload); headway's record has it.
    assert info.value.guardrail_result.guardrail.get_name() == "headway_final_answer"
    guard.flush()
    final = [e for e in guard.store.events("told") if e.type == "model"][-1]
    assert final.data["text"] == "I have opened a ticket."
    assert [f["kind"] for f in final.data["decision"]["findings"]] == ["ignored_tool_error"]
