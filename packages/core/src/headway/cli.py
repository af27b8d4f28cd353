"""`headway`: decide escalations from a terminal, or serve the approval inbox.

    headway [--store PATH_OR_DSN] escalations list [--status pending|...|all] [--run RUN] [--limit N] [--json]
    headway escalations show ID [--json]
    headway escalations approve ID | reject ID --message M | edit ID --args JSON | answer ID --text T
    headway serve [--host 127.0.0.1] [--port 8765] [--token T]
    headway export-otel [--endpoint http://127.0.0.1:4318] [--run RUN] [--capture-content]   (headway[otel])
    headway replay --policy NEW.toml [--store SOURCE ...] [--run RUN_ID ...] [--json]
    headway sweep --policy P.toml [--store SOURCE ...] [--labels L.jsonl] [--grid N] [--html F] [--json]
    headway report [SOURCE ...] [--policy P.toml] [--html F] [--json]
    headway show RUN_ID [--json]
    headway export-test RUN_ID [--policy P.toml | pkg.module:attr] [-o FILE] [--expect STEP=ACTION ...]
    headway eval --reference REF.json [--mode strict|unordered|subset|superset] [--run RUN_ID ...] [--json]

The store is `--store`, else HEADWAY_TRACES, else `.headway/traces.db`; a `postgresql://` DSN selects
`headway.postgres`. Whoever decides names themselves with `--by` or HEADWAY_APPROVER. Exit codes: 0
done, 1 refused (already decided, unknown id, malformed input, no store), 2 usage.

Tables need `rich` (`headway[cli]`), the inbox `starlette` and `uvicorn` (`headway[server]`); both are
imported only by the commands that use them, so `--json` and the decisions work without either.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ._errors import HeadwayError
from ._escalations import STATUSES, EscalationStore, SQLiteEscalations
from ._guard import DEFAULT_TRACES
from ._otel_cli import register as _register_otel
from ._replay_cli import register as _register_replay
from ._report_cli import register as _register_report
from ._store import SQLiteStore, TraceFormatError, TraceStore, is_postgres_dsn
from ._testing_cli import register as _register_testing
from ._types import Event

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

__all__ = ["Stores", "detail", "main", "open_stores", "summarise", "trajectory"]

TRAJECTORY_EVENTS = 15


class _Usage(Exception):
    """A command line that cannot be run as given (exit 2)."""


# ---- stores and the data both front ends show -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stores:
    """The escalation store and the trace store behind it (one object for PostgreSQL)."""

    escalations: EscalationStore
    traces: TraceStore

    def close(self) -> None:
        self.escalations.close()
        if cast(object, self.traces) is not self.escalations:  # PostgresStore is both
            self.traces.close()


def open_stores(target: str | None = None, *, create: bool = False) -> Stores:
    """Open the stores at a SQLite path or a `postgresql://` DSN (default: HEADWAY_TRACES or
    `.headway/traces.db`). A missing SQLite file is refused unless `create`: a typo in --store should
    not leave an empty database behind."""
    target = target or os.environ.get("HEADWAY_TRACES") or DEFAULT_TRACES
    if is_postgres_dsn(target):
        try:
            # Imported by name so the CLI works (and type-checks) without the PostgreSQL backend.
            module = importlib.import_module("headway.postgres")
        except ImportError as e:  # the module itself, or its driver (its message says what to install)
            missing = isinstance(e, ModuleNotFoundError) and e.name == "headway.postgres"
            raise HeadwayError("this headway has no PostgreSQL store" if missing else str(e)) from None
        try:
            store = module.PostgresStore(target)
        except Exception as e:  # the driver's errors (no server, bad password) are not ours to name
            raise HeadwayError(f"cannot open the PostgreSQL store: {type(e).__name__}: {e}") from None
        return Stores(cast(EscalationStore, store), cast(TraceStore, store))
    path = Path(target)
    if not create and not path.exists():
        raise HeadwayError(f"no headway store at {path} (pass --store or set HEADWAY_TRACES)")
    escalations = SQLiteEscalations(path)
    try:
        return Stores(escalations, SQLiteStore(path))
    except BaseException:
        escalations.close()
        raise


def trajectory(traces: TraceStore | None, run_id: str, n: int = TRAJECTORY_EVENTS) -> list[dict[str, Any]]:
    """The last `n` events of a run, one summary line each: what a person reads before deciding."""
    events = [] if traces is None else traces.events(run_id)[-n:]
    return [
        {"seq": e.seq, "ts": e.ts, "type": e.type, "action": _action(e.data), "summary": summarise(e)}
        for e in events
    ]


def detail(
    escalations: EscalationStore, traces: TraceStore | None, escalation_id: str
) -> dict[str, Any] | None:
    """An escalation with its notification attempts and its run's recent trajectory (None if unknown)."""
    esc = escalations.get(escalation_id)
    if esc is None:
        return None
    return {
        "escalation": esc.to_dict(),
        "deliveries": [
            {"target": d.target, "attempt": d.attempt, "ok": d.ok, "detail": d.detail, "at": d.at}
            for d in escalations.deliveries(escalation_id)
        ],
        "trajectory": trajectory(traces, esc.run_id),
    }


def summarise(event: Event) -> str:
    """One line for one recorded event, its decision appended when it was not a plain allow."""
    d = event.data
    if event.type == "tool_call":
        text = f"{d.get('tool')}({_compact(d.get('args'), 120)})"
    elif event.type == "tool_result":
        error = d.get("error")
        text = f"{d.get('tool')} -> " + (f"error: {error}" if error else _compact(d.get("output"), 120))
    elif event.type == "model":
        calls = [
            str(c.get("name") or c.get("tool") or "?")
            for c in d.get("tool_calls") or ()
            if isinstance(c, Mapping)
        ]
        text = str(d.get("text") or "") + (f" [calls {', '.join(calls)}]" if calls else "")
    elif event.type == "human":
        extra = d.get("message") or d.get("text") or (_compact(d["args"], 80) if "args" in d else "")
        text = f"{d.get('action')} by {d.get('by')}" + (f": {extra}" if extra else "")
    elif event.type == "user":
        text = str(d.get("text") or "")
    elif event.type == "end":
        text = f"final answer: {d.get('final_answer')}"
    elif event.type == "start":
        policy = d.get("policy")
        text = f"run started (policy {policy.get('name')})" if isinstance(policy, Mapping) else "run started"
    else:
        text = _compact(d, 160)
    action = _action(d)
    if action and action != "allow":
        decision = d["decision"]
        text += f" => {action}: {decision.get('reason', '')}"
    return _clip(" ".join(text.split()), 240)


def _action(data: Mapping[str, Any]) -> str | None:
    decision = data.get("decision")
    return str(decision.get("action")) if isinstance(decision, Mapping) and decision.get("action") else None


def _compact(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return _clip(text, limit)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- the command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (argparse's own exits are caught, so tests can call this)."""
    try:
        args = _parser().parse_args(argv)
        command: Callable[[argparse.Namespace], int] = args.command
        return command(args)
    except SystemExit as e:  # --help and argparse's usage errors
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except _Usage as e:
        print(f"headway: error: {e}", file=sys.stderr)
        return 2
    except (HeadwayError, TraceFormatError, sqlite3.Error, OSError) as e:
        print(f"headway: {_clean(str(e))}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    # --store is accepted before or after the command: SUPPRESS keeps a sub-command from resetting it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", default=argparse.SUPPRESS, help="SQLite path or postgresql:// DSN")
    parser = argparse.ArgumentParser(prog="headway", description="Decide escalations; serve the inbox.")
    parser.add_argument(
        "--store",
        default=None,
        help="SQLite path or postgresql:// DSN (default: $HEADWAY_TRACES or .headway/traces.db)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    esc = commands.add_parser("escalations", help="list, show and decide escalations", parents=[common])
    actions = esc.add_subparsers(title="actions", required=True, metavar="ACTION")
    ls = actions.add_parser("list", help="escalations, newest first", parents=[common])
    ls.add_argument("--status", choices=[*STATUSES, "all"], default="pending")
    ls.add_argument("--run", help="only this run id")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(command=_list)
    show = actions.add_parser(
        "show", help="one escalation, its findings and its run's recent steps", parents=[common]
    )
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(command=_show)
    for action, helptext, option, required in (
        ("approve", "let the call run", None, False),
        ("reject", "refuse the call, telling the agent why", "--message", True),
        ("edit", "let the call run with other arguments", "--args", True),
        ("answer", "answer the question the agent asked", "--text", True),
    ):
        p = actions.add_parser(action, help=helptext, parents=[common])
        p.add_argument("id")
        if option:
            p.add_argument(option, required=required, metavar="JSON" if option == "--args" else "TEXT")
        p.add_argument("--by", help="who decides (default: $HEADWAY_APPROVER)")
        p.set_defaults(command=_decide, action=action)

    serve = commands.add_parser(
        "serve", help="the approval inbox (a web page) on this machine", parents=[common]
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--token", help="the inbox token (default: $HEADWAY_INBOX_TOKEN, else a new one)")
    serve.set_defaults(command=_serve)
    _register_otel(commands, common)  # export-otel
    _register_replay(commands, common)  # replay, sweep
    _register_report(commands, common)  # report, show
    _register_testing(commands, common)  # export-test, eval
    return parser


def _list(args: argparse.Namespace) -> int:
    stores = open_stores(args.store)
    try:
        items = stores.escalations.list(
            status=None if args.status == "all" else args.status, run_id=args.run, limit=args.limit
        )
    finally:
        stores.close()
    if args.json:
        print(json.dumps({"escalations": [e.to_dict() for e in items]}, indent=2))
        return 0
    console, Table, Text = _rich()
    if not items:
        console.print(f"no {'' if args.status == 'all' else args.status + ' '}escalations", highlight=False)
        return 0
    table = Table(box=None, header_style="bold")
    for name in ("id", "status", "created (UTC)", "run", "tool", "args", "reason", "by"):
        # Ids, names and times stay whole (they get copied); the free text wraps into what is left.
        table.add_column(name, no_wrap=name not in ("args", "reason"), overflow="fold")
    for e in items:
        cells = (
            e.id,
            e.status,
            _when(e.created_at),
            e.run_id,
            e.tool,
            _compact(dict(e.args), 60),
            e.reason,
            e.decided_by or "",
        )
        table.add_row(*(Text(_clean(c)) for c in cells))
    console.print(table)
    return 0


def _show(args: argparse.Namespace) -> int:
    stores = open_stores(args.store)
    try:
        found = detail(stores.escalations, stores.traces, args.id)
    finally:
        stores.close()
    if found is None:
        raise HeadwayError(f"no escalation {args.id!r}")
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    console, Table, Text = _rich()
    e = found["escalation"]
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("id", e["id"]),
        ("status", e["status"]),
        ("kind", e["kind"]),
        ("run / call", f"{e['run_id']} / {e['call_id']}"),
        ("created", _when(e["created_at"])),
        ("tool", e["tool"]),
        ("args", json.dumps(e["args"], indent=2, ensure_ascii=False)),
        ("reason", e["reason"]),
        ("question", e["question"]),
        ("decided", e["decided_by"] and f"{e['decided_by']} at {_when(e['decided_at'])}"),
        ("message", e["message"]),
        ("new args", e["new_args"] is not None and json.dumps(e["new_args"], ensure_ascii=False)),
        ("answer", e["text"]),
    ]
    for name, value in rows:
        if value:
            fields.add_row(name, Text(_clean(str(value))))
    console.print(fields)
    sections: list[tuple[str, list[str], list[list[Any]]]] = [
        (
            "findings",
            ["severity", "kind", "check", "message"],
            [[f["severity"], f["kind"], f["check"], f["message"]] for f in e["findings"]],
        ),
        (
            "deliveries",
            ["at (UTC)", "target", "attempt", "ok", "detail"],
            [
                [_when(d["at"]), d["target"], d["attempt"], "yes" if d["ok"] else "no", d["detail"]]
                for d in found["deliveries"]
            ],
        ),
        (
            f"recent steps of run {e['run_id']}",
            ["#", "time (UTC)", "event", "summary"],
            [[t["seq"], _when(t["ts"])[11:], t["type"], t["summary"]] for t in found["trajectory"]],
        ),
    ]
    for title, columns, body in sections:
        console.print()
        if not body:
            console.print(Text(_clean(f"{title}: none")))
            continue
        table = Table(title=_clean(title), title_justify="left", box=None, header_style="bold")
        for name in columns:
            table.add_column(name, overflow="fold")
        for r in body:
            table.add_row(*(Text(_clean(str(c))) for c in r))
        console.print(table)
    return 0


def _decide(args: argparse.Namespace) -> int:
    by = (args.by or os.environ.get("HEADWAY_APPROVER") or "").strip()
    if not by:
        raise _Usage("say who decides: --by NAME or the HEADWAY_APPROVER environment variable")
    new_args: Any = None
    if args.action == "edit":
        try:
            new_args = json.loads(args.args)
        except ValueError as e:
            raise HeadwayError(f"--args is not valid JSON ({e})") from None
    stores = open_stores(args.store)
    try:
        esc = stores.escalations.decide(
            args.id,
            args.action,
            by=by,
            message=getattr(args, "message", None),
            args=new_args,
            text=getattr(args, "text", None),
        )
    finally:
        stores.close()
    print(_clean(f"{esc.id}: {esc.status} by {esc.decided_by} ({esc.tool} in run {esc.run_id})"))
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .inbox import MIN_TOKEN_CHARS, create_app
    except ImportError as e:
        raise HeadwayError(f'the inbox needs {e.name}: pip install "headway[server]"') from None
    token = args.token or os.environ.get("HEADWAY_INBOX_TOKEN") or ""
    generated = not token
    if generated:
        token = secrets.token_urlsafe(24)
    elif len(token) < MIN_TOKEN_CHARS:
        raise _Usage(f"the inbox token must be at least {MIN_TOKEN_CHARS} characters")
    stores = open_stores(args.store, create=True)
    try:
        app = create_app(stores.escalations, stores.traces, token)
        host = f"[{args.host}]" if ":" in args.host else args.host
        url = f"http://{host}:{args.port}/"
        # The token goes in the fragment, which browsers never send to the server (nor into its logs).
        print(
            f"headway inbox: {url}#token={token}" if generated else f"headway inbox: {url} (token as given)"
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print("headway: warning: the inbox speaks plain HTTP; put TLS in front of it", file=sys.stderr)
        sys.stdout.flush()
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        stores.close()
    return 0


# ---- output -------------------------------------------------------------------------------------------


def _rich() -> tuple[Console, type[Table], type[Text]]:
    """rich's Console (on the current stdout), Table and Text, or a clear error naming the extra."""
    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:
        raise HeadwayError('tables need rich: pip install "headway[cli]" (or use --json)') from None
    return Console(), Table, Text


def _clean(text: str) -> str:
    """Agent-supplied text with control and bidi characters escaped: an ESC in a tool argument must not
    drive the terminal of the person reading it. (rich's Text also keeps `[...]` from being markup.)"""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


def _when(ts: float | None) -> str:
    return "" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


if __name__ == "__main__":
    sys.exit(main())
