"""Tool validators: built-in checks a policy combines, and the `@check` decorator for your own.

Every check is a plain callable over `(call, view)` returning None (pass), a message, or Findings. Before
a call it sees the proposed arguments; after it, `call.output` and `call.error` are set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, overload

from ._normalize import any_match, as_patterns, dicts, error_in, is_id_key, leaves, mentions, norm
from ._policy import Check, CheckResult
from ._types import KINDS, SEVERITIES, Action, Finding, Kind, Severity
from ._view import RunView, ToolCall

__all__ = [
    "Check",
    "all_of",
    "any_of",
    "args_schema",
    "bounds",
    "check",
    "confirmed",
    "consistent_with_args",
    "evaluate",
    "grounded",
    "no_error_payload",
    "not_copied",
    "not_empty",
    "not_truncated",
    "observed",
    "once",
    "one_of",
    "output_schema",
    "owned",
    "requires_prior",
    "to_findings",
    "unambiguous",
]

Sources = str | Sequence[str] | None


class _Check:
    """A named check with a failure class and a default severity; subclasses implement `run`."""

    kind: Kind = "policy_violation"

    def __init__(self, name: str, kind: Kind, severity: Severity) -> None:
        if kind not in KINDS:
            raise ValueError(f"check {name!r}: kind must be one of {KINDS}, got {kind!r}")
        if severity not in SEVERITIES:
            raise ValueError(f"check {name!r}: severity must be one of {SEVERITIES}, got {severity!r}")
        self.name = name
        self.kind = kind
        self.severity = severity

    def __init_subclass__(cls) -> None:
        # Calling a check calls its `run` directly: one Python frame less per check on the hot path.
        super().__init_subclass__()
        if "run" in cls.__dict__:
            cls.__call__ = cls.run  # type: ignore[method-assign]

    def __call__(self, call: ToolCall, view: RunView, /) -> CheckResult:
        return self.run(call, view)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        raise NotImplementedError

    def finding(
        self,
        message: str,
        *,
        kind: Kind | None = None,
        severity: Severity | None = None,
        decision: Action | None = None,
        **evidence: Any,
    ) -> Finding:
        return Finding(self.name, kind or self.kind, severity or self.severity, message, evidence, decision)

    def note(self, message: str, **evidence: Any) -> Finding:
        """A 'could not evaluate' finding: recorded for diagnosis, never blocks."""
        return self.finding(message, severity="note", **evidence)

    def __repr__(self) -> str:
        return f"<check {self.name} kind={self.kind} severity={self.severity}>"


def evaluate(check: Check, call: ToolCall, view: RunView) -> list[Finding]:
    """Run one check and turn whatever it returned into Findings (exceptions propagate to the caller)."""
    return to_findings(check, check(call, view))


def to_findings(check: Check, result: CheckResult) -> list[Finding]:
    """What a check returned (None, a message, a Finding or several) as a list of Findings."""
    if result is None or result == "" or result == ():
        return []
    # A bare function (no @check) is a medium `policy_violation` named after itself, as in `as_check`.
    name = str(getattr(check, "name", None) or getattr(check, "__name__", "check"))
    kind: Kind = getattr(check, "kind", "policy_violation")
    severity: Severity = getattr(check, "severity", "medium")
    if isinstance(result, str):
        return [Finding(name, kind, severity, result)]
    if isinstance(result, Finding):
        return [result]
    out: list[Finding] = []
    items: Iterable[Any] = result
    for r in items:
        if isinstance(r, Finding):
            out.append(r)
        elif isinstance(r, str):
            out.append(Finding(name, kind, severity, r))
        else:
            raise TypeError(f"check {name!r} returned {type(r).__name__}; expected None, str or Finding")
    return out


# ---- custom checks ---------------------------------------------------------------------------------


class _FunctionCheck(_Check):
    def __init__(
        self, fn: Callable[[ToolCall, RunView], CheckResult], name: str, kind: Kind, severity: Severity
    ):
        super().__init__(name, kind, severity)
        self.fn = fn
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        return self.fn(call, view)


CheckFn = Callable[[ToolCall, RunView], CheckResult]


@overload
def check(fn: CheckFn, /) -> Check: ...
@overload
def check(
    *, kind: Kind = "policy_violation", severity: Severity = "medium", name: str | None = None
) -> Callable[[CheckFn], Check]: ...
def check(
    fn: CheckFn | None = None,
    /,
    *,
    kind: Kind = "policy_violation",
    severity: Severity = "medium",
    name: str | None = None,
) -> Check | Callable[[CheckFn], Check]:
    """Turn a plain function `(call, view) -> None | str | Finding` into a named check.

    >>> @check(kind="policy_violation", severity="high")
    ... def same_owner(call, view): ...
    """

    def wrap(f: CheckFn) -> Check:
        return _FunctionCheck(f, name or str(getattr(f, "__name__", "check")), kind, severity)

    return wrap(fn) if fn is not None else wrap


def as_check(obj: Any, *, name: str | None = None) -> Check:
    """A Check from a Check or a bare function (a bare function is a medium `policy_violation`)."""
    if isinstance(obj, _Check):
        return obj
    if callable(obj) and all(hasattr(obj, a) for a in ("name", "kind", "severity")):
        return obj  # type: ignore[no-any-return]
    if callable(obj):
        return _FunctionCheck(
            obj, name or str(getattr(obj, "__name__", "check")), "policy_violation", "medium"
        )
    raise TypeError(f"not a check: {obj!r}")


# ---- arguments -------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        k = norm(value)
        try:
            return float(k) if k is not None else None
        except ValueError:
            return None
    return None


class _Bounds(_Check):
    def __init__(self, arg: str, lo: float | None, hi: float | None, severity: Severity) -> None:
        super().__init__("bounds", "invalid_args", severity)
        self.arg, self.lo, self.hi = arg, lo, hi

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if self.arg not in call.args:
            return None
        raw = call.args[self.arg]
        x = _number(raw)
        if x is None or not math.isfinite(x):
            return self.finding(
                f"{self.arg} must be a finite number, got {raw!r}", arg=self.arg, value=repr(raw)
            )
        if self.lo is not None and x < self.lo:
            return self.finding(f"{self.arg}={raw} is below the minimum {self.lo:g}", arg=self.arg, value=x)
        if self.hi is not None and x > self.hi:
            return self.finding(f"{self.arg}={raw} is above the maximum {self.hi:g}", arg=self.arg, value=x)
        return None


def bounds(
    arg: str, *, min: float | None = None, max: float | None = None, severity: Severity = "high"
) -> Check:
    """Numeric argument within [min, max]; a non-number or NaN is `invalid_args` too."""
    return _Bounds(arg, min, max, severity)


class _OneOf(_Check):
    def __init__(self, arg: str, values: Iterable[Any], severity: Severity) -> None:
        super().__init__("one_of", "invalid_args", severity)
        self.arg = arg
        self.values = tuple(values)
        self.keys = {norm(v) for v in self.values}

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if self.arg not in call.args:
            return None
        v = call.args[self.arg]
        if norm(v) in self.keys:
            return None
        allowed = ", ".join(repr(x) for x in self.values)
        return self.finding(f"{self.arg}={v!r} is not one of {allowed}", arg=self.arg, value=repr(v))


def one_of(arg: str, values: Iterable[Any], *, severity: Severity = "high") -> Check:
    """Argument is one of these values (compared normalised: case, whitespace, numbers by value)."""
    return _OneOf(arg, values, severity)


class _Schema(_Check):
    def __init__(self, name: str, kind: Kind, schema: Any, severity: Severity, target: str) -> None:
        super().__init__(name, kind, severity)
        self.target = target
        self.validate = _validator(schema)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if self.target == "output" and (call.error is not None or not call.done):
            return None
        value = call.args if self.target == "args" else call.output
        errors = self.validate(value)
        if not errors:
            return None
        return self.finding(
            f"{'arguments do' if self.target == 'args' else 'the output does'} not match the schema: "
            + "; ".join(errors[:5]),
            errors=errors[:20],
        )


def _validator(schema: Any) -> Callable[[Any], list[str]]:
    """A function returning error strings, from a pydantic model / Python type, or a JSON schema dict."""
    if isinstance(schema, Mapping):
        try:
            import jsonschema  # type: ignore[import-untyped,unused-ignore]
        except ImportError as e:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                'JSON-schema checks need the jsonschema package: pip install "headway[jsonschema]"'
            ) from e
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        v = cls(schema)

        def check_json(value: Any) -> list[str]:
            return [
                f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in v.iter_errors(value)
            ]

        return check_json
    from pydantic import TypeAdapter, ValidationError

    adapter: TypeAdapter[Any] = TypeAdapter(schema)

    def check_py(value: Any) -> list[str]:
        try:
            adapter.validate_python(value)
        except ValidationError as e:
            return [f"{'.'.join(map(str, err['loc'])) or '<root>'}: {err['msg']}" for err in e.errors()]
        return []

    return check_py


def args_schema(schema: Any, *, severity: Severity = "high") -> Check:
    """Arguments validate against a pydantic model, a Python type, or a JSON schema (`headway[jsonschema]`)."""
    return _Schema("args_schema", "invalid_args", schema, severity, "args")


def output_schema(schema: Any, *, severity: Severity = "medium") -> Check:
    """After a call: the output validates against a pydantic model, a Python type, or a JSON schema."""
    return _Schema("output_schema", "silent_tool_error", schema, severity, "output")


# ---- trajectory preconditions --------------------------------------------------------------------


class _RequiresPrior(_Check):
    def __init__(self, tools: Sources, same: Sequence[str], severity: Severity) -> None:
        super().__init__("requires_prior", "unmet_precondition", severity)
        self.tools = as_patterns(tools)
        if not self.tools:
            raise ValueError("requires_prior needs at least one tool name or glob")
        self.same = tuple(same)
        self.what = " or ".join(self.tools)  # for the messages

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        want = {a: call.args[a] for a in self.same if a in call.args}
        what = self.what
        if self.same and len(want) < len(self.same):
            # No value to match: no earlier call can have had "the same" one, so the precondition is unmet
            # (passing here would let `refund_order(amount=40)` skip the lookup of any order at all).
            missing = [a for a in self.same if a not in call.args]
            return self.finding(
                f"{call.tool} was called without {', '.join(missing)}, so it cannot be matched to an earlier "
                f"{what}; name the {', '.join(missing)} you looked up",
                required=list(self.tools),
                missing=missing,
            )
        if want:
            prior = view.calls_with(self.tools, want)
            # An earlier output that names the entity (a list or search result) also counts.
            if not prior and len(want) == 1:
                hit = view._latest_entity(self.tools, want)
                if hit is not None:
                    last = view.last_call(hit[1], succeeded=True)
                    if last is not None:
                        prior = [last]
        elif view.last_call(self.tools, succeeded=True) is not None:
            return None  # any earlier call will do: the latest success, found without copying them all
        else:
            prior = view.calls(self.tools)
        if any(c.succeeded for c in prior):
            return None
        detail = " with " + ", ".join(f"{k}={v!r}" for k, v in want.items()) if want else ""
        failed = [c for c in prior if c.failed]
        if failed:
            c = failed[-1]
            why = c.error or "its result was flagged"
            return self.finding(
                f"{c.tool}{detail} failed at step {c.step} ({why}); {call.tool} cannot rely on it",
                kind="ignored_tool_error",
                steps=[c.step],
            )
        return self.finding(
            f"{call.tool} needs a successful {what}{detail} first; call it before {call.tool}",
            required=list(self.tools),
            same=want,
        )


def requires_prior(
    tools: str | Sequence[str], *, same: Sequence[str] = (), severity: Severity = "high"
) -> Check:
    """One of these tools (names or globs) succeeded earlier in the run, with the same `same` arguments.

    A prior call counts when it ran without an error and no after-check flagged it. With `same`, the
    earlier call had equal argument values (normalised), or its output named the entity.
    """
    return _RequiresPrior(tools, same, severity)


def _default_covering(args: Mapping[str, Any]) -> list[str]:
    # Identifiers, numbers and short codes are what a proposal must spell out; free text need not be.
    out = []
    for k, v in args.items():
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int | float) or (
            isinstance(v, str) and v.strip() and len(v) <= 64 and " " not in v.strip()
        ):
            out.append(k)
    return out


class _Confirmed(_Check):
    def __init__(self, covering: Sequence[str] | None, severity: Severity) -> None:
        super().__init__("confirmed", "unconfirmed", severity)
        self.covering = None if covering is None else tuple(covering)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        names = self.covering if self.covering is not None else _default_covering(call.args)
        if view.refused():
            return self.finding(
                f"the user said no; do not run {call.tool}",
                decision="block",
                answer=view.user_messages[-1][:200],
            )
        conf = view.confirmation()
        if conf is None:
            values = ", ".join(f"{n}={call.args[n]!r}" for n in names if n in call.args)
            return self.finding(
                f"{call.tool} needs the user's explicit yes: describe the action ({values}) and wait for confirmation",
                covering=list(names),
            )
        proposal = conf[0]
        missing = [
            n
            for n in names
            if n in call.args
            and not all(
                k is None or mentions(proposal, k) for k in (norm(v) for _, v in leaves(call.args[n]))
            )
        ]
        if missing:
            return self.finding(
                "the user's yes answered a proposal that did not name "
                + ", ".join(f"{n}={call.args[n]!r}" for n in missing)
                + "; propose these exact values and ask again",
                missing=missing,
            )
        return None


def confirmed(covering: Sequence[str] | None = None, *, severity: Severity = "high") -> Check:
    """The user's latest message is an explicit yes to the agent's last proposal, which named the values.

    `covering`: the arguments whose values the proposal must name (default: every identifier-like or
    numeric argument). "No", "wait", a hedged or questioning answer, a yes to a vaguer proposal and
    silence do not count; an explicit "no" blocks outright.
    """
    return _Confirmed(covering, severity)


class _Grounded(_Check):
    def __init__(self, args: Sequence[str], sources: Sources, severity: Severity) -> None:
        super().__init__("grounded", "ungrounded", severity)
        self.args = tuple(args)
        pats = as_patterns(sources)
        self.user = not pats or "user" in pats
        self.tools: tuple[str, ...] | None = None if not pats else tuple(p for p in pats if p != "user")

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        names = self.args or tuple(call.args)
        bad: list[str] = []
        for name in names:
            if name not in call.args:
                continue
            for _, leaf in leaves(call.args[name]):
                if isinstance(leaf, bool) or norm(leaf) is None:
                    continue
                if self.user and view.user_said(leaf):
                    continue
                if (self.tools is None or self.tools) and view.seen_in_outputs(leaf, self.tools or None):
                    continue
                bad.append(f"{name}={leaf!r}")
        if not bad:
            return None
        where = "the user's words" if self.tools == () else "the user's words or an earlier tool result"
        return self.finding(
            f"{', '.join(bad)} {'appears' if len(bad) == 1 else 'appear'} nowhere in {where}: an assumption, "
            "not a fact",
            values=bad,
            question=f"Before I continue: can you confirm {', '.join(bad)}?",
        )


def grounded(*args: str, sources: Sources = None, severity: Severity = "medium") -> Check:
    """These arguments' values were given by the user or returned by a tool, not assumed by the model.

    `sources` mixes tool names/globs and "user" (the user's own words only); the default is the user's
    words plus any tool output. Matching is normalised (numbers by value, case, whitespace). With no
    argument names, every argument is checked.
    """
    return _Grounded(args, sources, severity)


def _expected_ok(actual: Any, expected: Any) -> bool:
    if callable(expected):
        return bool(expected(actual))
    if isinstance(expected, list | tuple | set | frozenset):
        return norm(actual) in {norm(e) for e in expected}
    return norm(actual) == norm(expected)


class _Observed(_Check):
    def __init__(
        self, tools: Sources, match: Mapping[str, str], where: Mapping[str, Any], severity: Severity
    ) -> None:
        super().__init__("observed", "unmet_precondition", severity)
        self.tools = as_patterns(tools)
        if not self.tools or not match:
            raise ValueError("observed needs tools and match={'<output field>': '<argument name>'}")
        self.match = dict(match)
        self.where = dict(where)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        want = {field_name: call.args[arg] for field_name, arg in self.match.items() if arg in call.args}
        if len(want) < len(self.match):
            # Without the argument the entity is unknown, so its state cannot be shown to hold.
            missing = [arg for arg in self.match.values() if arg not in call.args]
            return self.finding(
                f"{call.tool} was called without {', '.join(missing)}, so the state it requires cannot be "
                f"checked against {' or '.join(self.tools)}",
                missing=missing,
            )
        label = ", ".join(f"{k}={v!r}" for k, v in want.items())
        hit = view._latest_entity(self.tools, want)
        if hit is None:
            return self.finding(
                f"no result of {' or '.join(self.tools)} shows {label}; look it up before {call.tool}",
                match=want,
            )
        step, tool, entity = hit
        first_field, first_value = next(iter(want.items()))
        for c in view.conflicts_for(first_field, first_value):
            if c.field in self.where:
                return self.finding(
                    f"results disagree about {c.field} of {label}: {c.before!r} (step {c.steps[0]}) vs "
                    f"{c.after!r} (step {c.steps[1]}); re-check before {call.tool}",
                    kind="silent_tool_error",
                    steps=list(c.steps),
                )
        for field_name, expected in self.where.items():
            actual = entity.get(field_name)
            if not _expected_ok(actual, expected):
                shown = getattr(expected, "__name__", None) if callable(expected) else expected
                return self.finding(
                    f"{field_name} of {label} is {actual!r} (per {tool}, step {step}); {call.tool} requires {shown!r}",
                    steps=[step],
                    field=field_name,
                    actual=actual,
                )
        return None


def observed(
    tools: str | Sequence[str],
    *,
    match: Mapping[str, str],
    where: Mapping[str, Any] | None = None,
    severity: Severity = "high",
) -> Check:
    """A state precondition read from the latest observed output about the entity.

    `tools`: one tool, a list or a glob (write tools that return the updated entity count too).
    `match={"order_id": "order_id"}`: the KEY is the field in the earlier output, the VALUE is this
    call's argument that must equal it. `where={"status": "pending"}`: fields the entity must have (a
    value, a list of allowed values, or a predicate). Conflicting observations fail the check.
    """
    return _Observed(tools, match, where or {}, severity)


class _Once(_Check):
    def __init__(self, key: Sequence[str], tools: Sources, severity: Severity) -> None:
        super().__init__("once", "repeated_side_effect", severity)
        self.key = tuple(key)
        self.tools = as_patterns(tools)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        want = {k: call.args[k] for k in self.key if k in call.args}
        if len(want) < len(self.key):
            return None
        tools = self.tools or (call.tool,)
        if want:
            prior = [c for c in view.calls_with(tools, want) if c.error is None and c is not call]
        else:
            prior = [c for c in view.calls(tools) if c.error is None and c is not call]
        if not prior:
            return None
        p = prior[-1]
        label = ", ".join(f"{k}={v!r}" for k, v in want.items()) or "this run"
        return self.finding(
            f"{p.tool} already ran for {label} at step {p.step}; this side effect may happen only once",
            steps=[c.step for c in prior],
        )


def once(key: Sequence[str] = (), *, tools: Sources = None, severity: Severity = "high") -> Check:
    """A side effect with the same key may not repeat, across these tools (default: this tool).

    A call that failed with an error does not count, so a failed write may be retried.
    """
    return _Once(key, tools, severity)


class _Owned(_Check):
    def __init__(self, arg: str, owner_field: str, via: Sources, field_name: str | None, severity: Severity):
        super().__init__("owned", "policy_violation", severity)
        self.arg, self.owner_field, self.field = arg, owner_field, field_name or arg
        self.via = as_patterns(via)
        if not self.via:
            raise ValueError("owned needs via=<tool name, list or glob that returns the entity>")

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if self.arg not in call.args:
            return None
        value = call.args[self.arg]
        if view.identity is None:
            return self.finding(
                f"the acting user is not identified yet; authenticate the user before {call.tool}",
                kind="unmet_precondition",
            )
        entity = view.last_output(self.via, **{self.field: value})
        if not isinstance(entity, Mapping):
            return self.finding(
                f"{self.arg}={value!r} was not looked up via {' or '.join(self.via)}; cannot tell who owns it",
                kind="unmet_precondition",
            )
        owner = entity.get(self.owner_field)
        if owner is None:
            return self.note(f"{self.owner_field} missing from the looked-up entity; ownership not evaluated")
        if norm(owner) != norm(view.identity):
            return self.finding(
                f"{self.arg}={value!r} belongs to {self.owner_field}={owner!r}, not the authenticated user "
                f"{view.identity!r}",
                owner=owner,
                identity=view.identity,
            )
        return None


def owned(
    arg: str,
    *,
    owner_field: str = "user_id",
    via: str | Sequence[str],
    field: str | None = None,
    severity: Severity = "high",
) -> Check:
    """The entity named by `arg` belongs to the acting user (`Policy(identity=...)`).

    The entity is the latest output of `via` whose `field` (default: the argument's name) equals the
    argument; its `owner_field` must equal the identity.
    """
    return _Owned(arg, owner_field, via, field, severity)


class _Unambiguous(_Check):
    def __init__(self, args: Sequence[str], severity: Severity) -> None:
        super().__init__("unambiguous", "ambiguous", severity)
        self.args = tuple(args)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        names = self.args or tuple(a for a in call.args if is_id_key(a))
        conf: tuple[str, str] | bool | None = False
        for name in names:
            if name not in call.args:
                continue
            value = call.args[name]
            k = norm(value)
            cands = view.candidates(name)
            if k is None or cands is None or k not in cands[2]:
                continue
            if view.user_said(value) or view.described(name, k):
                continue
            if conf is False:
                conf = view.confirmation()
            if isinstance(conf, tuple) and mentions(conf[0], k):
                continue
            options = " or ".join(str(v) for v in cands[3][:6])
            return self.finding(
                f"{name}={value!r} is one of {len(cands[2])} candidates {cands[1]} returned at step {cands[0]} "
                f"({options}) and the user did not say which",
                steps=[cands[0]],
                candidates=list(cands[3][:20]),
                question=f"Which one do you mean: {options}?",
            )
        return None


def unambiguous(*args: str, severity: Severity = "high") -> Check:
    """A write's target was not silently picked from several candidates a tool returned.

    When a tool listed several values for the argument (e.g. two orders), the user's words or a
    confirmed proposal must name the chosen one; otherwise the agent must ask (clarify). With no
    argument names, every identifier-like argument (`*_id`, ...) is checked. On by default for write
    tools (`Policy(detect_ambiguity=False)` turns the automatic one off).
    """
    return _Unambiguous(args, severity)


# ---- after a call ----------------------------------------------------------------------------------


class _NoErrorPayload(_Check):
    def __init__(self, severity: Severity) -> None:
        super().__init__("no_error_payload", "silent_tool_error", severity)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if call.error is not None:
            return None
        err = error_in(call.output)
        if err is None:
            return None
        return self.finding(
            f"{call.tool} reported success but its result carries an error ({err})", error=err
        )


def no_error_payload(*, severity: Severity = "high") -> Check:
    """After a call: no error inside a "successful" result (error keys, status "failed", ok=false, 4xx/5xx)."""
    return _NoErrorPayload(severity)


def _is_empty(output: Any) -> bool:
    if output is None:
        return True
    if type(output) is dict or type(output) is list:
        return not output
    if isinstance(output, str):
        return output.strip().casefold() in ("", "null", "none", "[]", "{}", '""')
    if isinstance(output, Mapping | list | tuple):
        return len(output) == 0
    return False


class _NotEmpty(_Check):
    def __init__(self, severity: Severity) -> None:
        super().__init__("not_empty", "silent_tool_error", severity)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if call.error is None and _is_empty(call.output):
            return self.finding(f"{call.tool} returned an empty result ({call.output!r})")
        return None


def not_empty(*, severity: Severity = "medium") -> Check:
    """After a call: the result is not empty (None, "", {}, [], "null")."""
    return _NotEmpty(severity)


_TRUNCATION_RE = re.compile(r"(\.\.\.|…|\[truncated\]|\(truncated\)|<truncated>)\s*$", re.IGNORECASE)


class _NotTruncated(_Check):
    def __init__(self, max_chars: int | None, severity: Severity) -> None:
        super().__init__("not_truncated", "silent_tool_error", severity)
        self.max_chars = max_chars

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        out = call.output
        if call.error is not None or not isinstance(out, str):
            return None
        if out.lstrip()[:1] in ("{", "["):
            return self.finding(f"{call.tool} returned JSON that does not parse: it looks cut off")
        if _TRUNCATION_RE.search(out[-40:]):
            return self.finding(f"{call.tool} returned a result that ends in a truncation marker")
        if self.max_chars is not None and len(out) >= self.max_chars:
            return self.finding(
                f"{call.tool} returned {len(out)} characters, the tool's limit: likely truncated"
            )
        return None


def not_truncated(*, max_chars: int | None = None, severity: Severity = "medium") -> Check:
    """After a call: the result is not cut off (unparseable JSON, a truncation marker, or `max_chars` long)."""
    return _NotTruncated(max_chars, severity)


class _ConsistentWithArgs(_Check):
    def __init__(self, args: Sequence[str], fields: Mapping[str, str], severity: Severity) -> None:
        super().__init__("consistent_with_args", "silent_tool_error", severity)
        self.args = tuple(args)
        self.fields = dict(fields)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        if call.error is not None:
            return None
        names = self.args or tuple(call.args)
        unknown: list[str] = []
        for name in names:
            if name not in call.args:
                continue
            field_name = self.fields.get(name, name)
            found = False
            for d in dicts(call.output, limit=50):
                if field_name in d:
                    found = True
                    got = d[field_name]
                    if norm(got) != norm(call.args[name]):
                        return self.finding(
                            f"{call.tool} was called with {name}={call.args[name]!r} but its result says "
                            f"{field_name}={got!r}",
                            arg=name,
                            expected=call.args[name],
                            got=got,
                        )
                    break
            if not found:
                unknown.append(field_name)
        if unknown and self.args:
            return self.note(f"result has no {', '.join(unknown)}: consistency not evaluated")
        return None


def consistent_with_args(
    *args: str, fields: Mapping[str, str] | None = None, severity: Severity = "high"
) -> Check:
    """After a call: fields of the result that echo an argument hold the same value (normalised).

    `fields` maps an argument to a differently named result field ({"amount": "refunded_amount"}).
    A result without the field gives a note ("could not evaluate"), never a block.
    """
    return _ConsistentWithArgs(args, fields or {}, severity)


# ---- combinators ---------------------------------------------------------------------------------


class _AnyOf(_Check):
    def __init__(self, parts: Sequence[Check], severity: Severity | None) -> None:
        if not parts:
            raise ValueError("any_of needs at least one check")
        first = parts[0]
        super().__init__(
            "any_of(" + ", ".join(p.name for p in parts) + ")", first.kind, severity or first.severity
        )
        self.parts = tuple(parts)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        failures: list[Finding] = []
        for p in self.parts:
            found = [f for f in evaluate(p, call, view) if f.severity != "note"]
            if not found:
                return None
            failures.extend(found)
        return self.finding(
            "none of the allowed conditions holds: " + "; ".join(f.message for f in failures),
            kind=failures[0].kind,
            parts=[f.to_dict() for f in failures],
        )


def any_of(*parts: Check, severity: Severity | None = None) -> Check:
    """Passes when one of the checks passes (e.g. cancel if booked within 24 h, or insured, or ...)."""
    return _AnyOf(parts, severity)


class _AllOf(_Check):
    def __init__(self, parts: Sequence[Check]) -> None:
        if not parts:
            raise ValueError("all_of needs at least one check")
        super().__init__("all_of(" + ", ".join(p.name for p in parts) + ")", parts[0].kind, parts[0].severity)
        self.parts = tuple(parts)

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        return [f for p in self.parts for f in evaluate(p, call, view)]


def all_of(*parts: Check) -> Check:
    """Passes when every check passes; reports every failure."""
    return _AllOf(parts)


# ---- text from third parties ---------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(text.casefold())


def _runs(words: list[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i : i + n]) for i in range(len(words) - n + 1))


class _NotCopied(_Check):
    def __init__(self, args: Sequence[str], untrusted: Sources, min_words: int, severity: Severity) -> None:
        super().__init__("not_copied", "policy_violation", severity)
        self.args = tuple(args)
        self.untrusted = as_patterns(untrusted)
        if not self.untrusted:
            raise ValueError("not_copied needs untrusted=<the tools whose results others write>")
        if min_words < 2:
            raise ValueError("not_copied needs min_words >= 2: single words are shared by any two texts")
        self.n = min_words

    def run(self, call: ToolCall, view: RunView) -> CheckResult:
        # The argument's word runs, each with where it starts: (arg name, words, start index).
        mine: dict[tuple[str, ...], list[tuple[str, list[str], int]]] = {}
        for name in self.args or tuple(call.args):
            for _, leaf in leaves(call.args.get(name)):
                if isinstance(leaf, str):
                    w = _words(leaf)
                    for i, r in enumerate(_runs(w, self.n)):
                        mine.setdefault(r, []).append((name, w, i))
        if not mine:
            return None
        copied: dict[tuple[str, ...], ToolCall] = {}
        for c in view.calls(self.untrusted):
            # A flagged result was still read by the model: what it says can be copied all the same.
            if c.done and c.error is None:
                for _, leaf in leaves(c.output):
                    if isinstance(leaf, str):
                        for r in _runs(_words(leaf), self.n):
                            if r in mine:
                                copied.setdefault(r, c)
        if not copied:
            return None
        # A passage the user wrote, or that a tool outside `untrusted` also returned (an address in a
        # listing that a review repeats), is not the third party's alone.
        vouching = list(view.user_messages)
        vouching += [
            leaf
            for c in view.calls()
            if c.succeeded and not any_match(self.untrusted, c.tool)
            for _, leaf in leaves(c.output)
            if isinstance(leaf, str)
        ]
        for text in vouching:
            for r in _runs(_words(text), self.n):
                copied.pop(r, None)
                if not copied:
                    return None
        # Report the longest stretch of one argument that copied runs cover, in the argument's own words.
        n = self.n

        def stretch(r: tuple[str, ...], name: str, w: list[str], i: int) -> tuple[int, str, str, ToolCall]:
            end = i + n
            while end < len(w) and tuple(w[end - n + 1 : end + 1]) in copied:
                end += 1
            return end - i, name, " ".join(w[i:end]), copied[r]

        _, name, passage, src = max((stretch(r, *at) for r in copied for at in mine[r]), key=lambda s: s[0])
        return self.finding(
            f"{name} copies {passage!r} from {src.tool} (step {src.step}), text a third party wrote; take "
            f"{call.tool}'s {name} from the user's request, or ask the user whether they want that text",
            arg=name,
            passage=passage,
            steps=sorted({c.step for c in copied.values()}),
        )


def not_copied(
    *args: str, untrusted: str | Sequence[str], min_words: int = 4, severity: Severity = "high"
) -> Check:
    """Free text in these arguments does not copy a passage that only `untrusted` tools returned.

    `untrusted`: tools (names or globs) whose results anyone can write: reviews, web pages, a stranger's
    email. A passage is `min_words` or more words in the same order (case and punctuation aside); shorter
    runs are names and stock phrases. The user's words, and results of tools outside `untrusted`, vouch
    for a passage. With no argument names, every argument is checked.
    """
    return _NotCopied(args, untrusted, min_words, severity)


# Re-exported for policy files: a name in a file maps to one of these factories.
BUILTINS: Mapping[str, Callable[..., Check]] = {
    "args_schema": args_schema,
    "bounds": bounds,
    "one_of": one_of,
    "requires_prior": requires_prior,
    "confirmed": confirmed,
    "grounded": grounded,
    "observed": observed,
    "once": once,
    "owned": owned,
    "unambiguous": unambiguous,
    "no_error_payload": no_error_payload,
    "not_empty": not_empty,
    "not_truncated": not_truncated,
    "not_copied": not_copied,
    "output_schema": output_schema,
    "consistent_with_args": consistent_with_args,
    "any_of": any_of,
    "all_of": all_of,
}
