"""One phase of the cross-process test, run as `python -m tests.openai_agents.xproc_desk PHASE DIR`.

interrupt: a refund over the threshold interrupts; the RunState is saved. approve: a new process loads
it, a person approves, the run resumes (the approved state is saved first). replay: a third process
resumes the approved state again, as a retried job would.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from agents import RunConfig, Runner, RunState
from agents.items import TResponseInputItem
from agents.testing import ScriptedModel, assistant_message, function_call

from examples.openai_support_desk import build_agents
from examples.support_desk import SupportDesk
from examples.support_desk.policy import load_policy
from headway import Guard
from headway_openai_agents import RUN_ID_KEY, escalations, guard_agent, resolve, resume


async def main(phase: str, where: Path) -> None:
    with Guard(load_policy(), store=where / "traces.db") as guard:
        desk = SupportDesk(where / "desk.db")
        agent = guard_agent(build_agents(desk), guard)
        if phase == "interrupt":
            model = ScriptedModel(
                [
                    [function_call("find_user", {"email": "alice@example.com"}, call_id="c1")],
                    [function_call("lookup_order", {"order_id": "A3"}, call_id="c2")],
                    [assistant_message("Shall I refund $250 for order A3?")],
                    [function_call("transfer_to_refunds", {}, call_id="h1")],
                    [
                        function_call(
                            "refund_order",
                            {"order_id": "A3", "amount": 250, "reason": "cracked top"},
                            call_id="c3",
                        )
                    ],
                ]
            )
            cfg = RunConfig(model=model)
            ctx: dict[str, Any] = {RUN_ID_KEY: "x1"}
            first = await Runner.run(
                agent, "I'm alice@example.com. A3 came with a cracked top.", context=ctx, run_config=cfg
            )
            history: list[TResponseInputItem] = [
                *first.to_input_list(),
                {"role": "user", "content": "Yes, go ahead."},
            ]
            result = await Runner.run(first.last_agent, history, context=ctx, run_config=cfg)
            (where / "state.json").write_text(result.to_state().to_string())
            print(os.getpid(), [e.call_id for e in escalations(result, guard)])
        else:
            source = "state.json" if phase == "approve" else "approved.json"
            # Resume from the agent the interrupted Runner.run started with (triage, second turn).
            state = await RunState.from_string(agent, (where / source).read_text())
            if phase == "approve":
                resolve(state, guard, "c3", "approve", by="maria@support")
                (where / "approved.json").write_text(state.to_string())
            model = ScriptedModel([[assistant_message(f"Refunded ({phase}).")]])
            result = await resume(agent, state, guard, run_config=RunConfig(model=model))
            print(os.getpid(), result.final_output)
        desk.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
