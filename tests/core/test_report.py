"""The failure-taxonomy report and the run view, on traces recorded by playing the support-desk scenarios
through the real Guard into SQLite (and their JSONL export); the HTML report in a real headless Chromium."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import headway._report
from examples.support_desk import SCENARIOS, SupportDesk
from examples.support_desk.core_demo import play
from headway import Guard, HeadwayError, Policy
from headway.analysis import Report, render_html, report
from headway.cli import main
from headway.traces import Event, SQLiteStore, TraceFormatError, export_jsonl, read_events
from tests.core import test_inbox
from tests.core.test_inbox import decode_png

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog

# The inbox tests' headless Chromium, as a fixture here too (pytest registers it under this name): it
# skips without /usr/bin/chromium, or fails then under HEADWAY_REQUIRE_BROWSER=1.
chromium = test_inbox.browser

ORDER = ["identified", "order_found", "resolved"]
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"


def record(policy: Policy, path: Path, prefix: str = "") -> Path:
    """Play the six scenarios through a Guard on SQLite at `path` (run ids: prefix + scenario name)."""
    with Guard(policy, store=path) as guard:
        for s in SCENARIOS:
            desk = SupportDesk(path.parent / f"{prefix}{s.name}-desk.db", faults=s.faults)
            try:
                play(s, guard, desk, run_id=prefix + s.name)
            finally:
                desk.close()
    return path


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from examples.support_desk.policy import load_policy

    return record(load_policy(), tmp_path_factory.mktemp("report") / "traces.db")


def comparable(r: Report) -> dict[str, Any]:
    d = r.to_dict()
    d.pop("sources")
    return d


def write_events(path: Path, events: list[Event]) -> Path:
    with SQLiteStore(path) as store:
        for e in events:
            store.append(e)
    return path


# ---- the report ------------------------------------------------------------------------------------------


def test_classes_are_ranked_by_frequency_times_severity(db: Path) -> None:
    r = report(db)
    assert (r.runs, r.events) == (6, 94)
    assert r.outcomes == {
        "completed": 4,
        "flagged": 1,
        "stopped": 1,
        "waiting": 0,
        "abandoned": 0,
        "open": 0,
    }
    ranked = [(c.kind, c.runs, c.findings, c.severity, c.score) for c in r.classes]
    assert ranked == [
        # two runs each at high (0.8): 1.6; more findings break the tie
        ("unmet_precondition", 2, 6, "high", 1.6),
        ("unconfirmed", 2, 2, "high", 1.6),
        ("loop", 1, 3, "high", 0.8),  # a note, a medium and a high finding: one run, its worst weight
        ("ambiguous", 1, 1, "high", 0.8),  # equal scores and counts: taxonomy order
        ("silent_tool_error", 1, 1, "high", 0.8),
        ("ignored_tool_error", 1, 1, "high", 0.8),
    ]
    by_kind = {c.kind: c for c in r.classes}
    assert [x.run_id for x in by_kind["unmet_precondition"].examples] == [  # the earliest started first
        "refund_without_lookup",
        "ambiguous_order",
    ]
    assert [x.run_id for x in by_kind["loop"].examples] == ["lookup_loop"]
    loop = by_kind["loop"].examples[0]
    assert loop.severity == "high"
    assert "already called with these arguments" in loop.message
    assert by_kind["silent_tool_error"].examples[0].message.endswith("amount=400.0")
    assert by_kind["loop"].meaning.startswith("the same call")


def test_reading_leaves_the_database_as_it_was(db: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    report(copy)
    assert copy.read_bytes() == db.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"]  # no -wal or -shm left behind


def test_per_tool_decisions_and_findings(db: Path) -> None:
    tools = {t.tool: t for t in report(db).tools}
    assert list(tools) == ["lookup_order", "refund_order", "find_user", "list_orders"]  # by calls
    refund = tools["refund_order"]
    assert refund.calls == 7
    assert refund.decisions == {"allow": 4, "block": 1, "clarify": 1, "escalate": 1, "stop": 0}
    assert (refund.results["allow"], refund.results["escalate"]) == (4, 1)
    assert refund.human == {"approve": 1, "answer": 1}
    assert refund.findings == {
        "unmet_precondition": 6,
        "unconfirmed": 2,
        "ambiguous": 1,
        "silent_tool_error": 1,
    }
    lookup = tools["lookup_order"]
    assert (lookup.calls, lookup.decisions["allow"], lookup.decisions["block"], lookup.decisions["stop"]) == (
        9,
        7,
        1,
        1,
    )
    assert lookup.findings == {"loop": 3}
    assert tools["find_user"].decisions["allow"] == 6
    assert all(t.errors == 0 for t in tools.values())


def test_funnel_in_policy_order_and_where_runs_stall(db: Path) -> None:
    r = report(db, milestones=["resolved", *ORDER])  # the given order wins, repeats dropped
    assert [s.milestone for s in r.funnel] == ["resolved", "identified", "order_found"]
    r = report(db, milestones=ORDER)
    steps = {s.milestone: s for s in r.funnel}
    assert [(s.milestone, s.reached, s.stalled) for s in r.funnel] == [
        ("identified", 6, 0),
        ("order_found", 6, 0),
        ("resolved", 4, 2),
    ]
    # the loop stalled at a lookup; the silently wrong refund reached no milestone
    assert dict(steps["resolved"].last_tools) == {"lookup_order": 1, "refund_order": 1}
    assert dict(steps["resolved"].last_milestones) == {"order_found": 2}
    assert r.through == 4
    # without a policy: the order runs reach them in
    assert [s.milestone for s in report(db).funnel] == ORDER


def test_timeline_counts_runs_per_class(db: Path) -> None:
    r = report(db)
    assert r.bucket_seconds == 3_600
    assert sum(b.runs for b in r.timeline) == 6
    totals: Counter[str] = Counter()
    for b in r.timeline:
        totals.update(b.classes)
    assert totals == {c.kind: c.runs for c in r.classes}


def test_jsonl_export_reads_the_same_as_the_database(db: Path, tmp_path: Path) -> None:
    export_jsonl(db, tmp_path / "traces.jsonl")
    assert comparable(report(tmp_path / "traces.jsonl")) == comparable(report(db))


def test_jsonl_in_any_order(db: Path, tmp_path: Path) -> None:
    lines = (tmp_path / "x.jsonl", export_jsonl(db, tmp_path / "x.jsonl"))[0].read_text().splitlines()
    random.Random(6).shuffle(lines)
    (tmp_path / "shuffled.jsonl").write_text("\n".join(lines) + "\n")
    assert comparable(report(tmp_path / "shuffled.jsonl")) == comparable(report(db))


def test_interleaved_jsonl_keeps_bounded_state(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs interleaved line by line, with windows small enough that runs are finished while reading.
    export_jsonl(db, tmp_path / "all.jsonl")
    runs: dict[str, list[str]] = {}
    for line in (tmp_path / "all.jsonl").read_text().splitlines():
        runs.setdefault(json.loads(line)["run_id"], []).append(line)
    # Two runs at a time, line by line; the loop that never ends goes first.
    groups = sorted(runs.values(), key=lambda g: "lookup_loop" not in g[0])
    mixed = [
        g[i]
        for a, b in zip(groups[::2], groups[1::2], strict=True)
        for i in range(20)
        for g in (a, b)
        if i < len(g)
    ]
    assert len(mixed) == 94
    (tmp_path / "mixed.jsonl").write_text("\n".join(mixed) + "\n")
    monkeypatch.setattr(headway._report, "_TICK", 4)
    monkeypatch.setattr(headway._report, "SETTLE", 8)
    monkeypatch.setattr(headway._report, "WINDOW", 20)
    early: set[str] = set()
    real = headway._report._Tally._evict

    def spy(self: headway._report._Tally, open_runs: dict[str, Any], n: int) -> None:
        before = set(open_runs)
        real(self, open_runs, n)  # type: ignore[arg-type]
        early.update(before - set(open_runs))

    monkeypatch.setattr(headway._report._Tally, "_evict", spy)
    assert comparable(report(tmp_path / "mixed.jsonl")) == comparable(report(db))
    # finished while the input was still being read: four ended ones, and the loop (never ended) once idle
    assert len(early) == 4
    assert "lookup_loop" in early


def test_merges_a_database_and_a_jsonl_export(db: Path, policy: Policy, tmp_path: Path) -> None:
    other = record(policy, tmp_path / "other.db", prefix="b-")
    export_jsonl(other, tmp_path / "other.jsonl")
    r = report([db, tmp_path / "other.jsonl"])
    assert r.sources == (str(db), str(tmp_path / "other.jsonl"))
    assert (r.runs, r.events) == (12, 188)
    by_kind = {c.kind: c for c in r.classes}
    assert (by_kind["unmet_precondition"].runs, by_kind["unmet_precondition"].score) == (4, 3.2)
    assert [x.run_id for x in by_kind["loop"].examples] == ["lookup_loop", "b-lookup_loop"]
    assert {t.tool: t.calls for t in r.tools}["refund_order"] == 14
    assert r.outcomes["stopped"] == 2


def test_outcomes_waiting_abandoned_and_open(tmp_path: Path) -> None:
    escalate = {"action": "escalate", "reason": "over 100", "risk": 0.0, "findings": []}
    call = {"call_id": "c1", "tool": "refund_order", "args": {"amount": 250}, "decision": escalate}
    lookup = {"call_id": "c1", "tool": "lookup_order", "args": {}, "decision": {"action": "allow"}}
    path = write_events(
        tmp_path / "t.db",
        [
            Event("waits", 1, 1000.0, "tool_call", call),
            Event("idle", 1, 1000.0, "user", {"text": "refund please"}),
            Event("idle", 2, 1001.0, "tool_call", lookup),
            Event("fresh", 1, 9000.0, "user", {"text": "hello"}),
        ],
    )
    r = report(path, now=10_000.0, stale_after=3_600.0)
    assert r.outcomes == {"completed": 0, "flagged": 0, "stopped": 0, "waiting": 1, "abandoned": 1, "open": 1}
    (abandoned,) = r.classes
    assert (abandoned.kind, abandoned.runs, abandoned.findings, abandoned.score) == ("abandoned", 1, 0, 0.5)
    assert abandoned.examples[0].run_id == "idle"
    assert "after lookup_order" in abandoned.examples[0].message
    assert report(path, now=10_000.0, stale_after=86_400.0).outcomes["open"] == 2


def test_foreign_values_are_counted_not_fatal(tmp_path: Path) -> None:
    odd = {"action": "defer", "findings": [{"kind": "custom", "severity": "weird"}, "not a finding", {}]}
    path = write_events(
        tmp_path / "t.db",
        [
            Event("r", 1, 1.0, "tool_call", {"tool": 7, "call_id": ["c"], "decision": odd}),
            Event("r", 2, 2.0, "tool_result", {"tool": 7, "milestones": "nope", "decision": "allow"}),
            Event("r", 3, 3.0, "human", {"tool": {"x": 1}, "action": {}, "decision": {"findings": "none"}}),
            Event("r", 4, 3.5, "model", {"decision": {"action": "allow", "findings": {"kind": "loop"}}}),
            Event("r", 5, 4.0, "span", {"name": "agent"}),
        ],
    )
    export_jsonl(path, tmp_path / "t.jsonl")
    r = report(path, now=4.0)
    assert comparable(report(tmp_path / "t.jsonl", now=4.0)) == comparable(r)
    assert r.events == 5
    (custom,) = r.classes
    assert (custom.kind, custom.severity, custom.score, custom.meaning) == ("custom", "unknown", 0.0, "")
    assert [(t.tool, t.calls) for t in r.tools] == [("7", 1), ('{"x":1}', 0)]
    assert r.tools[0].decisions["defer"] == 1


def test_an_empty_store_and_an_empty_file(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "empty.db").close()
    (tmp_path / "empty.jsonl").write_text("")
    for source in (tmp_path / "empty.db", tmp_path / "empty.jsonl"):
        r = report(source)
        assert (r.runs, r.events, r.classes, r.tools, r.funnel, r.timeline) == (0, 0, (), (), (), ())
        assert r.first_ts is None
        page = render_html(r)
        assert "no failures recorded" in page
        assert "no milestones recorded" in page


def test_a_corrupt_jsonl_line_is_an_error_naming_the_line(db: Path, tmp_path: Path) -> None:
    lines = (tmp_path / "t.jsonl", export_jsonl(db, tmp_path / "t.jsonl"))[0].read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([*lines[:4], '{"run_id": "r", "seq": 1,', *lines[4:]]) + "\n")
    with pytest.raises(TraceFormatError, match=r"bad\.jsonl, line 5: not valid JSON") as info:
        report(bad)
    assert info.value.line == 5
    # well-formed JSON that is not an event: the field is named
    bad.write_text(
        "\n".join([*lines[:2], '{"run_id": "r", "seq": "3", "ts": 1.0, "type": "user", "data": {}}'])
    )
    with pytest.raises(TraceFormatError, match=r"line 3: invalid event: seq"):
        report(bad)
    # blank lines are fine
    bad.write_text("\n\n".join(lines) + "\n\n")
    assert report(bad).runs == 6


def test_files_that_are_not_traces(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("hello, not SQLite")
    with pytest.raises(TraceFormatError, match="not a headway trace database"):
        report(tmp_path / "notes.db")
    with pytest.raises(FileNotFoundError):
        report(tmp_path / "missing.db")
    with pytest.raises(FileNotFoundError):
        report(tmp_path / "missing.jsonl")


def test_a_bad_row_in_the_database_names_run_and_seq(tmp_path: Path) -> None:
    import sqlite3

    path = write_events(tmp_path / "t.db", [Event("r", 1, 1.0, "end", {"final_answer": "ok"})])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET data = '{broken' WHERE seq = 1")
    conn.close()
    with pytest.raises(TraceFormatError, match=r"run 'r' seq 1: data is not JSON"):
        report(path)


def test_progress_is_reported_per_source(db: Path, tmp_path: Path) -> None:
    export_jsonl(db, tmp_path / "t.jsonl")
    seen: list[tuple[str, int, int | None]] = []
    report([db, tmp_path / "t.jsonl"], progress=lambda s, done, total: seen.append((s, done, total)))
    assert (str(db), 94, 94) in seen
    size = (tmp_path / "t.jsonl").stat().st_size
    assert (str(tmp_path / "t.jsonl"), size, size) in seen


def test_report_json_round_trips(db: Path) -> None:
    data = json.loads(report(db).to_json())
    assert data["runs"] == 6
    assert data["classes"][0]["examples"][0]["run_id"] == "refund_without_lookup"
    assert set(data) >= {"outcomes", "classes", "tools", "funnel", "timeline", "through", "bucket_seconds"}


def test_a_postgresql_store_reads_like_sqlite(db: Path) -> None:
    from bench._pg import Unavailable, start_server

    try:
        server = start_server()
    except Unavailable as exc:
        if os.environ.get("HEADWAY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"HEADWAY_REQUIRE_POSTGRES=1 but {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL: {exc}")
    try:
        conninfo = dict(part.split("=", 1) for part in server.create_database("report").split())
        dsn = f"postgresql://{conninfo['user']}@/report?host={conninfo['host']}&port={conninfo['port']}"
        from headway.postgres import PostgresStore

        with PostgresStore(dsn) as store:
            for e in read_events(db):
                store.append(e)
        r = report(dsn)
        assert r.sources == (dsn,)
        assert comparable(r) == comparable(report(db))
        # libpq's keyword form reads the same; its password (ignored by this trusting server) is hidden
        keywords = f"host={conninfo['host']} port={conninfo['port']} user={conninfo['user']} dbname=report"
        r = report(f"{keywords} password=hunter2")
        assert r.sources == (f"{keywords} password=***",)
        assert comparable(r) == comparable(report(db))
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:s3cret@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
        ("postgres://u@127.0.0.1:1/db?password=s3cret", "postgres://u@127.0.0.1:1/db?password=***"),
        ("postgresql://u:s3cret@[::1]:1/db", "postgresql://u:***@[::1]:1/db"),
        ("host=127.0.0.1 port=1 dbname=db password=s3cret", "host=127.0.0.1 port=1 dbname=db password=***"),
        (
            "host=127.0.0.1 port=1 password='s3cret it\\'s' user=u",
            "host=127.0.0.1 port=1 password=*** user=u",
        ),
    ],
)
def test_an_unreachable_postgresql_store_is_named_without_its_password(dsn: str, shown: str) -> None:
    with pytest.raises(HeadwayError, match="cannot open the PostgreSQL store") as info:
        report(dsn + ("&" if "?" in dsn else "?" if "://" in dsn else " ") + "connect_timeout=2")
    assert shown in str(info.value)
    assert "s3cret" not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(
    password=st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1).map(
        lambda p: "Q7" + p
    ),
    form=st.sampled_from(["url", "query", "keyword", "quoted"]),
)
def test_a_dsn_label_never_shows_its_password(password: str, form: str) -> None:
    from urllib.parse import quote

    if form == "url":
        dsn = f"postgresql://user:{quote(password, safe='')}@db.internal:5432/agents"
    elif form == "query":
        dsn = f"postgresql://user@db.internal/agents?sslmode=require&password={quote(password, safe='')}"
    elif form == "keyword":
        dsn = f"host=db.internal password={password} dbname=agents"
    else:
        escaped = password.replace("\\", "\\\\").replace("'", "\\'")
        dsn = f"host=db.internal password='{escaped} and more' dbname=agents"
    label = headway._report.redact_dsn(dsn)
    assert password not in label
    assert quote(password, safe="") not in label
    assert "***" in label
    assert "db.internal" in label


# ---- the command line ------------------------------------------------------------------------------------


@pytest.fixture
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at 80 columns when not on a terminal


@pytest.mark.usefixtures("wide")
def test_cli_report_text_json_and_html(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(db)]) == 0
    out = capsys.readouterr().out
    assert "6 runs, 94 events" in out
    assert "outcomes: 4 completed, 1 flagged, 1 stopped" in out
    assert "unmet_precondition" in out
    assert "refund_without_lookup, ambiguous_order" in out
    assert "4 runs reached every milestone" in out

    html_path = tmp_path / "out" / "report.html"
    assert main(["report", str(db), "--json", "--html", str(html_path)]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert (data["runs"], data["classes"][0]["kind"]) == (6, "unmet_precondition")
    assert f"wrote {html_path}" in captured.err
    page = html_path.read_text(encoding="utf-8")
    assert page.count("<svg") == 3
    assert "refund_without_lookup" in page

    policy_file = Path(__file__).parents[2] / "examples" / "support_desk" / "policy.toml"
    assert main(["--store", str(db), "report", "--policy", str(policy_file), "--json"]) == 0
    assert [s["milestone"] for s in json.loads(capsys.readouterr().out)["funnel"]] == ORDER


def test_cli_report_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.jsonl").write_text('{"run_id": "r"\n')
    assert main(["report", str(tmp_path / "bad.jsonl")]) == 1
    assert "bad.jsonl, line 1: not valid JSON" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.db")]) == 1
    assert "missing.db" in capsys.readouterr().err
    SQLiteStore(tmp_path / "empty.db").close()
    assert main(["report", str(tmp_path / "empty.db")]) == 0
    out = capsys.readouterr().out
    assert "0 runs, 0 events" in out
    assert "no findings recorded" in out


@pytest.mark.usefixtures("wide")
def test_cli_show_a_run(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "lookup_loop", "--store", str(db)]) == 0
    out = capsys.readouterr().out
    assert "run lookup_loop: 15 events" in out
    assert 'lookup_order({"order_id": "A1"})' in out
    assert "reached: order_found" in out
    assert "medium loop: lookup_order was already called" in out
    assert "stop" in out
    assert "the run was stopped" in out

    assert main(["--store", str(db), "show", "over_threshold"]) == 0
    out = capsys.readouterr().out
    assert "approve by maria@support" in out
    assert "allow: approved by maria@support" in out
    assert "final answer: I have refunded $250 for order A3." in out
    assert "end decision: allow" in out

    assert main(["show", "silent_wrong_result", "--store", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    steps = data["steps"]
    assert [s["step"] for s in steps] == list(range(1, 15))
    result = steps[12]
    assert (result["type"], result["tool"], result["output"]["amount"]) == (
        "tool_result",
        "refund_order",
        400.0,
    )
    assert result["decision"]["action"] == "escalate"
    assert result["decision"]["findings"][0]["kind"] == "silent_tool_error"
    assert steps[-1]["final_answer"] == "I have refunded $40 for order A1."
    assert steps[-1]["decision"]["findings"][0]["kind"] == "ignored_tool_error"


def test_cli_show_an_unknown_run(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "no-such-run", "--store", str(db)]) == 1
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_cli_show_escapes_terminal_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_events(
        tmp_path / "t.db", [Event("r", 1, 1.0, "user", {"text": "hi \x1b[31mred [bold]x[/bold]"})]
    )
    assert main(["show", "r", "--store", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\\x1b[31mred [bold]x[/bold]" in out


# ---- the HTML report in a real browser --------------------------------------------------------------------


@pytest.fixture
def hostile(db: Path, tmp_path: Path) -> Path:
    """The scenarios plus a run whose id, tool and finding carry markup."""
    finding = {"check": "x", "kind": "policy_violation", "severity": "high", "message": f"bad {SCRIPT}"}
    decision = {"action": "block", "reason": IMG, "findings": [finding]}
    extra = write_events(
        tmp_path / "hostile.db",
        [
            Event(IMG, 1, 1000.0, "tool_call", {"tool": SCRIPT, "call_id": "c1", "decision": decision}),
            Event(IMG, 2, 1001.0, "tool_result", {"tool": SCRIPT, "milestones": [IMG], "decision": {}}),
        ],
    )
    page = render_html(report([db, extra]))
    out = tmp_path / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def test_html_escapes_trace_text(hostile: Path) -> None:
    page = hostile.read_text(encoding="utf-8")
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing remote


def test_html_report_in_the_browser(chromium: Browser, hostile: Path, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = chromium.new_page(viewport={"width": 1200, "height": 1400})
    page.set_default_timeout(10_000)
    errors: list[str] = []
    dialogs: list[str] = []

    def on_console(message: ConsoleMessage) -> None:  # CSP violations are console errors too
        if message.type == "error":
            errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.goto(hostile.as_uri())

    charts = {
        "timeline-chart": "Failures by class over time",
        "funnel-chart": "Progress funnel across milestones",
        "tools-chart": "Decisions by tool",
    }
    for chart, title in charts.items():
        svg = page.locator(f"svg#{chart}")
        expect(svg).to_be_visible()
        expect(svg.locator("title").first).to_have_text(title)
        assert svg.locator("rect.bar").count() > 0
        box = svg.bounding_box()
        assert box is not None
        assert box["width"] > 400
        assert box["height"] > 50
    assert page.locator("svg#funnel-chart path.link").count() == 4  # between 5 steps: all runs + 4
    bar_titles = page.locator("svg#tools-chart rect.bar title").all_text_contents()
    assert "refund_order: clarify 1 of 7 calls" in bar_titles
    assert f"{SCRIPT}: block 1 of 1 calls" in bar_titles

    ranked = page.locator("#classes tr[data-kind]")
    expect(ranked.first).to_have_attribute("data-kind", "unmet_precondition")
    row = page.locator('#classes tr[data-kind="policy_violation"]')
    expect(row).to_contain_text(IMG)  # the example run id, as text
    expect(row).to_contain_text(f"bad {SCRIPT}")
    expect(page.locator("#funnel")).to_contain_text(IMG)  # a milestone named like markup
    assert page.evaluate("document.querySelectorAll('script, img, iframe').length") == 0
    page.wait_for_timeout(100)  # an onerror would have fired by now
    assert dialogs == []
    assert errors == []

    png = page.screenshot()
    (tmp_path / "report.png").write_bytes(png)
    width, height, pixels = decode_png(png)
    assert (width, height) == (1200, 1400)
    colours = Counter(pixels)
    assert len(colours) > 50  # bars in many colours, text and tables: not a blank page
    assert colours.most_common(1)[0][1] < 0.9 * len(pixels)
    page.close()
