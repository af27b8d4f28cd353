"""Secrets and configured fields never reach traces or escalation records; checks still see them."""

from __future__ import annotations

import json
from pathlib import Path

from headway import Guard, Policy, Tool, checks
from headway.traces import SQLiteStore


def _policy() -> Policy:
    return Policy(
        tools=[
            Tool("get_account", risk="read"),
            Tool(
                "wire",
                risk="irreversible",
                before=[checks.grounded("iban")],
                approve_when=lambda call: call.args["amount"] > 100,
            ),
        ],
        redact=["iban"],
        detect_ambiguity=False,
    )


def test_secrets_are_redacted_from_traces_and_records_but_checks_see_them(tmp_path: Path) -> None:
    with Guard(_policy(), store=tmp_path / "t.db") as guard:
        run = guard.start_run("r")
        run.user("wire 500 to my other account")
        run.tool_call("get_account", '{"user": "ann", "apiKey": "sk-live-123456"}', call_id="a")
        run.tool_result("a", output={"iban": "DE89370400440532013000", "session_token": "tok-abcdef"})
        d = run.tool_call("wire", {"iban": "DE89370400440532013000", "amount": 500}, call_id="w")
        assert (
            d.action == "escalate"
        )  # grounded in the (unredacted) account output: only the amount needs a yes
        call = run.view.call("w")
        assert call is not None
        assert call.args["iban"] == "DE89370400440532013000"  # in memory, for checks
        esc = run.escalation("w")
        assert esc is not None
        assert esc.args == {"iban": "[redacted]", "amount": 500}
    with SQLiteStore(tmp_path / "t.db") as store:
        written = json.dumps([e.to_dict() for e in store.events("r")])
    assert "DE89370400440532013000" not in written
    assert "sk-live-123456" not in written
    assert "tok-abcdef" not in written
    assert written.count("[redacted]") >= 4
    assert '"user": "ann"' in written  # the rest is kept


def test_redaction_can_be_narrowed_to_configured_fields() -> None:
    policy = Policy(tools=[Tool("t", risk="read")], redact=["pin"], redact_defaults=False)
    assert policy.redactor.apply({"token": "x", "PIN": "1234", "n": [{"pin": 1}]}) == {
        "token": "x",
        "PIN": "[redacted]",
        "n": [{"pin": "[redacted]"}],
    }
    clean = {"a": 1, "b": [1, 2]}
    assert policy.redactor.apply(clean) is clean  # nothing hidden: no copy on the hot path


def test_policy_files_take_redact(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'redact = ["iban", "*_secret"]\nredact_defaults = false\n[[tools]]\nname = "t"\nrisk = "read"\n'
    )
    policy = Policy.load(path)
    assert policy.redactor.patterns == ("iban", "*_secret")


def test_a_reason_quoting_a_secret_is_scrubbed_in_traces_and_records(tmp_path: Path) -> None:
    with Guard(_policy(), store=tmp_path / "t.db") as guard:
        run = guard.start_run("r")
        run.user("wire 50 to my other account")
        d = run.tool_call("wire", {"iban": "GB33BUKB20201555555555", "amount": 50}, call_id="w")
        assert d.action == "clarify"
        assert "GB33BUKB20201555555555" in d.reason.upper()  # the agent is told what it sent
        esc = run.escalation("w")
        assert esc is not None
        record = json.dumps(esc.to_dict()).upper()
        assert "GB33BUKB20201555555555" not in record
    with SQLiteStore(tmp_path / "t.db") as store:
        written = json.dumps([e.to_dict() for e in store.events("r")]).upper()
    assert "GB33BUKB20201555555555" not in written
