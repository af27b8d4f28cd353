"""`headway report` (failure classes ranked across recorded runs; `--html`, `--json`) and `headway show RUN`
(one run's trajectory, step by step). Registered by `headway.cli`; both only read the stores they are given.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import HeadwayError
from ._guard import DEFAULT_TRACES
from ._report import OUTCOMES, Progress, Report, report
from ._report_html import render_html
from ._types import Event

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["register", "run_steps"]

_ACTION_STYLES = {
    "allow": "green",
    "block": "yellow",
    "clarify": "cyan",
    "escalate": "magenta",
    "stop": "red",
}
_TEXT = 160  # characters of a message, argument list or output shown in the terminal


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `report` and `show` to the CLI's sub-commands."""
    rp = commands.add_parser(
        "report",
        help="failure classes ranked by frequency x severity, per tool and milestone",
        parents=[common],
    )
    rp.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="trace databases, JSONL exports or postgresql:// DSNs, merged (default: --store, "
        "$HEADWAY_TRACES or .headway/traces.db)",
    )
    rp.add_argument("--policy", metavar="FILE", help="a policy file: its milestones order the funnel")
    rp.add_argument("--examples", type=int, default=5, metavar="N", help="example runs per class (default 5)")
    rp.add_argument(
        "--stale-after",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="a run idle this long without ending counts as abandoned (default 24)",
    )
    rp.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report with charts")
    rp.add_argument("--json", action="store_true", help="machine-readable output")
    rp.set_defaults(command=_report)

    show = commands.add_parser("show", help="one run's trajectory, step by step", parents=[common])
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument("--json", action="store_true", help="machine-readable output (nothing clipped)")
    show.set_defaults(command=_show)


# ---- headway report ---------------------------------------------------------------------------------------


def _report(args: argparse.Namespace) -> int:
    sources: list[str] = [*args.sources, *([args.store] if args.store else [])]
    if not sources:
        sources = [os.environ.get("HEADWAY_TRACES") or DEFAULT_TRACES]
    order = None
    if args.policy:
        from ._policy import Policy

        order = [m.name for m in Policy.load(args.policy).milestones]
    if args.examples < 0 or not args.stale_after >= 0:
        raise HeadwayError("--examples and --stale-after must not be negative")
    with _progress() as progress:
        result = report(
            sources,
            milestones=order,
            stale_after=args.stale_after * 3_600,
            examples=args.examples,
            progress=progress,
        )
    if args.html:
        out = Path(args.html)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_html(result), encoding="utf-8")
    if args.json:
        print(result.to_json())
        if args.html:
            print(f"headway: wrote {args.html}", file=sys.stderr)
        return 0
    _print_report(result)
    if args.html:
        print(f"wrote {args.html}")
    return 0


@contextmanager
def _progress() -> Iterator[Progress | None]:
    """A progress bar on stderr while sources are read, only when stderr is a terminal (and rich is here)."""
    if not sys.stderr.isatty():
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(source: str, done: int, total: int | None) -> None:
        task = tasks.get(source)
        if task is None:
            task = tasks[source] = bar.add_task(_short(source), total=total)
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def _print_report(r: Report) -> None:
    from .cli import _clean, _rich, _when

    console, Table, Text = _rich()
    span = f"; {_when(r.first_ts)} to {_when(r.last_ts)} UTC" if r.first_ts is not None else ""
    console.print(Text(_clean(f"{r.runs:,} runs, {r.events:,} events from {', '.join(r.sources)}{span}")))
    ended = ", ".join(f"{r.outcomes[o]:,} {o}" for o in OUTCOMES if r.outcomes.get(o))
    console.print(Text(f"outcomes: {ended or 'none'}"))

    console.print()
    if not r.classes:
        console.print("no findings recorded", highlight=False)
    else:
        table = Table(
            title="failure classes, ranked by frequency x severity", title_justify="left", header_style="bold"
        )
        for name in ("#", "class", "runs", "% runs", "findings", "worst", "score", "example runs"):
            right = name in ("#", "runs", "% runs", "findings", "score")
            table.add_column(name, justify="right" if right else "left", overflow="fold")
        for i, c in enumerate(r.classes, 1):
            share = f"{100 * c.runs / r.runs:.1f}%" if r.runs else "-"
            examples = ", ".join(x.run_id for x in c.examples)
            cells = (str(i), c.kind, f"{c.runs:,}", share, f"{c.findings:,}", c.severity, f"{c.score:,.2f}")
            table.add_row(*(Text(_clean(x)) for x in (*cells, examples)))
        console.print(table)

    if r.tools:
        console.print()
        table = Table(title="decisions by tool", title_justify="left", header_style="bold")
        table.add_column("tool", overflow="fold")
        for name in ("calls", "allow", "block", "clarify", "escalate", "stop", "results flagged", "errors"):
            table.add_column(name, justify="right")
        table.add_column("findings", overflow="fold")
        for t in r.tools:
            flagged = sum(n for a, n in t.results.items() if a != "allow")
            actions = [t.decisions.get(a, 0) for a in ("allow", "block", "clarify", "escalate", "stop")]
            findings = ", ".join(f"{k} {n:,}" for k, n in list(t.findings.items())[:3])
            row = [t.tool, *(f"{n:,}" for n in (t.calls, *actions, flagged, t.errors)), findings]
            table.add_row(*(Text(_clean(x)) for x in row))
        console.print(table)

    if r.funnel:
        console.print()
        table = Table(title="progress funnel", title_justify="left", header_style="bold")
        for name in (
            "milestone",
            "reached",
            "% runs",
            "stalled before",
            "their last tool call",
            "last milestone",
        ):
            table.add_column(
                name, justify="right" if name in ("reached", "% runs", "stalled before") else "left"
            )
        for s in r.funnel:
            share = f"{100 * s.reached / r.runs:.1f}%" if r.runs else "-"
            tools = ", ".join(f"{k} {n:,}" for k, n in s.last_tools)
            milestones = ", ".join(f"{k} {n:,}" for k, n in s.last_milestones)
            step = (s.milestone, f"{s.reached:,}", share, f"{s.stalled:,}", tools, milestones)
            table.add_row(*(Text(_clean(x)) for x in step))
        console.print(table)
        console.print(Text(f"{r.through:,} runs reached every milestone"))


def _short(source: str) -> str:
    return source if len(source) <= 40 else "…" + source[-39:]


# ---- headway show RUN -------------------------------------------------------------------------------------


def run_steps(events: Sequence[Event]) -> list[dict[str, Any]]:
    """One dict per recorded event, with what a person reads: its text, call, result, decision, findings,
    milestones and the person's decision; nothing clipped."""
    return [_step(e) for e in events]


def _step(e: Event) -> dict[str, Any]:
    d = e.data
    step: dict[str, Any] = {"step": e.seq, "ts": e.ts, "type": e.type}
    for key in ("text", "call_id", "tool", "args", "output", "error", "milestones", "final_answer", "meta"):
        if key in d and d[key] not in (None, "", [], {}):
            step[key] = d[key]
    if e.type == "model" and d.get("tool_calls"):
        step["tool_calls"] = d["tool_calls"]
    if e.type == "human":
        step["human"] = {k: d[k] for k in ("action", "by", "message", "text", "args") if d.get(k) is not None}
    if e.type == "start" and isinstance(d.get("policy"), Mapping):
        step["policy"] = d["policy"]
    decision = d.get("decision")
    if isinstance(decision, Mapping):
        step["decision"] = {
            "action": decision.get("action"),
            "reason": decision.get("reason", ""),
            "findings": [
                {k: f.get(k) for k in ("check", "kind", "severity", "message")}
                for f in decision.get("findings") or ()
                if isinstance(f, Mapping)
            ],
        }
    return step


def _show(args: argparse.Namespace) -> int:
    from .cli import open_stores

    stores = open_stores(args.store)
    try:
        events = stores.traces.events(args.run_id)
    finally:
        stores.close()
    if not events:
        raise HeadwayError(f"no run {args.run_id!r} in the trace store")
    steps = run_steps(events)
    if args.json:
        print(json.dumps({"run_id": args.run_id, "steps": steps}, indent=2, ensure_ascii=False, default=str))
        return 0
    _print_run(args.run_id, events, steps)
    return 0


def _print_run(run_id: str, events: Sequence[Event], steps: list[dict[str, Any]]) -> None:
    from .cli import _clean, _rich, _when

    console, Table, Text = _rich()
    first, last = events[0], events[-1]
    ended = next((e for e in reversed(events) if e.type == "end"), None)
    console.print(
        Text(_clean(f"run {run_id}: {len(events)} events, {_when(first.ts)} to {_when(last.ts)} UTC"), "bold")
    )
    table = Table(box=None, header_style="bold", show_lines=False, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("what", overflow="fold", ratio=3)
    table.add_column("decision", overflow="fold", ratio=2)
    for e, step in zip(events, steps, strict=True):
        table.add_row(
            str(e.seq), _when(e.ts)[11:], e.type, _what(step, Text, _clean), _decision(step, Text, _clean)
        )
    console.print(table)
    if ended is None:
        stop = next((s for s in reversed(steps) if s.get("decision", {}).get("action") == "stop"), None)
        console.print(Text("the run was stopped" if stop else "the run has not ended", "bold"))
    else:
        action = str(ended.data.get("decision", {}).get("action", "?"))
        console.print(Text.assemble(("end decision: ", "bold"), (action, _ACTION_STYLES.get(action, ""))))


def _what(step: Mapping[str, Any], Text: type[Text], clean: Any) -> Text:
    kind = step["type"]
    if kind == "tool_call":
        line = f"{step.get('tool')}({_compact(step.get('args', {}))})"
    elif kind == "tool_result":
        line = f"{step.get('tool')} -> " + (
            f"error: {step['error']}" if "error" in step else _compact(step.get("output"))
        )
    elif kind == "model":
        calls = ", ".join(str(c.get("name")) for c in step.get("tool_calls", ()) if isinstance(c, Mapping))
        line = _clip(str(step.get("text", ""))) + (f" [calls {calls}]" if calls else "")
    elif kind == "human":
        h = step.get("human", {})
        extra = h.get("message") or h.get("text") or (_compact(h["args"]) if "args" in h else "")
        line = f"{h.get('action')} by {h.get('by')}" + (f": {extra}" if extra else "")
    elif kind == "end":
        line = f"final answer: {_clip(str(step.get('final_answer', '')))}"
    elif kind == "start":
        policy = step.get("policy", {})
        line = f"run started (policy {policy.get('name')})" if policy else "run started"
    else:
        line = _clip(str(step.get("text", ""))) if kind == "user" else kind
    text = Text(clean(_clip(line)))
    if step.get("milestones") and kind == "tool_result":
        text.append(clean(f"\nreached: {', '.join(map(str, step['milestones']))}"), "green")
    return text


def _decision(step: Mapping[str, Any], Text: type[Text], clean: Any) -> Text:
    d = step.get("decision")
    if not d:
        return Text("")
    action, findings = str(d.get("action")), d.get("findings", ())
    if action == "allow" and not findings and not d.get("reason"):
        return Text(action, "dim")
    text = Text(action, _ACTION_STYLES.get(action, ""))
    if d.get("reason") and not findings:  # with findings, the reason is their messages joined: shown below
        text.append(clean(f": {_clip(str(d['reason']))}"))
    for f in findings:
        text.append(clean(f"\n  {f.get('severity')} {f.get('kind')}: {_clip(str(f.get('message')))}"), "dim")
    return text


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _clip(text)


def _clip(text: str, limit: int = _TEXT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
