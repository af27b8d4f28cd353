"""The approval inbox through a real uvicorn server on 127.0.0.1: the JSON API over HTTP, and the page in a
real headless Chromium (Debian's /usr/bin/chromium through Playwright), deciding escalations as a person
would. Without the browser those tests skip, unless HEADWAY_REQUIRE_BROWSER=1 (CI), where they fail."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn

from headway import Finding
from headway.escalations import Escalation, SQLiteEscalations
from headway.inbox import MAX_BODY_BYTES, create_app
from headway.traces import Event, SQLiteStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page

TOKEN = "test-token-0123456789abcdef"
CHROMIUM = "/usr/bin/chromium"
IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
SQL = "'; DROP TABLE escalations; --"


def esc(id_: str, *, args: dict[str, Any] | None = None, reason: str = "refunds over $100 need a person",
        created: float = 1000.0, findings: tuple[Finding, ...] = ()) -> Escalation:  # fmt: skip
    return Escalation(
        id=id_,
        run_id="r1",
        call_id=f"c-{id_}",
        tool="refund_order",
        args={"order_id": "A1", "amount": 250} if args is None else args,
        kind="escalate",
        reason=reason,
        findings=findings,
        created_at=created,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Pending esc_a (with a finding) and esc_b, and run r1's trace."""
    path = tmp_path / "traces.db"
    with SQLiteStore(path) as traces:
        traces.append(Event("r1", 0, 900.0, "user", {"text": "Please refund order A1, it arrived broken"}))
        call = {
            "call_id": "c-esc_a",
            "tool": "refund_order",
            "args": {"order_id": "A1", "amount": 250},
            "decision": {"action": "escalate", "reason": "refunds over $100 need a person"},
        }
        traces.append(Event("r1", 1, 901.0, "tool_call", call), durable=True)
    store = SQLiteEscalations(path)
    finding = Finding("bounds", "policy_violation", "high", "amount 250 is over the 100 limit")
    store.create(esc("esc_a", created=1002.0, findings=(finding,)))
    store.create(esc("esc_b", created=1001.0))
    store.close()
    return path


def stored(path: Path, id_: str) -> Escalation:
    store = SQLiteEscalations(path)
    try:
        found = store.get(id_)
    finally:
        store.close()
    assert found is not None
    return found


@pytest.fixture
def base(db: Path) -> Iterator[str]:
    """The inbox over `db`, served by uvicorn in a thread on a free loopback port; yields its base URL."""
    escalations, traces = SQLiteEscalations(db), SQLiteStore(db)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(escalations, traces, TOKEN), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()
    escalations.close()
    traces.close()


def call(
    base: str,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    *,
    token: str | None = TOKEN,
    auth: str | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request; returns status, headers (lower-case names) and the decoded JSON (or the text)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if auth is not None or token is not None:
        headers["Authorization"] = auth if auth is not None else f"Bearer {token}"
    try:
        conn.request(
            method, path, body=body, headers=headers, encode_chunked=not isinstance(body, bytes | None)
        )
        r = conn.getresponse()
        raw = r.read()
        got = {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()
    is_json = got.get("content-type", "").startswith("application/json")
    return r.status, got, json.loads(raw) if is_json else raw.decode()


def decide(base: str, id_: str, payload: Any) -> tuple[int, Any]:
    status, _, data = call(base, "POST", f"/api/escalations/{id_}/decide", json.dumps(payload).encode())
    return status, data


# ---- the API ----------------------------------------------------------------------------------------------


def test_every_api_route_needs_the_token_and_the_page_holds_no_data(base: str) -> None:
    for path in ("/api/escalations", "/api/escalations/esc_a", "/api/nothing-here"):
        assert call(base, "GET", path, token=None)[0] == 401
        assert call(base, "GET", path, token="test-token-0123456789abcdeX")[0] == 401
        assert call(base, "GET", path, auth=f"Basic {TOKEN}")[0] == 401
    status, headers, _ = call(
        base, "POST", "/api/escalations/esc_a/decide", b'{"action":"approve","by":"x"}', token=""
    )
    assert (status, headers["www-authenticate"]) == (401, "Bearer")

    status, headers, page = call(base, "GET", "/", token=None)
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "esc_a" not in page
    assert "refund_order" not in page
    assert "innerHTML" not in page  # data goes in with textContent only

    status, _, data = call(
        base, "GET", "/api/escalations", auth=f"bearer {TOKEN}"
    )  # the scheme is case-blind
    assert status == 200
    assert [e["id"] for e in data["escalations"]] == ["esc_a", "esc_b"]


def test_security_headers(base: str) -> None:
    _, page_headers, _ = call(base, "GET", "/", token=None)
    _, api_headers, _ = call(base, "GET", "/api/escalations")
    for headers in (page_headers, api_headers):
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp  # the inline script and style are allowed by hash
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"


def test_list_and_detail(base: str) -> None:
    status, _, one = call(base, "GET", "/api/escalations/esc_a")
    assert status == 200
    assert one["escalation"]["findings"][0]["message"] == "amount 250 is over the 100 limit"
    assert [t["type"] for t in one["trajectory"]] == ["user", "tool_call"]
    assert one["trajectory"][1]["action"] == "escalate"
    assert "refund_order(" in one["trajectory"][1]["summary"]
    assert call(base, "GET", "/api/escalations/esc_nope")[0] == 404
    assert call(base, "GET", "/api/escalations?status=maybe")[0] == 400
    assert call(base, "GET", "/api/escalations?limit=ten")[0] == 400
    assert [e["id"] for e in call(base, "GET", "/api/escalations?limit=1")[2]["escalations"]] == ["esc_a"]


def test_decide_once_then_409_naming_who_decided(base: str, db: Path) -> None:
    status, data = decide(base, "esc_a", {"action": "approve", "by": "alice"})
    assert status == 200
    assert (data["escalation"]["status"], data["escalation"]["decided_by"]) == ("approved", "alice")
    status, data = decide(base, "esc_a", {"action": "reject", "by": "bob", "message": "no"})
    assert status == 409
    assert "already approved by alice" in data["error"]
    assert data["escalation"]["decided_by"] == "alice"
    assert stored(db, "esc_a").status == "approved"
    assert decide(base, "esc_nope", {"action": "approve", "by": "alice"})[0] == 404

    status, data = decide(
        base, "esc_b", {"action": "edit", "by": "bob", "args": {"order_id": "A1", "amount": 90}}
    )
    assert (status, data["escalation"]["new_args"]) == (200, {"order_id": "A1", "amount": 90})
    assert [e["id"] for e in call(base, "GET", "/api/escalations?status=all")[2]["escalations"]] == [
        "esc_a",
        "esc_b",
    ]
    assert call(base, "GET", "/api/escalations")[2]["escalations"] == []


def test_malformed_decisions_are_400_and_change_nothing(base: str, db: Path) -> None:
    bodies = [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'"approve"',
        b"[" * 10_000 + b"]" * 10_000,
        json.dumps({"action": "approve", "by": 5}).encode(),
        json.dumps({"action": "launch", "by": "alice"}).encode(),
        json.dumps({"action": "approve"}).encode(),
        json.dumps({"action": "edit", "by": "alice", "args": [1]}).encode(),
        json.dumps({"action": "reject", "by": "alice", "message": {"x": 1}}).encode(),
        json.dumps({"action": "approve", "by": "alice", "admin": True}).encode(),
        b'{"action": "edit", "by": "alice", "args": {"amount": NaN}}',
    ]
    for body in bodies:
        status, _, data = call(base, "POST", "/api/escalations/esc_a/decide", body)
        assert status == 400, (body[:60], data)
        assert data["error"]
    assert stored(db, "esc_a").pending


def test_bodies_over_64_kb_are_413(base: str, db: Path) -> None:
    big = json.dumps({"action": "reject", "by": "alice", "message": "x" * MAX_BODY_BYTES}).encode()
    assert call(base, "POST", "/api/escalations/esc_a/decide", big)[0] == 413
    # Without a Content-Length (chunked), the limit holds while reading.
    assert (
        call(
            base,
            "POST",
            "/api/escalations/esc_a/decide",
            (big[i : i + 8192] for i in range(0, len(big), 8192)),
        )[0]
        == 413
    )
    assert stored(db, "esc_a").pending


def test_html_and_sql_in_arguments_come_back_intact(base: str, db: Path) -> None:
    hostile = {"note": IMG, "html": SCRIPT, "sql": SQL, "quote": '" OR 1=1 --', "unicode": "zażółć \u202e"}
    store = SQLiteEscalations(db)
    store.create(esc("esc_x", args=hostile, reason=f"why {IMG}", created=2000.0))
    store.close()
    status, _, one = call(base, "GET", "/api/escalations/esc_x")
    assert status == 200
    assert one["escalation"]["args"] == hostile
    assert one["escalation"]["reason"] == f"why {IMG}"
    status, data = decide(base, "esc_x", {"action": "edit", "by": f"{SQL}{IMG}", "args": hostile})
    assert status == 200
    assert (data["escalation"]["new_args"], data["escalation"]["decided_by"]) == (hostile, f"{SQL}{IMG}")
    assert stored(db, "esc_x").new_args == hostile
    assert len(call(base, "GET", "/api/escalations?status=all")[2]["escalations"]) == 3  # no table dropped


# ---- the page in a real browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    missing = None
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = missing or "playwright is not installed (it is in the dev group)"
    if missing:
        if os.environ.get("HEADWAY_REQUIRE_BROWSER") == "1":
            pytest.fail(f"HEADWAY_REQUIRE_BROWSER=1 but {missing}", pytrace=False)
        pytest.skip(f"no browser: {missing}")
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield b
        b.close()


def open_inbox(browser: Browser, base: str) -> tuple[Page, list[str], list[str]]:
    """A page on the inbox with the token in the fragment; also the dialogs it opened and its errors."""
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.set_default_timeout(10_000)
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:  # CSP violations are console errors too
        if message.type == "error":
            errors.append(message.text)

    page.on("dialog", on_dialog)
    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/#token={TOKEN}")
    return page, dialogs, errors


def test_a_person_approves_and_rejects_in_the_browser(browser: Browser, base: str, db: Path) -> None:
    from playwright.sync_api import expect

    page, dialogs, errors = open_inbox(browser, base)
    card = page.locator('article.card[data-id="esc_a"]')
    expect(card).to_contain_text("amount 250 is over the 100 limit")
    expect(card.locator("ol.steps")).to_contain_text("Please refund order A1")
    expect(card.locator("ol.steps")).to_contain_text(
        'refund_order({"order_id": "A1", "amount": 250}) => escalate'
    )
    assert TOKEN not in page.url  # taken out of the address bar

    page.fill("#by", "alice")
    card.locator("button[data-action=approve]").click()
    expect(card).to_have_count(0)
    expect(page.locator('#history tr[data-id="esc_a"]')).to_contain_text("approved")
    expect(page.locator('#history tr[data-id="esc_a"] td.by')).to_have_text("alice")
    assert (stored(db, "esc_a").status, stored(db, "esc_a").decided_by) == ("approved", "alice")

    other = page.locator('article.card[data-id="esc_b"]')
    other.locator("input.message").fill("not for this customer")
    other.locator("button[data-action=reject]").click()
    expect(page.locator('#history tr[data-id="esc_b"]')).to_contain_text("not for this customer")
    rejected = stored(db, "esc_b")
    assert (rejected.status, rejected.message, rejected.decided_by) == (
        "rejected",
        "not for this customer",
        "alice",
    )
    expect(page.locator("#pending-empty")).to_be_visible()

    # A reload keeps the token (sessionStorage) and shows the history.
    page.reload()
    expect(page.locator('#history tr[data-id="esc_b"] td.status')).to_have_text("rejected")
    assert dialogs == []
    assert errors == []
    page.close()


def test_markup_in_arguments_is_shown_as_text_and_the_page_renders(
    browser: Browser, base: str, db: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    store = SQLiteEscalations(db)
    hostile = Finding("grounded", "ungrounded", "medium", f"amount not in the conversation {SCRIPT}")
    store.create(
        esc(
            "esc_x",
            args={"note": IMG, "html": SCRIPT, "sql": SQL},
            reason=f"why {IMG}",
            created=2000.0,
            findings=(hostile,),
        )
    )
    store.close()

    page, dialogs, errors = open_inbox(browser, base)
    card = page.locator('article.card[data-id="esc_x"]')
    expect(card.locator("pre.args")).to_contain_text(f'"note": "{IMG}"')
    expect(card.locator("pre.args")).to_contain_text(f'"html": "{SCRIPT}"')
    expect(card.locator("p.reason")).to_have_text(f"why {IMG}")
    expect(card.locator("ul.findings")).to_contain_text(SCRIPT)
    expect(page.locator('article.card[data-id="esc_a"]')).to_be_visible()
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("document.querySelectorAll('script').length") == 1  # the page's own
    page.wait_for_timeout(200)  # an onerror would have fired by now
    assert dialogs == []
    assert errors == []

    png = page.screenshot()
    (tmp_path / "inbox.png").write_bytes(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 20_000 < len(png) < 5_000_000
    width, height, pixels = decode_png(png)
    assert (width, height) == (1100, 800)
    colours = Counter(pixels)
    assert len(colours) > 50  # text, buttons and the header bar, not a blank page
    assert colours.most_common(1)[0][1] < 0.9 * len(pixels)
    page.close()


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB(A) pixels of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    pos, idat = 8, bytearray()
    width = height = bpp = 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, chunk = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            width, height = int.from_bytes(chunk[0:4], "big"), int.from_bytes(chunk[4:8], "big")
            assert (chunk[8], chunk[12]) == (8, 0), "not an 8-bit, non-interlaced PNG"
            assert chunk[9] in (2, 6), "not an RGB(A) PNG"
            bpp = 3 if chunk[9] == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
    raw, stride = zlib.decompress(bytes(idat)), width * bpp
    prev = bytearray(stride)
    pixels: list[bytes] = []
    for y in range(height):
        start = y * (stride + 1)
        kind_, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind_ == 2:  # undo the row filter (PNG spec, section 9); "up", the common one, in one pass
            line = bytearray((x + p) & 255 for x, p in zip(line, prev, strict=True))
        elif kind_ != 0:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                if kind_ == 1:
                    line[i] = (line[i] + a) & 255
                elif kind_ == 3:
                    line[i] = (line[i] + (a + b) // 2) & 255
                else:
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        pixels.extend(bytes(line[i : i + bpp]) for i in range(0, stride, bpp))
        prev = line
    return width, height, pixels
