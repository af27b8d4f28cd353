"""The webhook notifier against a real HTTP server on 127.0.0.1: payloads, signatures, retries, redaction,
and that nothing it does can slow down or break the agent's path."""

from __future__ import annotations

import datetime
import json
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from headway import Finding, HeadwayError
from headway._escalations import (
    Delivery,
    Escalation,
    EscalationStore,
    MemoryEscalations,
    SQLiteEscalations,
    escalation_id,
)
from headway.notify import Notifier, WebhookNotifier, redact, sign, verify_signature

SECRET = "whsec_0123456789abcdef0123456789abcdef"


# ---- a real webhook receiver ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: threading.Event | None = None  # the reply waits until the test sets it


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Hook:
    """What the receiver answers (`replies` in order, then `default`) and what it received."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.replies: list[Reply] = []
        self.default = Reply()
        self.received: list[Received] = []
        self._lock = threading.Lock()

    def take(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            return self.replies.pop(0) if self.replies else self.default

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            assert time.monotonic() < deadline, f"expected {n} requests, got {len(self.received)}"
            time.sleep(0.005)


class _Server(ThreadingHTTPServer):
    hook: Hook

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that timed out and hung up
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        assert isinstance(self.server, _Server)
        reply = self.server.hook.take(Received(self.path, dict(self.headers.items()), body))
        if reply.gate is not None:
            reply.gate.wait(5)
        time.sleep(reply.delay)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@pytest.fixture
def hook() -> Iterator[Hook]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.hook = Hook(f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.hook
    server.shutdown()
    server.server_close()


Make = Callable[..., WebhookNotifier]


@pytest.fixture
def make() -> Iterator[Make]:
    """Notifiers with test-sized backoffs, closed after the test."""
    made: list[WebhookNotifier] = []

    def build(url: str, **kw: Any) -> WebhookNotifier:
        kw.setdefault("backoff", 0.01)
        kw.setdefault("max_backoff", 0.05)
        kw.setdefault("timeout", 3.0)
        n = WebhookNotifier(url, kw.pop("secret", SECRET), **kw)
        made.append(n)
        return n

    yield build
    for n in made:
        n.close(timeout=2)


def escalation(call_id: str = "c1", **kw: Any) -> Escalation:
    fields: dict[str, Any] = {
        "id": escalation_id("r1", call_id, 0),
        "run_id": "r1",
        "call_id": call_id,
        "tool": "refund_order",
        "args": {"order_id": "A1", "amount": 250},
        "kind": "escalate",
        "reason": "a refund of 250 needs approval (over 100)",
        "findings": (
            Finding("approve_when", "policy_violation", "high", "amount 250 > 100", evidence={"amount": 250}),
        ),
        "created_at": 1_700_000_000.0,
    }
    fields.update(kw)
    return Escalation(**fields)


def deliver(n: WebhookNotifier, esc: Escalation, store: EscalationStore | None = None) -> list[Delivery]:
    store = store if store is not None else MemoryEscalations()
    store.create(esc)
    n.notify(esc, store)
    assert n.flush(5)
    return store.deliveries(esc.id)


# ---- payloads and signatures ------------------------------------------------------------------------


def test_json_payload_is_signed_and_verifies(hook: Hook, make: Make) -> None:
    n = make(hook.url, inbox_url="https://inbox.example/")
    esc = escalation()
    [d] = deliver(n, esc)
    assert (d.ok, d.attempt, d.detail, d.escalation_id) == (True, 1, "HTTP 200 OK", esc.id)
    assert d.target == hook.url

    [req] = hook.received
    assert req.path == "/hook"
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Headway-Id"] == esc.id
    assert req.headers["X-Headway-Delivery"]
    assert verify_signature(SECRET, req.body, req.headers["X-Headway-Signature"])
    assert json.loads(req.body) == {
        "type": "headway.escalation",
        "escalation": {
            "id": esc.id,
            "run_id": "r1",
            "call_id": "c1",
            "tool": "refund_order",
            "kind": "escalate",
            "args": {"order_id": "A1", "amount": 250},
            "reason": "a refund of 250 needs approval (over 100)",
            "question": None,
            "findings": [
                {
                    "check": "approve_when",
                    "kind": "policy_violation",
                    "severity": "high",
                    "message": "amount 250 > 100",
                    "evidence": {"amount": 250},
                }
            ],
            "created_at": 1_700_000_000.0,
        },
        "links": {
            "inbox": "https://inbox.example",
            "escalation": f"https://inbox.example/api/escalations/{esc.id}",
            "approve_cli": f"headway escalations approve {esc.id} --by <your-name>",
        },
    }


def test_links_are_null_without_an_inbox(hook: Hook, make: Make) -> None:
    deliver(make(hook.url), escalation())
    links = json.loads(hook.received[0].body)["links"]
    assert links["inbox"] is None
    assert links["escalation"] is None
    assert links["approve_cli"].startswith("headway escalations approve esc_")


def test_slack_format(hook: Hook, make: Make) -> None:
    n = make(hook.url, format="slack", inbox_url="https://inbox.example")
    esc = escalation(kind="clarify", question="Which order: A1 or A2?", reason="two orders <match> & more")
    [d] = deliver(n, esc)
    assert d.ok
    [req] = hook.received
    assert verify_signature(SECRET, req.body, req.headers["X-Headway-Signature"])
    msg = json.loads(req.body)
    assert set(msg) == {"text", "blocks"}
    assert "refund_order needs an answer" in msg["text"]
    text = json.dumps(msg["blocks"])
    assert "refund_order" in text
    assert "two orders &lt;match&gt; &amp; more" in text  # mrkdwn-escaped: no accidental links or mentions
    assert "Which order: A1 or A2?" in text
    assert "amount 250 > 100" not in text  # escaped there too
    assert "amount 250 &gt; 100" in text
    assert "policy_violation" in text
    buttons = [e for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["url"] == "https://inbox.example"
    assert f"headway escalations answer {esc.id} --text" in text  # a clarification is answered
    assert all(b["type"] in {"header", "section", "actions", "context"} for b in msg["blocks"])


def test_slack_texts_stay_within_slack_limits(hook: Hook, make: Make) -> None:
    esc = escalation(reason="<" * 5000, args={"note": "&" * 5000})
    deliver(make(hook.url, format="slack"), esc)
    msg = json.loads(hook.received[0].body)
    sections = [b["text"]["text"] for b in msg["blocks"] if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    assert sections[0].endswith("&lt;…")  # cut between entities, not inside one
    assert len(msg["text"]) <= 1000


def test_a_slack_webhook_path_is_not_recorded() -> None:
    with WebhookNotifier("https://hooks.slack.com/services/T00/B00/XXXXSECRET", SECRET, format="slack") as n:
        assert "XXXXSECRET" not in n.target
        assert "XXXXSECRET" not in repr(n)
        assert SECRET not in repr(n)


def test_sign_and_verify() -> None:
    header = sign(SECRET, b"{}", 1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, b"{}", header, now=1_700_000_100)
    assert verify_signature(SECRET.encode(), b"{}", header, now=1_700_000_100)
    # Rotating: a receiver sees two signatures and accepts the one it can check.
    rotated = header + ",v1=" + sign("another-secret-0123456789", b"{}", 1_700_000_000).split("v1=")[1]
    assert verify_signature("another-secret-0123456789", b"{}", rotated, now=1_700_000_000)


@pytest.mark.parametrize(
    ("secret", "body", "header", "now"),
    [
        pytest.param("wrong-secret-0123456789", b"{}", None, 1_700_000_000, id="forged"),
        pytest.param(SECRET, b'{"x":1}', None, 1_700_000_000, id="tampered-body"),
        pytest.param(SECRET, b"{}", None, 1_700_000_301, id="replayed"),
        pytest.param(SECRET, b"{}", None, 1_699_999_699, id="from-the-future"),
        pytest.param("", b"{}", None, 1_700_000_000, id="empty-secret"),
        pytest.param(SECRET, b"{}", "", 1_700_000_000, id="empty"),
        pytest.param(SECRET, b"{}", "garbage", 1_700_000_000, id="garbage"),
        pytest.param(SECRET, b"{}", "t=1700000000", 1_700_000_000, id="no-v1"),
        pytest.param(SECRET, b"{}", "v1=00", 1_700_000_000, id="no-t"),
        pytest.param(SECRET, b"{}", "t=abc,v1=00", 1_700_000_000, id="bad-t"),
        pytest.param(SECRET, b"{}", "t=-1,v1=00", 1_700_000_000, id="negative-t"),
        pytest.param(SECRET, b"{}", "t=1700000000,v1=zz", 1_700_000_000, id="bad-hex"),
        pytest.param(SECRET, b"{}", "t=1700000000,v1=é", 1_700_000_000, id="non-ascii"),
        pytest.param(SECRET, b"{}", "t=1700000000,v2=00", 1_700_000_000, id="unknown-scheme-only"),
    ],
)
def test_verify_refuses(secret: str, body: bytes, header: str | None, now: float) -> None:
    good = sign(SECRET, b"{}", 1_700_000_000)
    assert verify_signature(secret, body, good if header is None else header, now=now) is False


def test_verify_refuses_a_second_timestamp() -> None:
    good = sign(SECRET, b"{}", 1_700_000_000)
    assert not verify_signature(SECRET, b"{}", good + ",t=1700000001", now=1_700_000_000)
    assert not verify_signature(SECRET, b"{}", "t=1700000001," + good, now=1_700_000_000)


def test_verify_refuses_wrong_types() -> None:
    good = sign(SECRET, b"{}", 1_700_000_000)
    assert not verify_signature(SECRET, "{}", good, now=1_700_000_000)  # type: ignore[arg-type]
    assert not verify_signature(SECRET, b"{}", None, now=1_700_000_000)  # type: ignore[arg-type]
    assert not verify_signature(SECRET, b"{}", good + "," + "x=y" * 2000, now=1_700_000_000)


@given(st.binary(max_size=200), st.integers(0, 2**40), st.data())
def test_any_changed_byte_breaks_the_signature(body: bytes, t: int, data: st.DataObject) -> None:
    header = sign(SECRET, body, t)
    assert verify_signature(SECRET, body, header, now=t)
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        changed = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
        assert not verify_signature(SECRET, changed, header, now=t)


@given(st.text(max_size=300))
def test_arbitrary_headers_never_verify_or_raise(header: str) -> None:
    assert verify_signature(SECRET, b"{}", header, now=1_700_000_000) is False


# ---- retries and failures ---------------------------------------------------------------------------


def test_two_500s_then_success(hook: Hook, make: Make) -> None:
    hook.replies = [Reply(500, b"down"), Reply(502, b"bad gateway")]
    ds = deliver(make(hook.url), escalation())
    assert [(d.attempt, d.ok) for d in ds] == [(1, False), (2, False), (3, True)]
    assert ds[0].detail == "HTTP 500 Internal Server Error: down"
    assert len(hook.received) == 3
    # One delivery id across retries (a receiver drops duplicates), each attempt freshly signed.
    assert len({r.headers["X-Headway-Delivery"] for r in hook.received}) == 1
    assert all(verify_signature(SECRET, r.body, r.headers["X-Headway-Signature"]) for r in hook.received)


def test_a_server_that_always_fails_leaves_the_escalation_pending(
    hook: Hook, make: Make, tmp_path: Path
) -> None:
    hook.default = Reply(503, b"maintenance")
    store = SQLiteEscalations(tmp_path / "t.db")
    try:
        esc = escalation()
        ds = deliver(make(hook.url, retries=2), esc, store)
        assert [(d.attempt, d.ok) for d in ds] == [(1, False), (2, False), (3, False)]
        assert ds[-1].detail == "HTTP 503 Service Unavailable: maintenance; gave up after 3 attempts"
        assert len(hook.received) == 3
        stored = store.get(esc.id)
        assert stored is not None
        assert stored.pending
    finally:
        store.close()


def test_connection_refused_is_recorded_not_raised(make: Make) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    ds = deliver(make(f"http://127.0.0.1:{port}/hook", retries=1), escalation())
    assert [(d.attempt, d.ok) for d in ds] == [(1, False), (2, False)]
    assert ds[0].detail.startswith("connection failed: ConnectError")
    assert ds[1].detail.endswith("gave up after 2 attempts")


def test_a_timeout_is_retried(hook: Hook, make: Make) -> None:
    hook.replies = [Reply(delay=0.5)]
    ds = deliver(make(hook.url, timeout=0.1), escalation())
    assert [(d.attempt, d.ok) for d in ds] == [(1, False), (2, True)]
    assert ds[0].detail.startswith("timed out after 0.1s")


@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_no_retry_on_other_4xx(hook: Hook, make: Make, status: int) -> None:
    hook.default = Reply(status, b"nope")
    ds = deliver(make(hook.url), escalation())
    assert [(d.attempt, d.ok) for d in ds] == [(1, False)]
    assert ds[0].detail.startswith(f"HTTP {status}")
    assert ds[0].detail.endswith(": nope; not retried")
    assert len(hook.received) == 1


@pytest.mark.parametrize("retry_after", ["0", "3600", "soon"])
def test_429_honours_a_short_retry_after_only(hook: Hook, make: Make, retry_after: str) -> None:
    # A backoff of 2 s would show in the elapsed time; "0" is honoured, "3600" and "soon" fall back to it
    # capped by max_backoff.
    hook.replies = [Reply(429, headers={"Retry-After": retry_after})]
    max_backoff = 2.0 if retry_after == "0" else 0.05
    start = time.monotonic()
    ds = deliver(make(hook.url, backoff=2.0, max_backoff=max_backoff), escalation())
    assert time.monotonic() - start < 1.0
    assert [(d.attempt, d.ok) for d in ds] == [(1, False), (2, True)]


def test_a_redirect_is_not_followed(hook: Hook, make: Make) -> None:
    hook.default = Reply(302, headers={"Location": "http://127.0.0.1:1/elsewhere"})
    ds = deliver(make(hook.url), escalation())
    assert [(d.attempt, d.ok) for d in ds] == [(1, False)]
    assert len(hook.received) == 1


def test_a_store_that_fails_does_not_stop_the_worker(hook: Hook, make: Make) -> None:
    class Broken(MemoryEscalations):
        def record_delivery(self, delivery: Delivery) -> None:
            raise RuntimeError("disk full")

    n = make(hook.url)
    n.notify(escalation("c1"), Broken())
    assert n.flush(5)
    ds = deliver(n, escalation("c2"))
    assert [d.ok for d in ds] == [True]


# ---- the agent's path -------------------------------------------------------------------------------


def test_notify_returns_at_once_while_the_server_is_slow(hook: Hook, make: Make) -> None:
    hook.default = Reply(delay=1.0)
    n = make(hook.url)
    store = MemoryEscalations()
    esc = store.create(escalation())
    start = time.perf_counter()
    n.notify(esc, store)
    assert time.perf_counter() - start < 0.05
    assert store.deliveries(esc.id) == []
    assert n.flush(5)
    assert [d.ok for d in store.deliveries(esc.id)] == [True]


def test_a_full_queue_drops_and_records(hook: Hook, make: Make) -> None:
    gate = threading.Event()
    hook.default = Reply(gate=gate)
    n = make(hook.url, queue_size=1)
    store = MemoryEscalations()
    first, second, third = (store.create(escalation(c)) for c in ("c1", "c2", "c3"))
    try:
        n.notify(first, store)
        hook.wait_for(1)  # the worker is busy with the first
        n.notify(second, store)  # waits in the queue
        n.notify(third, store)  # finds it full
        [dropped] = store.deliveries(third.id)
        assert (dropped.attempt, dropped.ok) == (0, False)
        assert "1 notifications already waiting" in dropped.detail
    finally:
        gate.set()
    assert n.flush(5)
    assert [d.ok for d in store.deliveries(first.id)] == [True]
    assert [d.ok for d in store.deliveries(second.id)] == [True]


def test_close_cuts_a_backoff_short_and_later_notifications_are_recorded(hook: Hook, make: Make) -> None:
    hook.default = Reply(500)
    n = make(hook.url, backoff=30.0, max_backoff=30.0)
    store = MemoryEscalations()
    esc = store.create(escalation())
    n.notify(esc, store)
    hook.wait_for(1)
    start = time.monotonic()
    n.close(timeout=0.2)
    assert time.monotonic() - start < 1.5
    ds = store.deliveries(esc.id)
    assert [(d.attempt, d.ok) for d in ds] == [(1, False), (2, False)]
    assert ds[1].detail == "not sent: the notifier was closed"
    later = store.create(escalation("c2"))
    n.notify(later, store)
    assert [(d.attempt, d.ok, d.detail) for d in store.deliveries(later.id)] == [
        (0, False, "not sent: the notifier is closed")
    ]
    n.close()  # twice is fine


def test_odd_argument_values_are_still_delivered(hook: Hook, make: Make) -> None:
    args = {
        "when": datetime.date(2024, 1, 2),
        "ratio": float("nan"),
        "blob": b"\xff\x00",
        "tags": {"a"},
        "obj": object(),
        3: "int key",
        "text": "\ud800 lone surrogate",
    }
    [d] = deliver(make(hook.url), escalation(args=args))
    assert d.ok
    body = json.loads(hook.received[0].body)["escalation"]["args"]
    assert body["when"] == "datetime.date(2024, 1, 2)"
    assert body["ratio"] == "nan"
    assert body["3"] == "int key"


# ---- redaction and secrets --------------------------------------------------------------------------


def test_redaction_of_configured_and_default_fields(hook: Hook, make: Make) -> None:
    args = {
        "order_id": "A1",
        "amount": 250,
        "customer": {"email": "ann@example.com", "Password": "hunter2hunter2", "apiKey": "k-12345678"},
        "cards": [{"card_number": 4111111111111111, "cvv": "123"}],
        "internal_note": "VIP, do not question",
        "headers": {"Authorization": "Bearer abcdefgh", "X-Request-Id": "req-1"},
    }
    finding = Finding(
        "luhn",
        "invalid_args",
        "high",
        "card 4111111111111111 was declined",
        evidence={"card": {"card_number": "4111111111111111"}, "session_token": "tok-abcdef"},
    )
    esc = escalation(args=args, findings=(finding,), reason="card 4111111111111111 for ann@example.com")
    [d] = deliver(make(hook.url, redact=("email", "internal_*")), esc)
    assert d.ok
    raw = hook.received[0].body.decode()
    for hidden in ("ann@example.com", "hunter2hunter2", "k-12345678", "4111111111111111", "VIP", "abcdefgh"):
        assert hidden not in raw
    assert "tok-abcdef" not in raw
    sent = json.loads(raw)["escalation"]
    assert sent["args"] == {
        "order_id": "A1",
        "amount": 250,
        "customer": {"email": "[redacted]", "Password": "[redacted]", "apiKey": "[redacted]"},
        "cards": [{"card_number": "[redacted]", "cvv": "[redacted]"}],
        "internal_note": "[redacted]",
        "headers": {"Authorization": "[redacted]", "X-Request-Id": "req-1"},
    }
    assert sent["findings"][0]["evidence"] == {
        "card": {"card_number": "[redacted]"},
        "session_token": "[redacted]",
    }
    # A redacted value quoted elsewhere is removed there too.
    assert sent["reason"] == "card [redacted] for [redacted]"
    assert sent["findings"][0]["message"] == "card [redacted] was declined"


def test_ids_survive_a_redacted_value_that_matches_them(hook: Hook, make: Make) -> None:
    esc = escalation(run_id="run-abcdef", args={"token": "run-abcdef"}, reason="run-abcdef needs a person")
    deliver(make(hook.url), esc)
    sent = json.loads(hook.received[0].body)["escalation"]
    assert sent["run_id"] == "run-abcdef"
    assert sent["args"] == {"token": "[redacted]"}
    assert sent["reason"] == "[redacted] needs a person"


def test_redact_defaults_can_be_turned_off(hook: Hook, make: Make) -> None:
    esc = escalation(args={"password": "hunter2hunter2", "email": "ann@example.com"})
    deliver(make(hook.url, redact=["email"], redact_defaults=False), esc)
    sent = json.loads(hook.received[0].body)["escalation"]["args"]
    assert sent == {"password": "hunter2hunter2", "email": "[redacted]"}


def test_the_secret_never_leaves(hook: Hook, make: Make) -> None:
    hook.default = Reply(500, f"echo {SECRET}".encode())
    esc = escalation(args={"note": f"the key is {SECRET}", SECRET: 1}, reason=f"saw {SECRET}")
    ds = deliver(make(hook.url, retries=1), esc)
    assert hook.received
    for r in hook.received:
        assert SECRET not in r.body.decode()
        assert SECRET not in json.dumps(r.headers).replace(r.headers["X-Headway-Signature"], "")
    for d in ds:
        assert SECRET not in repr(d)
    assert "echo [redacted]" in ds[0].detail


def test_url_credentials_stay_out_of_delivery_records(hook: Hook, make: Make) -> None:
    hook.default = Reply(400, b"bad token=qs-secret-123")
    url = hook.url.replace("http://", "http://user:pw-secret-456@") + "?token=qs-secret-123"
    n = make(url)
    assert n.target == hook.url
    [d] = deliver(n, escalation())
    assert d.target == hook.url
    assert "qs-secret-123" not in d.detail
    assert "pw-secret-456" not in repr(d)
    assert hook.received[0].path == "/hook?token=qs-secret-123"  # still sent to the receiver


def test_redact_helper() -> None:
    value = {"a": [{"Card-Number": "4111"}, {"ok": 1}], "db": {"password": "x"}, "my_secret": "y"}
    assert redact(value) == {
        "a": [{"Card-Number": "[redacted]"}, {"ok": 1}],
        "db": {"password": "[redacted]"},
        "my_secret": "[redacted]",
    }
    assert value["db"] == {"password": "x"}  # a copy; the input is untouched
    assert redact({"ok": 1, "okay": 2}, "ok", defaults=False) == {"ok": "[redacted]", "okay": 2}
    assert redact({"user_email": 1, "email": 2}, ["*_email"], defaults=False) == {
        "user_email": "[redacted]",
        "email": 2,
    }
    assert redact("password") == "password"  # only field names are matched, not values


# ---- configuration ----------------------------------------------------------------------------------


def test_it_is_a_notifier() -> None:
    with WebhookNotifier("http://127.0.0.1:9/hook", SECRET) as n:
        assert isinstance(n, Notifier)


@pytest.mark.parametrize(
    ("url", "secret", "kw"),
    [
        ("http://127.0.0.1:9/hook", "short", {}),
        ("ftp://127.0.0.1/hook", SECRET, {}),
        ("not a url", SECRET, {}),
        ("http://127.0.0.1:9/hook", SECRET, {"format": "xml"}),
        ("http://127.0.0.1:9/hook", SECRET, {"retries": -1}),
        ("http://127.0.0.1:9/hook", SECRET, {"timeout": 0}),
    ],
)
def test_configuration_mistakes_raise_at_once(url: str, secret: str, kw: dict[str, Any]) -> None:
    with pytest.raises(HeadwayError):
        WebhookNotifier(url, secret, **kw)
