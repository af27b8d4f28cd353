"""Policy files: the same Policy from TOML (stdlib) or YAML (`headway[yaml]`), validated by pydantic.

A check is written `{ check = "bounds", arg = "amount", max = 500 }`: a built-in name or an import path
("mypkg.checks:same_owner"); `args = [...]` are positional arguments, every other key a keyword.
Errors name the file, the key and what was expected.
"""

from __future__ import annotations

import importlib
import inspect
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import PolicyError
from ._policy import Budgets, Check, Identity, Milestone, Policy, Thresholds, Tool
from ._types import Action, Kind, Risk

_OPS: Mapping[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckSpec(BaseModel):
    """`check` names a built-in or an import path; `args` are positional; other keys are keywords."""

    model_config = ConfigDict(extra="allow", frozen=True)
    check: str
    args: list[Any] = Field(default_factory=list)


class ConditionSpec(_Strict):
    """An approval condition on one argument: `{ arg = "amount", gt = 100 }`."""

    arg: str
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    eq: Any = None
    ne: Any = None
    in_: list[Any] | None = Field(default=None, alias="in")
    not_in: list[Any] | None = None


ApproveSpec = bool | str | ConditionSpec | list[ConditionSpec]


class ToolSpec(_Strict):
    name: str = Field(min_length=1)
    risk: Risk = "write"
    before: list[CheckSpec | str] = Field(default_factory=list)
    after: list[CheckSpec | str] = Field(default_factory=list)
    approve_when: ApproveSpec | None = None
    claims: list[str] | None = None
    idempotent: bool = False
    description: str = ""


class DefaultToolSpec(ToolSpec):
    name: str = "*"


class MilestoneSpec(_Strict):
    name: str = Field(min_length=1)
    after: str | list[str] | None = None
    when: str | None = None
    required: bool = False
    description: str = ""


class IdentitySpec(_Strict):
    tool: str | list[str] | None = None
    field: str = "user_id"
    pattern: str | None = None


class BudgetsSpec(_Strict):
    steps: int | None = Field(default=None, ge=1)
    tool_calls: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)
    tokens: int | None = Field(default=None, ge=1)


class ThresholdsSpec(_Strict):
    tolerate: float = Field(default=0.1, ge=0, le=1)
    escalate: float = Field(default=0.95, ge=0, le=1.01)


class PolicySpec(_Strict):
    name: str | None = None
    tools: list[ToolSpec] = Field(default_factory=list)
    milestones: list[MilestoneSpec] = Field(default_factory=list)
    default: DefaultToolSpec | None = None
    max_repeats: int = Field(default=3, ge=1)
    max_steps_without_progress: int | None = Field(default=None, ge=1)
    loop_stop_after: int = Field(default=2, ge=1)
    detect_ambiguity: bool = True
    identity: IdentitySpec | None = None
    budgets: BudgetsSpec = Field(default_factory=BudgetsSpec)
    thresholds: ThresholdsSpec = Field(default_factory=ThresholdsSpec)
    actions: dict[Kind, Action] = Field(default_factory=dict)
    now: datetime | None = None
    redact: list[str] = Field(default_factory=list)
    redact_defaults: bool = True


def _read(path: Path) -> Any:
    suffix = path.suffix.casefold()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except OSError as e:
        raise PolicyError(f"{path}: cannot read the policy file ({e})") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"{path}: invalid TOML: {e}") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise PolicyError(f'{path}: YAML policies need PyYAML: pip install "headway[yaml]"') from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise PolicyError(f"{path}: invalid YAML: {e}") from None
    raise PolicyError(f"{path}: a policy file must end in .toml, .yaml or .yml")


def _loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("CheckSpec", "str", "ConditionSpec", "bool", "list[ConditionSpec]", "[key]"):
            continue  # union-branch names (and pydantic's "[key]" marker) say nothing to a user
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def _import(ref: str, where: str) -> Any:
    module, _, attr = ref.partition(":")
    if not attr:
        module, _, attr = ref.rpartition(".")
    if not module or not attr:
        raise PolicyError(
            f"{where}: {ref!r} is neither a built-in check nor an import path like 'pkg.mod:name'"
        )
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise PolicyError(f"{where}: cannot import {module!r} ({e})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PolicyError(f"{where}: {module!r} has no {attr!r}") from None
    return obj


def _check(spec: CheckSpec | str | Mapping[str, Any], where: str) -> Check:
    from . import checks as builtins

    if isinstance(spec, str):
        spec = CheckSpec(check=spec)
    elif isinstance(spec, Mapping):
        try:
            spec = CheckSpec.model_validate(spec)
        except ValidationError as e:
            raise PolicyError(f"{where}: {e.errors()[0]['msg']}") from None
    kwargs = dict(spec.model_extra or {})
    positional = list(spec.args)
    name = spec.check
    if name in ("any_of", "all_of"):
        parts = kwargs.pop("checks", positional)
        if not isinstance(parts, list) or not parts:
            raise PolicyError(f"{where}: {name} needs checks = [ {{ check = ... }}, ... ]")
        positional = [_check(p, f"{where}.checks[{i}]") for i, p in enumerate(parts)]
    factory = builtins.BUILTINS.get(name)
    if factory is None:
        obj = _import(name, where)
        if not kwargs and not positional and callable(obj):
            return builtins.as_check(obj, name=name.rpartition(":")[2] or name)
        factory = obj
        if not callable(factory):
            raise PolicyError(f"{where}: {name!r} is not callable")
    try:
        inspect.signature(factory).bind(*positional, **kwargs)
    except TypeError as e:
        raise PolicyError(f"{where}: check {name!r}: {e}") from None
    except ValueError:
        pass  # no signature to inspect (a C callable): let the call itself report
    try:
        made = factory(*positional, **kwargs)
    except (TypeError, ValueError) as e:
        raise PolicyError(f"{where}: check {name!r}: {e}") from None
    return builtins.as_check(made, name=name)


def _condition(spec: ConditionSpec) -> Callable[[Any], bool]:
    tests = [(op, getattr(spec, "in_" if op == "in" else op)) for op in _OPS]
    tests = [(op, v) for op, v in tests if v is not None]
    arg = spec.arg

    def condition(call: Any) -> bool:
        if arg not in call.args:
            return True  # cannot tell: a person decides (fail closed)
        value = call.args[arg]
        return all(_OPS[op](value, expected) for op, expected in tests)

    condition.__name__ = f"approve_when({arg} " + " ".join(f"{op} {v!r}" for op, v in tests) + ")"
    return condition


def _approve(spec: ApproveSpec | None, where: str) -> Callable[[Any], bool] | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        return lambda call: True
    if isinstance(spec, str):
        fn = _import(spec, where)
        if not callable(fn):
            raise PolicyError(f"{where}: {spec!r} is not callable")
        return fn  # type: ignore[no-any-return]
    if isinstance(spec, ConditionSpec):
        return _condition(spec)
    conds = [_condition(c) for c in spec]
    return lambda call: any(c(call) for c in conds)


def _tool(spec: ToolSpec, where: str) -> Tool:
    return Tool(
        spec.name,
        risk=spec.risk,
        before=[_check(c, f"{where}.before[{i}]") for i, c in enumerate(spec.before)],
        after=[_check(c, f"{where}.after[{i}]") for i, c in enumerate(spec.after)],
        approve_when=_approve(spec.approve_when, f"{where}.approve_when"),
        claims=spec.claims,
        idempotent=spec.idempotent,
        description=spec.description,
    )


def policy_from_dict(data: Any, source: str = "<policy>") -> Policy:
    """Build a Policy from parsed TOML/YAML data; `source` names the origin in error messages."""
    if not isinstance(data, Mapping):
        raise PolicyError(
            f"{source}: the policy must be a table/mapping at the top level, got {type(data).__name__}"
        )
    try:
        spec = PolicySpec.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors()[:10]:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"{source}: {_loc(err['loc'])}: {err['msg']}{shown}")
        raise PolicyError("\n".join(lines)) from None
    try:
        milestones = []
        for i, m in enumerate(spec.milestones):
            when = _import(m.when, f"{source}: milestones[{i}].when") if m.when else None
            milestones.append(
                Milestone(m.name, after=m.after, when=when, required=m.required, description=m.description)
            )
        ident = spec.identity
        return Policy(
            tools=[_tool(t, f"{source}: tools[{i}]") for i, t in enumerate(spec.tools)],
            milestones=milestones,
            default=_tool(spec.default, f"{source}: default") if spec.default else Tool("*", risk="write"),
            max_repeats=spec.max_repeats,
            max_steps_without_progress=spec.max_steps_without_progress,
            loop_stop_after=spec.loop_stop_after,
            detect_ambiguity=spec.detect_ambiguity,
            identity=Identity(tool=ident.tool, field=ident.field, pattern=ident.pattern) if ident else None,
            budgets=Budgets(**spec.budgets.model_dump()),
            thresholds=Thresholds(**spec.thresholds.model_dump()),
            actions=spec.actions,
            now=spec.now,
            name=spec.name or "policy",
            redact=tuple(spec.redact),
            redact_defaults=spec.redact_defaults,
        )
    except PolicyError:
        raise
    except (TypeError, ValueError) as e:
        raise PolicyError(f"{source}: {e}") from None


def load_policy(path: str | os.PathLike[str]) -> Policy:
    p = Path(path)
    data = _read(p)
    if isinstance(data, Mapping) and "name" not in data:
        data = {**data, "name": p.stem}
    return policy_from_dict(data, str(p))
