"""Which headway run an SDK run belongs to, and the little per-run state the adapter keeps beside it.

A headway run usually spans several `Runner.run` calls (a conversation, an interrupt and its resume,
possibly in another process), so its id is given by the caller: in the run's context
(`context={"headway_run_id": ...}`, which RunState serialises) or with `headway_run(run_id)`. A run with
neither gets a fresh id per `Runner.run` call.
"""

from __future__ import annotations

import json
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, cast

from agents import RunContextWrapper

from headway import Decision, Guard, Run

RUN_ID_KEY = "headway_run_id"

_bound: ContextVar[str | None] = ContextVar("headway_run_id", default=None)


@contextmanager
def headway_run(run_id: str) -> Iterator[str]:
    """Run the agent inside `with headway_run("conversation-42"):` to bind its headway run id.

    Covers `Runner.run`, `run_sync` and `run_streamed` started inside the block. An id in the run's
    context (`context={"headway_run_id": ...}`) takes precedence, and survives a serialised RunState.
    """
    if not isinstance(run_id, str) or not run_id:
        raise ValueError("headway_run needs a non-empty run id string")
    token = _bound.set(run_id)
    try:
        yield run_id
    finally:
        _bound.reset(token)


def explicit_run_id(context: Any) -> str | None:
    """The id from the user's context object (a mapping key or an attribute), or from `headway_run`."""
    if type(context) is dict or isinstance(context, Mapping):
        value = context.get(RUN_ID_KEY)
    else:
        value = getattr(context, RUN_ID_KEY, None)
    if isinstance(value, str) and value:
        return value
    return _bound.get()


# Runs without an explicit id: one fresh id per `Runner.run` call. The SDK shares one Usage object
# between the run's context wrapper and every ToolContext and hook context it derives, so its identity
# names the SDK run. (A RunState copies it, which is why resuming needs an explicit id.)
_auto: dict[int, tuple[weakref.ref[Any], str]] = {}
_auto_lock = threading.Lock()


def run_id_for(ctx: RunContextWrapper[Any]) -> str:
    rid = explicit_run_id(ctx.context)
    if rid is not None:
        return rid
    usage = ctx.usage
    key = id(usage)
    with _auto_lock:
        hit = _auto.get(key)
        if hit is not None and hit[0]() is usage:
            return hit[1]
        rid = "sdk-" + uuid.uuid4().hex

        def _forget(_ref: weakref.ref[Any], key: int = key) -> None:
            with _auto_lock:
                _auto.pop(key, None)

        _auto[key] = (weakref.ref(usage, _forget), rid)
        return rid


@dataclass
class Extras:
    """What the adapter remembers about one headway run, beyond what the core records.

    `alias`: SDK call id -> headway call id, for a call the model re-issued after a person edited its
    arguments (the SDK cannot change an interrupted call's arguments). `edits`: (tool, canonical args)
    -> the edited headway call waiting for the model's new call. `users_seen`: user messages of the SDK
    transcript already given to headway. `last_response`: the last model response recorded (run hooks
    and agent hooks may both report it), and `last_answer` the decision on it when it was a final answer
    (with its text). `answer`: that decision again, for the output guardrail to take.
    """

    alias: dict[str, str] = field(default_factory=dict)
    edits: dict[tuple[str, str], str] = field(default_factory=dict)
    users_seen: list[str] | None = None
    answer: Decision | None = None
    last_response: weakref.ref[Any] | None = None
    last_answer: tuple[str, Decision] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_EXTRAS = "headway_openai_agents.extras"  # the Run.memo key: kept on the run, it ends with the run
_extras_lock = threading.Lock()


def extras(run: Run) -> Extras:
    e = run.memo.get(_EXTRAS)
    if e is not None:
        return cast(Extras, e)
    with _extras_lock:
        e = run.memo.get(_EXTRAS)
        if e is None:
            e = run.memo[_EXTRAS] = Extras()
        return cast(Extras, e)


def canonical(args: Any) -> str:
    return json.dumps(args, sort_keys=True, separators=(",", ":"), default=str)


def parse_args(raw: Any) -> Any:
    """Arguments as the model sent them: a JSON object string becomes a dict; anything else is passed on
    for headway to judge (it never raises on bad input, deep nesting included)."""
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except (ValueError, RecursionError):
            return raw
        return parsed if isinstance(parsed, dict) else raw
    return raw


def run_for(guard: Guard, ctx: RunContextWrapper[Any]) -> Run:
    return guard.start_run(run_id_for(ctx))
