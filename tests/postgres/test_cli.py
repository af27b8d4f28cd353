"""`headway --store postgresql://...`: the CLI over a real PostgreSQL server (the folder's `dsn` fixture)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from headway.cli import main
from headway.escalations import Escalation
from headway.postgres import PostgresStore
from headway.traces import Event


def as_url(dsn: str) -> str:
    """The fixture's `host=/socket/dir ...` DSN as a postgresql:// URL (the CLI takes both forms)."""
    if dsn.startswith("postgresql://"):
        return dsn
    p = conninfo_to_dict(dsn)
    return f"postgresql://{quote(str(p['user']))}@/{quote(str(p['dbname']))}?host={quote(str(p['host']), safe='')}&port={p.get('port', 5432)}"


def test_list_show_and_approve_over_postgres(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    with PostgresStore(dsn) as store:
        store.append(Event("r1", 0, 1.0, "user", {"text": "refund A1 please"}), durable=True)
        store.create(
            Escalation(
                id="esc_pg",
                run_id="r1",
                call_id="c1",
                tool="refund_order",
                args={"order_id": "A1", "amount": 250},
                kind="escalate",
                reason="refunds over $100 need a person",
                created_at=2.0,
            )
        )
    url = as_url(dsn)
    assert main(["--store", url, "escalations", "list", "--json"]) == 0
    assert [e["id"] for e in json.loads(capsys.readouterr().out)["escalations"]] == ["esc_pg"]
    assert main(["--store", url, "escalations", "show", "esc_pg", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trajectory"][0]["summary"] == "refund A1 please"
    assert main(["--store", url, "escalations", "approve", "esc_pg", "--by", "alice"]) == 0
    assert main(["--store", url, "escalations", "approve", "esc_pg", "--by", "bob"]) == 1
    assert "already approved by alice" in capsys.readouterr().err
    with PostgresStore(dsn) as store:
        decided = store.get("esc_pg")
    assert decided is not None
    assert (decided.status, decided.decided_by) == ("approved", "alice")


def test_the_cli_takes_libpq_keyword_dsns_too(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    keywords = (
        dsn
        if not dsn.startswith("postgresql://")
        else " ".join(f"{k}={v}" for k, v in conninfo_to_dict(dsn).items())
    )
    with PostgresStore(keywords) as store:
        store.append(Event("kw", 0, 1.0, "user", {"text": "hello"}), durable=True)
    assert main(["--store", keywords, "escalations", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["escalations"] == []
    assert main(["--store", keywords, "report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] >= 1


def test_an_unreachable_server_is_a_refusal_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--store", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "escalations", "list"])
        == 1
    )
    assert "cannot open the PostgreSQL store" in capsys.readouterr().err
