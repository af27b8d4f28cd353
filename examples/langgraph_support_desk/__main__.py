"""Runs the six support-desk scenarios through the LangGraph agent and prints every headway decision.

Offline by default (a scripted chat model). With OPENAI_API_KEY set and langchain-openai installed, the
same graph runs against a real model (`--real`), whose decisions are printed but not compared.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from pathlib import Path

from langchain_core.language_models import BaseChatModel

from examples.support_desk import SCENARIOS, SupportDesk
from headway import Guard, testing

from .agent import load_policy
from .play import play


def _real_model() -> BaseChatModel | None:
    if not os.environ.get("OPENAI_API_KEY"):
        return None
    try:
        from langchain_openai import ChatOpenAI  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        print("OPENAI_API_KEY is set but langchain-openai is not installed (pip install langchain-openai)")
        return None
    model: BaseChatModel = ChatOpenAI(model=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), temperature=0)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.langgraph_support_desk")
    parser.add_argument("--real", action="store_true", help="use a real OpenAI model (needs OPENAI_API_KEY)")
    parser.add_argument("--traces", default=".headway/traces.db", help="headway trace store (SQLite)")
    args = parser.parse_args(argv)
    model = _real_model() if args.real else None
    if args.real and model is None:
        return 2
    tty = sys.stdout.isatty()
    from langgraph.checkpoint.sqlite import SqliteSaver

    failures = 0
    with tempfile.TemporaryDirectory() as tmp, Guard(load_policy(), store=args.traces) as guard:
        checkpoints = sqlite3.connect(Path(tmp) / "checkpoints.db", check_same_thread=False)
        saver = SqliteSaver(checkpoints)
        for scenario in SCENARIOS:
            desk = SupportDesk(Path(tmp) / f"{scenario.name}.db", faults=scenario.faults)
            print(f"\n== {scenario.name}: {scenario.title}")
            thread = f"langgraph-{scenario.name}-{os.getpid()}"
            got = play(scenario, guard, desk, saver, thread_id=thread, model=model, echo=print, tty=tty)
            wrong = testing.mismatches(scenario.expect, got)
            status = "as expected" if not wrong else f"UNEXPECTED: {wrong}"
            print(
                f"  -> refunds executed: {desk.count('refunds')}; "
                + (status if model is None else "real model")
            )
            failures += bool(wrong) and model is None
            desk.close()
        checkpoints.close()
    print(
        f"\n{len(SCENARIOS) - failures}/{len(SCENARIOS)} scenarios decided as expected; traces in {args.traces}"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
