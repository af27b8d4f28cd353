"""The approval inbox: one web page and a small JSON API where a person decides pending escalations.

`create_app(escalations, traces, token)` builds the ASGI app; `headway serve` runs it with uvicorn.

Security: every /api route needs `Authorization: Bearer <token>` (compared in constant time). The page
at / holds no data: it takes the token from the URL fragment (never sent to a server, nor logged) or
asks for it, keeps it in sessionStorage and calls the API with it, so a cross-site page can neither
read escalations nor decide one. Agents' arguments are untrusted text: the page builds every element
with createElement/textContent, and its CSP allows only its own inline script and style (by hash).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._errors import HeadwayError
from ._escalations import STATUSES, EscalationConflict, EscalationStore, UnknownEscalation
from ._store import TraceStore
from .cli import detail

__all__ = ["MAX_BODY_BYTES", "MIN_TOKEN_CHARS", "create_app"]

MAX_BODY_BYTES = 64 * 1024
MIN_TOKEN_CHARS = 16
_MAX_LIST = 500
_DECISION_KEYS = frozenset({"action", "by", "message", "args", "text"})


def create_app(escalations: EscalationStore, traces: TraceStore | None, token: str) -> Starlette:
    """The inbox over these stores; `traces` (may be None) supplies each run's recent trajectory."""
    if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS:
        raise HeadwayError(f"the inbox token must be at least {MIN_TOKEN_CHARS} characters")

    async def page(request: Request) -> Response:
        return HTMLResponse(_PAGE)

    # Browsers ask for it unprompted; a 404 would be an error in the page's console.
    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    async def list_escalations(request: Request) -> Response:
        q = request.query_params
        status = q.get("status", "pending")
        if status not in (*STATUSES, "all"):
            return _error(400, f"status must be one of {', '.join(STATUSES)} or all")
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            return _error(400, "limit must be a whole number")
        items = await run_in_threadpool(
            escalations.list,
            status=None if status == "all" else status,  # type: ignore[arg-type]  # checked above
            run_id=q.get("run"),
            limit=max(0, min(limit, _MAX_LIST)),
        )
        return JSONResponse({"escalations": [e.to_dict() for e in items]})

    async def show(request: Request) -> Response:
        found = await run_in_threadpool(detail, escalations, traces, request.path_params["id"])
        return _error(404, "no such escalation") if found is None else JSONResponse(found)

    async def decide(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return _error(413, f"the request body is larger than {MAX_BODY_BYTES} bytes")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, absurd nesting
            return _error(400, "the body must be a JSON object")
        if not isinstance(data, dict):
            return _error(400, "the body must be a JSON object")
        if extra := set(data) - _DECISION_KEYS:
            return _error(400, f"unexpected fields: {', '.join(sorted(map(str, extra)))}")
        fields: dict[str, Any] = {k: data.get(k) for k in _DECISION_KEYS}  # types: the store checks them
        try:
            esc = await run_in_threadpool(
                lambda: escalations.decide(
                    request.path_params["id"],
                    fields["action"],
                    by=fields["by"],
                    message=fields["message"],
                    args=fields["args"],
                    text=fields["text"],
                )
            )
        except UnknownEscalation:
            return _error(404, "no such escalation")
        except EscalationConflict as e:  # says by whom and when; the record lets the page show it
            return JSONResponse({"error": str(e), "escalation": e.current.to_dict()}, status_code=409)
        except HeadwayError as e:  # the store validates every field before writing anything
            return _error(400, str(e))
        return JSONResponse({"escalation": esc.to_dict()})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/favicon.ico", no_icon),
            Route("/api/escalations", list_escalations),
            Route("/api/escalations/{id}", show),
            Route("/api/escalations/{id}/decide", decide, methods=["POST"]),
        ],
        middleware=[Middleware(_Guard, token=token)],
    )


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None once it passes MAX_BODY_BYTES (read no further: a huge body costs nothing)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


class _Guard:
    """ASGI middleware: the bearer token on /api, and security headers on every response (404s too)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        if str(scope["path"]).startswith("/api") and not self._authorized(Headers(scope=scope)):
            refused = JSONResponse(
                {"error": "missing or wrong token (Authorization: Bearer <token>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await refused(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        # Compare even when the scheme is wrong, so the timing says nothing about which part failed.
        same = hmac.compare_digest(given.strip().encode("utf-8", "replace"), self._expected)
        return same and scheme.lower() == "bearer"


# ---- the page -----------------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1c1f24; background: #f3f4f6; }
header { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; padding: .8rem 1.5rem;
  background: #1f2937; color: #f9fafb; }
header h1 { font-size: 1.15rem; margin: 0 1rem 0 0; }
main, #login { padding: 1rem 1.5rem; max-width: 72rem; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 .6rem; }
h4 { margin: .8rem 0 .3rem; font-size: .85rem; text-transform: uppercase; color: #4b5563; }
.card { background: #fff; border: 1px solid #d1d5db; border-left: 4px solid #d97706; border-radius: 6px;
  padding: .8rem 1rem; margin-bottom: 1rem; }
.card h3 { margin: 0; font-size: 1.1rem; }
.kind { font-size: .75rem; background: #fef3c7; color: #92400e; border-radius: 3px; padding: 0 .4rem;
  margin-left: .5rem; vertical-align: middle; }
.meta { color: #6b7280; font-size: .85rem; margin: .2rem 0; }
.reason { margin: .5rem 0; }
pre { background: #f9fafb; border: 1px solid #e5e7eb; padding: .5rem; overflow-x: auto; margin: 0;
  white-space: pre-wrap; word-break: break-word; }
ul.findings, ol.steps { margin: 0; padding-left: 1.3rem; }
ol.steps { font: 12.5px/1.5 ui-monospace, monospace; color: #374151; list-style: none; padding-left: 0; }
.sev { font-weight: 600; }
.sev-high, .sev-critical { color: #b91c1c; }
.sev-medium { color: #b45309; }
.actions { display: grid; grid-template-columns: 1fr; gap: .5rem; margin-top: .8rem; }
.row { display: flex; gap: .5rem; align-items: flex-start; }
.row input, .row textarea { flex: 1; font: inherit; padding: .3rem; }
textarea { min-height: 4rem; font-family: ui-monospace, monospace; }
button { font: inherit; padding: .3rem .9rem; border-radius: 4px; border: 1px solid #9ca3af;
  background: #fff; cursor: pointer; white-space: nowrap; }
button[data-action=approve] { background: #15803d; color: #fff; border-color: #15803d; }
button[data-action=reject] { background: #b91c1c; color: #fff; border-color: #b91c1c; }
button:disabled { opacity: .5; cursor: wait; }
.error, .bad { color: #b91c1c; }
#status { font-size: .9rem; }
header .bad { color: #fca5a5; }
header input { font: inherit; padding: .2rem .4rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e5e7eb; vertical-align: top;
  font-size: .9rem; }
td.detail { word-break: break-word; }
.empty { color: #6b7280; }
"""

_SCRIPT = """
"use strict";
const TOKEN_KEY = "headway-inbox-token", BY_KEY = "headway-inbox-by";
const $ = (id) => document.getElementById(id);
const cards = new Map();
let token = null, busy = false;

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : ""; }
function say(msg, bad) { const s = $("status"); s.textContent = msg; s.className = bad ? "bad" : ""; }

function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    let given = m[1];
    try { given = decodeURIComponent(given); } catch (e) { /* not %-encoded: use it as it is */ }
    sessionStorage.setItem(TOKEN_KEY, given);
    history.replaceState(null, "", location.pathname + location.search);  // keep it out of the address bar
  }
  token = sessionStorage.getItem(TOKEN_KEY);
}

function showLogin(msg) {
  sessionStorage.removeItem(TOKEN_KEY);
  token = null;
  $("inbox").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = msg || "";
}

async function api(path, method, body) {
  const init = {method: method || "GET", cache: "no-store", headers: {"Authorization": "Bearer " + token}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) { showLogin("That token was refused."); throw new Error("unauthorized"); }
  return {status: r.status, data: data};
}

function findingsList(findings) {
  if (!findings.length) return el("p", "empty", "none");
  const ul = el("ul", "findings");
  for (const f of findings) {
    const li = el("li");
    li.append(el("span", "sev sev-" + f.severity, f.severity), " " + f.kind + " · " + f.check + ": " + f.message);
    ul.append(li);
  }
  return ul;
}

function stepsList(steps) {
  if (!steps.length) return el("p", "empty", "no recorded steps");
  const ol = el("ol", "steps");
  for (const t of steps) ol.append(el("li", "step", "#" + t.seq + " " + t.type + "  " + t.summary));
  return ol;
}

function actionRow(card, esc, action, label, field) {
  const row = el("div", "row");
  let input = null;
  if (field === "message" || field === "text") {
    input = el("input", field);
    input.placeholder = field === "message" ? "why (told to the agent)" : "the user's answer";
  } else if (field === "args") {
    input = el("textarea", "args");
    input.value = JSON.stringify(esc.args, null, 2);
  }
  if (input) row.append(input);
  const button = el("button", null, label);
  button.type = "button";
  button.dataset.action = action;
  button.addEventListener("click", () => decide(card, esc, action, field, input));
  row.append(button);
  return row;
}

async function buildCard(esc) {
  let steps = [];
  const r = await api("/api/escalations/" + encodeURIComponent(esc.id));
  if (r.status === 200) steps = r.data.trajectory;
  const card = el("article", "card");
  card.dataset.id = esc.id;
  const h = el("h3", "tool", esc.tool);
  h.append(el("span", "kind", esc.kind));
  card.append(h, el("p", "meta", "run " + esc.run_id + " · call " + esc.call_id + " · " + when(esc.created_at)));
  card.append(el("p", "reason", esc.reason));
  if (esc.question) card.append(el("p", "question", "Question: " + esc.question));
  card.append(el("h4", null, "Arguments"), el("pre", "args", JSON.stringify(esc.args, null, 2)));
  card.append(el("h4", null, "Findings"), findingsList(esc.findings));
  card.append(el("h4", null, "Recent steps"), stepsList(steps));
  const actions = el("div", "actions");
  actions.append(
    actionRow(card, esc, "approve", "Approve"),
    actionRow(card, esc, "reject", "Reject", "message"),
    actionRow(card, esc, "edit", "Approve edited", "args"),
    actionRow(card, esc, "answer", "Answer", "text"),
  );
  card.append(actions, el("p", "error"));
  return card;
}

async function decide(card, esc, action, field, input) {
  const by = $("by").value.trim();
  const error = card.querySelector(".error");
  if (!by) { error.textContent = "Enter your name (top right) first."; $("by").focus(); return; }
  localStorage.setItem(BY_KEY, by);
  const body = {action: action, by: by};
  if (field === "args") {
    try { body.args = JSON.parse(input.value); } catch (e) { error.textContent = "The arguments are not valid JSON."; return; }
  } else if (field) {
    body[field] = input.value;
  }
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  try {
    const r = await api("/api/escalations/" + encodeURIComponent(esc.id) + "/decide", "POST", body);
    if (r.status === 200) {
      say(esc.tool + ": " + r.data.escalation.status + " by " + by);
    } else if (r.status === 409) {
      say(r.data.error, true);
    } else {
      error.textContent = (r.data && r.data.error) || ("failed (HTTP " + r.status + ")");
      return;
    }
    await refresh();
  } finally {
    for (const b of card.querySelectorAll("button")) b.disabled = false;
  }
}

function outcome(e) {
  if (e.message) return e.message;
  if (e.text) return e.text;
  if (e.new_args) return JSON.stringify(e.new_args);
  return "";
}

function renderHistory(decided) {
  const body = $("history").tBodies[0];
  body.replaceChildren();
  for (const e of decided) {
    const tr = el("tr");
    tr.dataset.id = e.id;
    tr.append(el("td", null, when(e.decided_at)), el("td", null, e.tool), el("td", "status", e.status),
      el("td", "by", e.decided_by), el("td", "detail", outcome(e)));
    body.append(tr);
  }
  $("history-empty").hidden = decided.length > 0;
}

async function refresh() {
  if (!token) { showLogin(""); return; }
  if (busy) return;
  busy = true;
  try {
    $("login").hidden = true;
    $("inbox").hidden = false;
    const [p, all] = await Promise.all([
      api("/api/escalations?status=pending&limit=200"), api("/api/escalations?status=all&limit=100")]);
    if (p.status !== 200 || all.status !== 200) { say("Could not load the escalations.", true); return; }
    const pending = p.data.escalations;
    const ids = new Set(pending.map((e) => e.id));
    for (const [id, card] of cards) if (!ids.has(id)) { card.remove(); cards.delete(id); }
    const list = $("pending");
    let prev = null;
    for (const esc of pending) {  // newest first; cards already shown keep what was typed into them
      let card = cards.get(esc.id);
      if (!card) { card = await buildCard(esc); cards.set(esc.id, card); }
      const at = prev ? prev.nextSibling : list.firstChild;
      if (at !== card) list.insertBefore(card, at);
      prev = card;
    }
    $("pending-count").textContent = "(" + pending.length + ")";
    $("pending-empty").hidden = pending.length > 0;
    renderHistory(all.data.escalations.filter((e) => e.status !== "pending"));
  } catch (e) {
    if (token) say("Could not reach the inbox: " + e.message, true);
  } finally {
    busy = false;
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  token = sessionStorage.getItem(TOKEN_KEY);
  refresh();
});
$("refresh").addEventListener("click", () => refresh());
$("by").value = localStorage.getItem(BY_KEY) || "";
takeToken();
refresh();
setInterval(() => { if (token && !document.hidden) refresh(); }, 10000);
"""

_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>headway inbox</title>
<style>@STYLE@</style>
</head>
<body>
<header>
  <h1>headway inbox</h1>
  <label>Deciding as <input id="by" autocomplete="name" placeholder="your name"></label>
  <button id="refresh" type="button">Refresh</button>
  <span id="status" role="status"></span>
</header>
<section id="login" hidden>
  <form id="login-form">
    <label>Inbox token <input id="token" type="password" autocomplete="off" required></label>
    <button type="submit">Open</button>
  </form>
  <p id="login-error" class="error"></p>
</section>
<main id="inbox" hidden>
  <h2>Waiting for a decision <span id="pending-count"></span></h2>
  <p id="pending-empty" class="empty" hidden>Nothing is waiting.</p>
  <div id="pending"></div>
  <h2>Decided</h2>
  <p id="history-empty" class="empty" hidden>Nothing decided yet.</p>
  <table id="history">
    <thead><tr><th>decided</th><th>tool</th><th>outcome</th><th>by</th><th>message / answer / new args</th></tr></thead>
    <tbody></tbody>
  </table>
</main>
<script>@SCRIPT@</script>
</body>
</html>
"""


def _sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


_PAGE = _HTML.replace("@STYLE@", _STYLE).replace("@SCRIPT@", _SCRIPT)
# Only this page's own inline script and style may run (by hash); nothing may load from elsewhere, frame
# the page (a hidden "approve" click) or receive a form.
_CSP = (
    f"default-src 'self'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; img-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; object-src 'none'"
)
_SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
