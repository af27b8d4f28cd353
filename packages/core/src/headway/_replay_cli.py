"""`headway replay` and `headway sweep`: recorded runs re-decided under another policy, or swept over the
escalation thresholds. Registered by `headway.cli`; both only read the stores they are given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from ._errors import HeadwayError
from ._guard import DEFAULT_TRACES
from ._policy import Policy
from ._replay import ReplayResult, Source, iter_replay
from ._store import is_postgres_dsn
from ._sweep import MAX_GRID, _sweep, merged_labels, missing_runs


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `replay` and `sweep` to the CLI's sub-commands.

    `common` is not used: these commands take --store more than once (several sources), which the
    common single-valued --store cannot; the global `headway --store X` still applies when none is given.
    """
    rp = commands.add_parser("replay", help="re-decide recorded runs under another policy; show what changes")
    rp.add_argument("--policy", required=True, metavar="NEW.toml", help="the policy to replay under")
    _sources_and_runs(rp)
    rp.add_argument("--json", action="store_true", help="machine-readable output")
    rp.set_defaults(command=_replay)

    sw = commands.add_parser(
        "sweep", help="unsafe actions allowed against automation kept, over the escalation thresholds"
    )
    sw.add_argument("--policy", required=True, metavar="P.toml", help="the policy whose thresholds are swept")
    _sources_and_runs(sw)
    sw.add_argument(
        "--labels",
        metavar="labels.jsonl",
        help='{"run_id", "call_id", "label": "safe"|"unsafe"} per line; wins over the escalation store',
    )
    sw.add_argument("--grid", type=int, default=11, metavar="N", help="values per threshold (default 11)")
    sw.add_argument("--html", metavar="out.html", help="also write a self-contained page with the plot")
    sw.add_argument("--json", action="store_true", help="machine-readable output")
    sw.set_defaults(command=_sweep_command)


def _sources_and_runs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store",
        action="append",
        dest="sources",
        metavar="SOURCE",
        help="a trace database, a JSONL export or a postgresql:// DSN (repeatable; default: the global "
        "--store, $HEADWAY_TRACES or .headway/traces.db)",
    )
    p.add_argument("--run", action="append", dest="runs", metavar="RUN_ID", help="only this run (repeatable)")


def _open_sources(args: argparse.Namespace, stack: contextlib.ExitStack) -> list[Source]:
    given: list[str] = args.sources or [
        getattr(args, "store", None) or os.environ.get("HEADWAY_TRACES") or DEFAULT_TRACES
    ]
    out: list[Source] = []
    for target in given:
        if is_postgres_dsn(target):
            from .cli import open_stores

            stores = open_stores(target)
            stack.callback(stores.close)
            out.append(stores.traces)  # the PostgreSQL store holds the escalations too
        elif not Path(target).exists():
            raise HeadwayError(f"no trace store or file at {target}")
        else:
            out.append(target)
    return out


def _policy(path: str) -> Policy:
    if not Path(path).is_file():
        raise HeadwayError(f"no policy file at {path}")
    return Policy.load(path)


def _print(text: str) -> None:
    from .cli import _clean  # agent-supplied text (reasons, ids) must not drive the terminal

    print(_clean(text))


def _replay(args: argparse.Namespace) -> int:
    policy = _policy(args.policy)
    result = ReplayResult(policy.name, policy.fingerprint)
    with contextlib.ExitStack() as stack:
        for source in _open_sources(args, stack):
            for diff in iter_replay(source, policy, runs=args.runs):
                result.add(diff)
    if args.runs:
        missing_runs(args.runs, [r.run_id for r in result.runs])
    if args.json:
        print(result.to_json())
    else:
        _print(result.to_text())
    return 0


def _sweep_command(args: argparse.Namespace) -> int:
    if not 2 <= args.grid <= MAX_GRID:
        raise HeadwayError(f"--grid takes 2 to {MAX_GRID} values per threshold, got {args.grid}")
    policy = _policy(args.policy)
    with contextlib.ExitStack() as stack:
        sources = _open_sources(args, stack)
        labels = merged_labels(sources, args.labels)
        result = _sweep(sources, policy, labels, args.grid, args.runs)
    if args.html:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.to_html(), encoding="utf-8")
    if args.json:
        print(result.to_json())
    else:
        _print(result.to_text())
    if args.html:
        print(f"wrote {args.html}", file=sys.stderr)
    return 0
