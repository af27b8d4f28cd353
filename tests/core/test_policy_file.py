"""Policy files: TOML and YAML give the same Policy, every key of the format works, errors are precise."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from examples.support_desk import POLICY_FILE, SCENARIOS, SupportDesk
from examples.support_desk.core_demo import play
from headway import Guard, Policy, PolicyError
from headway.traces import MemoryStore
from tests.core._helpers import do, make_run, one

EVERYTHING = """
name = "everything"
max_repeats = 4
max_steps_without_progress = 60
loop_stop_after = 3
detect_ambiguity = false
now = 2026-01-02T03:04:05Z

[identity]
tool = ["find_user", "find_user_by_zip"]
field = "uid"

[budgets]
steps = 100
tool_calls = 50
seconds = 30.5
tokens = 10000

[thresholds]
tolerate = 0.2
escalate = 0.9

[actions]
ungrounded = "block"
silent_tool_error = "escalate"

[default]
risk = "read"
before = [{ check = "bounds", arg = "limit", max = 100 }]

[[tools]]
name = "refund_order"
risk = "irreversible"
description = "Refund an order"
idempotent = true
claims = ["money (is|was) returned"]
approve_when = { arg = "amount", gt = 100 }
before = [
  { check = "bounds", args = ["amount"], max = 500 },
  { check = "one_of", arg = "currency", values = ["EUR", "USD"] },
  { check = "requires_prior", args = [["lookup_order", "get_order"]], same = ["order_id"] },
  { check = "tests.core._helpers:no_weekend" },
  { check = "tests.core._helpers:reason_is", value = "broken" },
  { check = "any_of", checks = [
      { check = "bounds", arg = "hours", max = 24 },
      { check = "one_of", arg = "cabin", values = ["business"] },
  ] },
  "grounded",
]
after = [{ check = "consistent_with_args", args = ["amount"], severity = "medium" }]

[[tools]]
name = "cancel_*"
risk = "write"
approve_when = [{ arg = "amount", ge = 1000 }, { arg = "vip", eq = true }]

[[tools]]
name = "wire"
approve_when = "tests.core._helpers:big_amount"

[[tools]]
name = "nuke"
risk = "irreversible"
approve_when = true

[[tools]]
name = "status"
risk = "read"
approve_when = { arg = "region", in = ["eu", "uk"] }

[[tools]]
name = "ping"
risk = "read"
approve_when = false

[[milestones]]
name = "found"
after = ["lookup_order", "get_order"]

[[milestones]]
name = "double_checked"
when = "tests.core._helpers:two_lookups"
required = true
description = "two lookups ran"
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def everything(tmp_path: Path) -> Policy:
    return Policy.load(write(tmp_path, EVERYTHING))


# ---- TOML and YAML ----------------------------------------------------------------------------------


def _decisions(policy: Policy, tmp_path: Path) -> dict[str, dict[str, str]]:
    out = {}
    guard = Guard(policy, store=MemoryStore())
    for s in SCENARIOS:
        desk = SupportDesk(tmp_path / f"{s.name}-{policy.name}-{id(policy)}.db", faults=s.faults)
        got = play(s, guard, desk)
        out[s.name] = {k: f"{d.action}:{','.join(d.kinds)}" for k, d in got.items()}
        desk.close()
    return out


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_toml_and_yaml_give_the_same_policy(tmp_path: Path, suffix: str) -> None:
    data = tomllib.loads(Path(POLICY_FILE).read_text(encoding="utf-8"))
    y = tmp_path / f"policy{suffix}"
    y.write_text(yaml.safe_dump(data), encoding="utf-8")
    from_toml = Policy.load(POLICY_FILE)
    from_yaml = Policy.load(y)
    assert from_toml.describe() == from_yaml.describe()
    assert from_toml.name == from_yaml.name == "support-desk"
    assert _decisions(from_toml, tmp_path) == _decisions(from_yaml, tmp_path)


def test_the_file_stem_names_an_unnamed_policy(tmp_path: Path) -> None:
    assert Policy.load(write(tmp_path, "max_repeats = 2\n", "my-desk.toml")).name == "my-desk"
    assert Policy.load(write(tmp_path, "max_repeats: 2\n", "other.yml")).name == "other"


def test_an_empty_file_is_the_default_policy(tmp_path: Path) -> None:
    p = Policy.load(write(tmp_path, ""))
    assert p.tools == ()
    assert p.default.risk == "write"
    assert p.max_repeats == 3


# ---- every key ------------------------------------------------------------------------------------


def test_top_level_keys(everything: Policy) -> None:
    p = everything
    assert p.name == "everything"
    assert (p.max_repeats, p.max_steps_without_progress, p.loop_stop_after) == (4, 60, 3)
    assert p.detect_ambiguity is False
    assert p.now == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert p.identity is not None
    assert (p.identity.tool, p.identity.field, p.identity.pattern) == (
        ["find_user", "find_user_by_zip"],
        "uid",
        None,
    )
    assert (p.budgets.steps, p.budgets.tool_calls, p.budgets.seconds, p.budgets.tokens) == (
        100,
        50,
        30.5,
        10000,
    )
    assert (p.thresholds.tolerate, p.thresholds.escalate) == (0.2, 0.9)
    assert p.action_for("ungrounded") == "block"
    assert p.action_for("silent_tool_error") == "escalate"
    assert p.action_for("ambiguous") == "clarify"  # untouched classes keep their default


def test_tool_keys(everything: Policy) -> None:
    r = everything.resolve("refund_order")
    assert r.known
    assert r.risk == "irreversible"
    assert r.idempotent
    assert r.claims == ("money (is|was) returned",)
    assert [c.name for c in r.before] == [
        "bounds",
        "one_of",
        "requires_prior",
        "no_weekend",
        "reason_is",
        "any_of(bounds, one_of)",
        "grounded",
    ]
    assert [c.name for c in r.after] == ["consistent_with_args"]
    assert r.after[0].severity == "medium"
    assert everything.tools[0].description == "Refund an order"


def test_default_tool(everything: Policy) -> None:
    r = everything.resolve("something_else")
    assert not r.known
    assert r.risk == "read"
    run = make_run(everything)
    d = run.tool_call("something_else", {"limit": 1000}, call_id="c1")
    assert d.action == "block"
    assert "limit=1000 is above the maximum 100" in one(d, "bounds").message


def _refund_run(policy: Policy) -> Any:
    run = make_run(policy)
    run.user(
        "refund order A1, 40 EUR, it arrived broken; 3 hours ago (or 30), business cabin; also 250 and 600"
    )
    do(run, "get_order", {"order_id": "A1"}, "l1", {"order_id": "A1"})
    return run


GOOD = {"order_id": "A1", "amount": 40, "currency": "EUR", "reason": "broken", "hours": 3}


def test_checks_with_positional_and_keyword_args_work(everything: Policy) -> None:
    run = _refund_run(everything)
    d = run.tool_call("refund_order", GOOD, call_id="c1")
    assert d.action == "allow", d.reason

    def decide(cid: str, **change: Any) -> Any:
        return run.tool_call("refund_order", {**GOOD, **change}, call_id=cid)

    assert one(decide("c2", amount=600), "bounds").kind == "invalid_args"
    assert one(decide("c3", currency="GBP"), "one_of").kind == "invalid_args"
    assert one(decide("c4", order_id="A9"), "requires_prior").kind == "unmet_precondition"
    assert one(decide("c5", reason="weekend"), "no_weekend").message == "no refunds for weekend reasons"
    assert "reason must be 'broken'" in one(decide("c6", reason="dented"), "reason_is").message
    assert decide("c7", hours=30, cabin="business").action == "allow"
    assert "none of the allowed conditions" in decide("c8", hours=30, cabin="eco").reason
    # grounded by name: 7 was never said; actions turn ungrounded into block
    ungrounded = decide("c9", hours=7)
    assert ungrounded.action == "block"
    assert one(ungrounded, "grounded").kind == "ungrounded"


def test_approve_when_forms(everything: Policy) -> None:
    run = _refund_run(everything)
    assert run.tool_call("refund_order", {**GOOD, "amount": 250}, call_id="c1").action == "escalate"
    # a condition on an argument the call lacks fails closed
    assert run.tool_call("cancel_order", {"order_id": "A1"}, call_id="c2").action == "escalate"
    assert run.tool_call("cancel_order", {"amount": 10, "vip": False}, call_id="c3").action == "allow"
    assert run.tool_call("cancel_order", {"amount": 1000, "vip": False}, call_id="c4").action == "escalate"
    assert run.tool_call("cancel_order", {"amount": 1, "vip": True}, call_id="c5").action == "escalate"
    assert run.tool_call("wire", {"amount": 5}, call_id="c6").action == "allow"
    assert run.tool_call("wire", {"amount": 5000}, call_id="c7").action == "escalate"
    assert run.tool_call("nuke", {}, call_id="c8").action == "escalate"
    assert run.tool_call("status", {"region": "us"}, call_id="c9").action == "allow"
    assert run.tool_call("status", {"region": "uk"}, call_id="c10").action == "escalate"
    assert run.tool_call("ping", {}, call_id="c11").action == "allow"


@pytest.mark.parametrize(
    ("condition", "escalated", "allowed"),
    [
        ("gt = 10", 11, 10),
        ("ge = 10", 10, 9),
        ("lt = 10", 9, 10),
        ("le = 10", 10, 11),
        ("eq = 10", 10, 11),
        ("ne = 10", 11, 10),
        ("in = [1, 2]", 2, 3),
        ("not_in = [1, 2]", 3, 2),
    ],
)
def test_approve_when_operators(tmp_path: Path, condition: str, escalated: int, allowed: int) -> None:
    p = Policy.load(
        write(
            tmp_path, f'[[tools]]\nname = "pay"\nrisk = "read"\napprove_when = {{ arg = "n", {condition} }}\n'
        )
    )
    run = make_run(p)
    assert run.tool_call("pay", {"n": escalated}, call_id="c1").action == "escalate"
    assert run.tool_call("pay", {"n": allowed}, call_id="c2").action == "allow"


def test_milestones_identity_and_claims_from_the_file(everything: Policy) -> None:
    run = make_run(everything)
    do(run, "find_user_by_zip", {"zip": "1"}, "c1", {"uid": "u7"})
    assert run.view.identity == "u7"
    do(run, "lookup_order", {"order_id": "A1"}, "c2", {"order_id": "A1"})
    assert run.view.milestones == ["found"]
    do(run, "lookup_order", {"order_id": "A2"}, "c3", {"order_id": "A2"})
    assert run.view.milestones == ["found", "double_checked"]
    assert run.view.now == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    d = run.end("Your money was returned.")
    assert d.action == "block"
    assert one(d, "claims").evidence["tool"] == "refund_order"
    run2 = make_run(everything)
    d2 = run2.end("Bye.")
    assert "ended before reaching double_checked" in one(d2, "milestones").message


def test_identity_pattern_and_string_after(tmp_path: Path) -> None:
    p = Policy.load(
        write(
            tmp_path,
            '[identity]\npattern = "member (\\\\w+)"\n[[milestones]]\nname = "m"\nafter = "x"\n',
        )
    )
    assert p.identity is not None
    assert p.identity.pattern == "member (\\w+)"
    run = make_run(p)
    run.user("I am member m-1")
    assert run.view.identity == "m"  # \\w stops at the dash
    assert p.milestones[0].after == "x"


# ---- errors ---------------------------------------------------------------------------------------


def load_error(tmp_path: Path, text: str, name: str = "policy.toml") -> str:
    path = write(tmp_path, text, name)
    with pytest.raises(PolicyError) as e:
        Policy.load(path)
    msg = str(e.value)
    assert str(path) in msg, msg  # every error names the file
    return msg


TOOLS = '[[tools]]\nname = "a"\nrisk = "read"\n'


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('colour = "red"\n', ["colour", "Extra inputs are not permitted"]),
        (
            TOOLS + '[[tools]]\nname = "b"\nrisk = "dangerous"\n',
            ["tools[1].risk", "'read', 'write' or 'irreversible'", "'dangerous'"],
        ),
        (TOOLS + 'colour = "red"\n', ["tools[0].colour", "Extra inputs"]),
        ('max_repeats = "three"\n', ["max_repeats", "valid integer", "'three'"]),
        ("max_repeats = 0\n", ["max_repeats", "greater than or equal to 1"]),
        ("[thresholds]\ntolerate = 2.0\n", ["thresholds.tolerate", "less than or equal to 1"]),
        ('[budgets]\nsteps = "many"\n', ["budgets.steps", "valid integer"]),
        ('[actions]\nungrounded = "shrug"\n', ["actions.ungrounded", "shrug"]),
        ('[actions]\nhappiness = "block"\n', ["actions", "happiness"]),
        ('[identity]\nfield = "uid"\n', ["Identity needs `tool`"]),
        ('[[milestones]]\nname = "m"\n', ["Milestone 'm' needs `after`"]),
        ("tools = 3\n", ["tools", "valid list"]),
        ('[default]\nrisk = "meh"\n', ["default.risk"]),
        ("[thresholds]\ntolerate = 0.9\nescalate = 0.5\n", ["tolerate <= escalate"]),
    ],
)
def test_schema_errors_name_the_key_and_what_was_expected(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    msg = load_error(tmp_path, text)
    for f in fragments:
        assert f in msg, msg


@pytest.mark.parametrize(
    ("check", "fragments"),
    [
        (
            '{ check = "no_such_check" }',
            ["tools[0].before[0]", "'no_such_check' is neither a built-in check nor an import path"],
        ),
        ('"no_such_check"', ["tools[0].before[0]", "neither a built-in"]),
        (
            '{ check = "bounds", arg = "amount", maximum = 5 }',
            ["tools[0].before[0]", "check 'bounds'", "maximum"],
        ),
        ('{ check = "bounds" }', ["tools[0].before[0]", "check 'bounds'", "arg"]),
        (
            '{ check = "bounds", arg = "x", severity = "huge" }',
            ["tools[0].before[0]", "severity must be one of"],
        ),
        ('{ check = "requires_prior", args = [] }', ["tools[0].before[0]", "requires_prior"]),
        ('{ check = "tests.core._helpers:nope" }', ["tools[0].before[0]", "has no 'nope'"]),
        (
            '{ check = "tests.core.no_such_module:x" }',
            ["tools[0].before[0]", "cannot import 'tests.core.no_such_module'"],
        ),
        (
            '{ check = "tests.core._helpers:reason_is", value = "x", colour = 1 }',
            ["tools[0].before[0]", "colour"],
        ),
        ('{ check = "any_of" }', ["tools[0].before[0]", "any_of needs checks"]),
        (
            '{ check = "any_of", checks = [{ check = "bounds", arg = "x", mx = 1 }] }',
            ["tools[0].before[0].checks[0]", "mx"],
        ),
        ("{ arg = 3 }", ["tools[0].before[0]"]),
    ],
)
def test_check_errors_name_the_check_and_the_problem(
    tmp_path: Path, check: str, fragments: list[str]
) -> None:
    msg = load_error(tmp_path, f'[[tools]]\nname = "t"\nbefore = [{check}]\n')
    for f in fragments:
        assert f in msg, msg


def test_after_check_and_approve_when_errors_name_their_key(tmp_path: Path) -> None:
    msg = load_error(tmp_path, '[[tools]]\nname = "t"\nafter = [{ check = "not_empty", colour = 1 }]\n')
    assert "tools[0].after[0]" in msg
    msg = load_error(tmp_path, '[[tools]]\nname = "t"\napprove_when = "tests.core._helpers:nope"\n')
    assert "tools[0].approve_when" in msg
    msg = load_error(tmp_path, '[[tools]]\nname = "t"\napprove_when = { arg = "x", greater = 3 }\n')
    assert "tools[0].approve_when" in msg
    assert "greater" in msg
    msg = load_error(tmp_path, '[[milestones]]\nname = "m"\nwhen = "tests.core._helpers:nope"\n')
    assert "milestones[0].when" in msg


def test_invalid_toml(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "name = \n[[tools]\n")
    assert "invalid TOML" in msg


def test_invalid_yaml(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "tools: [\n  - name: a\n", "p.yaml")
    assert "invalid YAML" in msg


def test_yaml_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "- a\n- b\n", "p.yaml")
    assert "must be a table/mapping at the top level, got list" in msg


def test_yaml_errors_name_the_key_too(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "tools:\n  - name: a\n  - name: b\n    risk: 7\n", "p.yaml")
    assert "tools[1].risk" in msg


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PolicyError, match="policy file not found") as e:
        Policy.load(path)
    assert str(path) in str(e.value)


def test_unsupported_suffix(tmp_path: Path) -> None:
    msg = load_error(tmp_path, "{}", "policy.json")
    assert "must end in .toml, .yaml or .yml" in msg


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


@pytest.mark.parametrize("kind", ["loop", "stall", "budget"])
def test_actions_for_graduated_classes_are_refused_not_ignored(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'[actions]\n{kind} = "escalate"\n')
    with pytest.raises(PolicyError, match=f"actions: '{kind}' cannot be set"):
        Policy.load(path)
