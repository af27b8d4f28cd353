"""`python -m bench.gauntlet [--seed N] [--tasks N] [--sample N] [--no-adapters] [--out PATH]`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .evaluate import evaluate
from .report import markdown


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    ap = argparse.ArgumentParser(prog="python -m bench.gauntlet", description=__doc__)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tasks", type=int, default=400, help="clean tasks (each gets up to 10 fault copies)")
    ap.add_argument("--sample", type=int, default=40, help="tasks also played through both adapters")
    ap.add_argument("--no-adapters", action="store_true", help="core only")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    a = ap.parse_args(argv)
    g = evaluate(a.seed, a.tasks, a.sample, adapters=() if a.no_adapters else ("langgraph", "openai_agents"))
    text = markdown(g)
    print(text)
    a.out.write_text(text)
    print(f"written to {a.out}; seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in g.seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
