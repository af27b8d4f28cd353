"""Run hooks and agent hooks feed the conversation into the headway run; run ids come from the context,
from `headway_run`, or are fresh per Runner.run."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, AgentHooks, RunConfig, RunContextWrapper, Runner
from agents.testing import ScriptedModel

from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from headway import Guard
from headway_openai_agents import RUN_ID_KEY, HeadwayRunHooks, HeadwayStopped, guard_agent, headway_run

from .conftest import ALICE, call, text


def _types(guard: Guard, run_id: str) -> list[str]:
    guard.flush()
    return [e.type for e in guard.store.events(run_id)]


async def test_run_hooks_record_an_unguarded_agent(guard: Guard, desk: SupportDesk) -> None:
    model = ScriptedModel([call("find_user", "c1", email="alice@example.com"), text("Hello Alice.")])
    result = await Runner.run(
        build_agents(desk),
        ALICE,
        hooks=HeadwayRunHooks(guard),
        context={RUN_ID_KEY: "h1"},
        run_config=RunConfig(model=model),
    )
    assert result.final_output == "Hello Alice."
    assert _types(guard, "h1") == ["start", "user", "model", "model"]  # no guardrails: only the conversation
    run = guard.start_run("h1")
    assert run.view.user_messages == [ALICE]
    assert run.view.steps == 2


async def test_run_hooks_and_agent_hooks_record_each_turn_once(guard: Guard, desk: SupportDesk) -> None:
    seen: list[str] = []

    class Mine(AgentHooks[Any]):
        async def on_llm_end(self, context: RunContextWrapper[Any], agent: Agent[Any], response: Any) -> None:
            seen.append(agent.name)

    agent = build_agents(desk)
    agent.hooks = Mine()
    model = ScriptedModel([call("find_user", "c1", email="alice@example.com"), text("Hello Alice.")])
    guarded = guard_agent(agent, guard)
    await Runner.run(
        guarded,
        ALICE,
        hooks=HeadwayRunHooks(guard),
        context={RUN_ID_KEY: "h2"},
        run_config=RunConfig(model=model),
    )
    assert _types(guard, "h2") == ["start", "user", "model", "tool_call", "tool_result", "model"]
    assert seen == ["triage", "triage"]  # the agent's own hooks still run


async def test_with_both_hooks_an_unsupported_answer_is_withheld_once_and_left_for_no_guardrail(
    guard: Guard, desk: SupportDesk
) -> None:
    from agents import OutputGuardrailTripwireTriggered

    from headway_openai_agents._runs import extras

    model = ScriptedModel([text("I have refunded $40 for order A1.")])
    with pytest.raises(OutputGuardrailTripwireTriggered) as info:
        await Runner.run(
            guard_agent(build_agents(desk), guard),
            ALICE,
            hooks=HeadwayRunHooks(guard),
            context={RUN_ID_KEY: "h4"},
            run_config=RunConfig(model=model),
        )
    assert info.value.guardrail_result.agent_output == "I have refunded $40 for order A1."
    assert _types(guard, "h4") == ["start", "user", "model"]  # recorded once, by whichever hook came first
    # whichever hook ran first, no decision is left for an output guardrail of a later turn to take
    assert extras(guard.start_run("h4")).answer is None


async def test_conversation_over_several_runs_records_new_messages_only(
    guard: Guard, desk: SupportDesk
) -> None:
    model = ScriptedModel([text("Which order?"), text("Thanks.")])
    agent = guard_agent(build_agents(desk), guard)
    cfg = RunConfig(model=model)
    with headway_run("h3"):
        first = await Runner.run(agent, ALICE, run_config=cfg)
        await Runner.run(agent, [*first.to_input_list(), {"role": "user", "content": "A1."}], run_config=cfg)
    assert guard.start_run("h3").view.user_messages == [ALICE, "A1."]


async def test_without_run_id_each_run_is_its_own(guard: Guard, desk: SupportDesk) -> None:
    model = ScriptedModel([text("Hi."), text("Hi again.")])
    agent = guard_agent(build_agents(desk), guard)
    await Runner.run(agent, "one", run_config=RunConfig(model=model))
    await Runner.run(agent, "two", run_config=RunConfig(model=model))
    runs = [r for r in guard.store.runs() if r.run_id.startswith("sdk-")]
    assert len(runs) == 2


async def test_context_object_attribute(guard: Guard, desk: SupportDesk) -> None:
    class Ctx:
        headway_run_id = "h4"

    model = ScriptedModel([text("Hi.")])
    await Runner.run(
        guard_agent(build_agents(desk), guard), "hello", context=Ctx(), run_config=RunConfig(model=model)
    )
    assert _types(guard, "h4") == ["start", "user", "model"]


async def test_budget_stop_on_a_model_turn(desk: SupportDesk, tmp_path: Any) -> None:
    import dataclasses

    from examples.support_desk.policy import load_policy
    from headway import Budgets

    policy = dataclasses.replace(load_policy(), budgets=Budgets(steps=2))
    with Guard(policy, store=tmp_path / "b.db") as guard:
        model = ScriptedModel(
            [
                call("find_user", "c1", email="alice@example.com"),
                call("lookup_order", "c2", order_id="A1"),
                text("x"),
            ]
        )
        with pytest.raises(HeadwayStopped) as info:
            await Runner.run(
                guard_agent(build_agents(desk), guard),
                ALICE,
                context={RUN_ID_KEY: "b"},
                run_config=RunConfig(model=model),
            )
        assert info.value.decision.kinds == ("budget",)


def test_headway_run_needs_an_id() -> None:
    with pytest.raises(ValueError, match="non-empty"), headway_run(""):
        pass


async def test_a_final_answer_claiming_an_outcome_no_result_backs_is_flagged(
    guard: Guard, desk: SupportDesk
) -> None:
    from agents import OutputGuardrailTripwireTriggered

    model = ScriptedModel(
        [call("lookup_order", "c1", order_id="A1"), text("I have refunded $40 for order A1.")]
    )
    with pytest.raises(OutputGuardrailTripwireTriggered):  # and withheld (tests/.../test_enforcement.py)
        await Runner.run(
            guard_agent(build_agents(desk), guard),
            ALICE,
            context={RUN_ID_KEY: "claims"},
            run_config=RunConfig(model=model),
        )
    guard.flush()
    last = [e for e in guard.store.events("claims") if e.type == "model"][-1]
    assert last.data["decision"]["action"] == "block"
    assert last.data["decision"]["stage"] == "end"
    assert [f["kind"] for f in last.data["decision"]["findings"]] == ["unsupported_claim"]
    assert desk.count("refunds") == 0


def test_model_arguments_are_parsed_without_raising_on_any_text() -> None:
    from headway_openai_agents._runs import parse_args

    assert parse_args('{"order_id": "A1"}') == {"order_id": "A1"}
    assert parse_args("  ") == {}
    deep = "[" * 100_000  # json.loads raises RecursionError here, which is not a ValueError
    for raw in (deep, '{"a": 1} trailing', "[1, 2]", "NaN-ish", 7):
        assert parse_args(raw) == raw
