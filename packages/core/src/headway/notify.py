"""Telling people about escalations: notifiers, and a signed, retried webhook.

A Guard calls `notifier.notify(escalation, store)` for each of its notifiers once an escalation has been
created. `notify` is on the agent's path, so it only queues: a worker thread per notifier delivers, and
records every attempt in the store (`store.deliveries(id)`), so a failed notification is visible there.
A failed delivery never raises and never decides anything: the escalation stays pending.

Receivers check `X-Headway-Signature` with `verify_signature` (HMAC-SHA256 over the timestamp and the
body; a stale timestamp is refused, so a captured request cannot be replayed later). Field names such as
`password` or `card_number` are redacted from the payload, and the webhook secret never appears in a
payload or a delivery record.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import hmac
import json
import logging
import math
import queue
import random
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable
from urllib.parse import quote

import httpx

from ._errors import HeadwayError
from ._escalations import Delivery, Escalation, EscalationStore
from ._redact import DEFAULT_REDACT, REDACTED, Redactor, cleaner, redact

__all__ = ["DEFAULT_REDACT", "Notifier", "WebhookNotifier", "redact", "sign", "verify_signature"]

_log = logging.getLogger("headway.notify")

_MIN_SECRET = 16
_CLOSE_GRACE = 1.0  # seconds close() gives the worker, once stopped, to record what it did not send
_SIGNATURE = "X-Headway-Signature"
_MAX_HEADER = 4096
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_SECONDS = re.compile(r"[0-9]{1,9}")
_PARTIAL_ENTITY = re.compile(r"&[a-z]*$")


@runtime_checkable
class Notifier(Protocol):
    """Tells someone about a new escalation. Must return at once: it runs on the agent's path."""

    def notify(self, escalation: Escalation, store: EscalationStore) -> None: ...


# ---- signatures -------------------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def _mac(secret: str | bytes, t: str, body: bytes) -> str:
    return hmac.new(_key(secret), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, t: int) -> str:
    """The `X-Headway-Signature` value for `body` sent at unix time `t`: "t=<t>,v1=<hex HMAC-SHA256>"."""
    return f"t={int(t)},v1={_mac(secret, str(int(t)), body)}"


def verify_signature(
    secret: str | bytes, body: bytes, header: str, *, tolerance: float = 300, now: float | None = None
) -> bool:
    """True when `header` is a signature of `body` by `secret`, made within `tolerance` seconds of `now`.

    False (never an exception) for a forged or malformed header, a changed body, an empty secret, or a
    timestamp further than `tolerance` from now: a replayed request carries its old timestamp, and the
    timestamp cannot be changed without breaking the signature. Several `v1=` entries are accepted (the
    sender may sign with an old and a new secret while rotating); other schemes are ignored.
    """
    if not secret or not isinstance(header, str) or not isinstance(body, bytes | bytearray):
        return False
    if len(header) > _MAX_HEADER:
        return False
    t: str | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return False
        if name == "t":
            if t is not None:  # two timestamps: which one was signed is ambiguous
                return False
            t = value
        elif name == "v1":
            candidates.append(value)
    if t is None or not candidates or not _TIMESTAMP.fullmatch(t):
        return False
    current = time.time() if now is None else now
    if abs(current - int(t)) > tolerance:
        return False
    expected = _mac(secret, t, bytes(body)).encode()
    # Every candidate is compared (no early exit), in constant time for its length.
    matches = [hmac.compare_digest(expected, c.encode("utf-8", "replace")) for c in candidates]
    return any(matches)


# ---- redaction --------------------------------------------------------------------------------------


def _jsonable(value: Any, clean: Callable[[str], str]) -> Any:
    """JSON-safe and cleaned: every string (and key) passed through `clean`, numbers that spell a removed
    value replaced, non-finite floats and other objects as their (cleaned) repr, never dropped."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)
        text = str(value)
        return value if clean(text) == text else REDACTED
    if isinstance(value, Mapping):
        return {clean(str(k)): _jsonable(v, clean) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, clean) for v in value]
    if isinstance(value, bytes):
        return clean(value.decode("utf-8", "replace"))
    return clean(repr(value))


# ---- payloads ---------------------------------------------------------------------------------------


def _payload(esc: Escalation, redactor: Redactor, secret: str, inbox_url: str | None) -> dict[str, Any]:
    removed: list[str] = []
    args = redactor.apply(esc.args, removed)
    findings = []
    for f in esc.findings:
        d = f.to_dict()
        d["evidence"] = redactor.apply(d["evidence"], removed)
        findings.append(d)
    # A redacted value is removed from the content only: ids and links must stay usable even if a value
    # happens to match one. The secret goes from everything (the last `_jsonable`).
    content = _jsonable(
        {"args": args, "reason": esc.reason, "question": esc.question, "findings": findings},
        cleaner([secret, *removed]),
    )
    inbox = inbox_url.rstrip("/") if inbox_url else None
    payload = {
        "type": "headway.escalation",
        "escalation": {
            "id": esc.id,
            "run_id": esc.run_id,
            "call_id": esc.call_id,
            "tool": esc.tool,
            "kind": esc.kind,
            "args": content["args"],
            "reason": content["reason"],
            "question": content["question"],
            "findings": content["findings"],
            "created_at": esc.created_at,
        },
        "links": {
            "inbox": inbox,
            # The inbox's JSON API (with the inbox token); the page itself has no per-escalation address.
            "escalation": f"{inbox}/api/escalations/{quote(esc.id, safe='')}" if inbox else None,
            "approve_cli": f"headway escalations approve {shlex.quote(esc.id)} --by <your-name>",
        },
    }
    out: dict[str, Any] = _jsonable(payload, cleaner([secret]))
    return out


def _cut(text: object, limit: int) -> str:
    """Slack refuses a message whose texts are longer than its limits."""
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _mrkdwn(text: object, limit: int) -> str:
    """Slack mrkdwn needs &, < and > escaped: they would make links and mentions. Cut after escaping (the
    limit is Slack's, on the escaped text), never inside an entity."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s if len(s) <= limit else _PARTIAL_ENTITY.sub("", s[: limit - 1]) + "…"


def _slack(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (`text` for notifications, `blocks` for the message itself)."""
    esc, links = payload["escalation"], payload["links"]
    wants = "approval" if esc["kind"] == "escalate" else "an answer"
    headline = f"{esc['tool']} needs {wants}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"headway: {headline}", 150)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": "*Reason:* " + _mrkdwn(esc["reason"] or "(none given)", 2800)},
            "fields": [
                {"type": "mrkdwn", "text": f"*Tool:*\n`{_mrkdwn(esc['tool'], 200)}`"},
                {"type": "mrkdwn", "text": f"*Run:*\n`{_mrkdwn(esc['run_id'], 200)}`"},
                {"type": "mrkdwn", "text": f"*Call:*\n`{_mrkdwn(esc['call_id'], 200)}`"},
                {"type": "mrkdwn", "text": f"*Escalation:*\n`{_mrkdwn(esc['id'], 200)}`"},
            ],
        },
    ]
    if esc["question"]:
        blocks.append(_section("*Question:* " + _mrkdwn(esc["question"], 2800)))
    if esc["findings"]:
        shown = esc["findings"][:10]
        lines = [
            f"• *{_mrkdwn(f['kind'], 50)}* ({_mrkdwn(f['severity'], 20)}, {_mrkdwn(f['check'], 80)}): "
            + _mrkdwn(f["message"], 250)
            for f in shown
        ]
        if len(esc["findings"]) > len(shown):
            lines.append(f"… and {len(esc['findings']) - len(shown)} more")
        blocks.append(_section("*Findings:*\n" + "\n".join(lines)))
    args = json.dumps(esc["args"], indent=2, ensure_ascii=False).replace("```", "'''")
    blocks.append(_section("*Arguments:*\n```" + _mrkdwn(args, 2500) + "```"))
    if links["inbox"]:
        button = {"type": "button", "text": {"type": "plain_text", "text": "Open the inbox"}}
        blocks.append({"type": "actions", "elements": [{**button, "url": links["inbox"]}]})
    command = links["approve_cli"]
    if esc["kind"] == "clarify":  # a clarification is answered, not approved
        command = f"headway escalations answer {shlex.quote(esc['id'])} --text '...' --by <your-name>"
    cli = {"type": "mrkdwn", "text": "or run `" + _mrkdwn(command, 300) + "`"}
    blocks.append({"type": "context", "elements": [cli]})
    text = f"headway: {headline}: {esc['reason']}"
    if links["inbox"]:
        text += f" ({links['inbox']})"
    return {"text": _mrkdwn(text, 1000), "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# ---- the webhook ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    escalation: Escalation
    store: EscalationStore
    delivery: str  # the same on every retry, so a receiver can drop a duplicate


class _Attempt(NamedTuple):
    ok: bool
    detail: str
    retry: bool
    retry_after: float | None = None


class WebhookNotifier:
    """POSTs each escalation, signed, to `url`, from a background thread, retrying what may succeed later.

    `format` is "json" (the headway payload) or "slack" (a Slack incoming-webhook message). A delivery is
    attempted up to `1 + retries` times: after a connection error, a timeout, a 5xx or a 429, it waits
    `backoff` doubling up to `max_backoff` seconds (jittered), or the response's Retry-After when that is
    no longer than `max_backoff`; any other 4xx is final. Every attempt is recorded in the store.

    At most `queue_size` notifications wait; one arriving when the queue is full is recorded as not sent.
    `flush(timeout)` waits until the queue is drained, `close()` flushes and stops the thread.
    `inbox_url` adds links to the inbox; `redact` names fields to hide (see `redact`); `headers` are added
    to every request; `transport` replaces httpx's (tests, proxies).
    """

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        format: Literal["json", "slack"] = "json",
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 10.0,
        inbox_url: str | None = None,
        redact: Iterable[str] = (),
        redact_defaults: bool = True,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        queue_size: int = 1000,
    ) -> None:
        # Configuration mistakes raise here, at start-up; nothing raises once notifications flow.
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as e:
            raise HeadwayError(f"webhook url is not a valid URL: {e}") from e
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise HeadwayError("webhook url must be an http:// or https:// URL with a host")
        if len(_key(secret)) < _MIN_SECRET:
            raise HeadwayError(
                f"webhook secret must be at least {_MIN_SECRET} characters (e.g. secrets.token_hex(32))"
            )
        if format not in ("json", "slack"):
            raise HeadwayError(f"format must be 'json' or 'slack', got {format!r}")
        if retries < 0 or backoff < 0 or max_backoff < 0 or timeout <= 0 or queue_size < 1:
            raise HeadwayError("retries, backoff and max_backoff must be >= 0; timeout and queue_size > 0")
        self.format = format
        self.target = _target(parsed)
        self._url = parsed
        self._secret = secret
        self._secret_text = secret if isinstance(secret, str) else secret.decode("utf-8", "replace")
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._timeout = timeout
        self._inbox_url = inbox_url
        self._redactor = Redactor(redact, defaults=redact_defaults)
        self._headers = dict(headers or {})
        # What may carry a credential in a delivery record: the secret, and the URL's password and query.
        self._clean_detail = cleaner([self._secret_text, parsed.password or "", parsed.query.decode()])
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=queue_size)
        self._cond = threading.Condition()
        self._pending = 0  # queued or being delivered
        self._closed = False
        self._stop = threading.Event()  # cuts a backoff wait short on close
        self._thread = threading.Thread(target=self._work, name=f"headway-webhook {self.target}", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.target!r}, format={self.format!r})"  # never the secret

    def __enter__(self) -> WebhookNotifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ---- the agent's side ---------------------------------------------------------------------------

    def notify(self, escalation: Escalation, store: EscalationStore) -> None:
        """Queue a notification and return; a full queue or a closed notifier is recorded, not raised."""
        job = _Job(escalation, store, uuid.uuid4().hex)
        with self._cond:
            if self._closed:
                reason = "not sent: the notifier is closed"
            else:
                try:
                    self._queue.put_nowait(job)
                except queue.Full:
                    reason = f"not sent: {self._queue.maxsize} notifications already waiting"
                else:
                    self._pending += 1
                    return
        self._record(job, 0, False, reason)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued notification is delivered or given up; False if `timeout` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking notifications, deliver those queued (for up to `timeout` seconds), stop the thread.

        What is still waiting after that is recorded as not sent, which takes up to a second more."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout)
        self._stop.set()
        deadline = time.monotonic() + _CLOSE_GRACE
        with contextlib.suppress(queue.Full):  # a full queue: the worker is stuck (a hung store), a daemon
            self._queue.put(None, timeout=_CLOSE_GRACE)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if not self._thread.is_alive():  # otherwise the (daemon) worker still uses the client
            self._client.close()

    # ---- the worker ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                self._deliver(job)
            except Exception:  # the worker must outlive any one notification
                _log.exception("webhook delivery of escalation %s failed", job.escalation.id)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _deliver(self, job: _Job) -> None:
        try:
            body = self._body(job.escalation)
        except Exception as e:
            self._record(job, 1, False, f"not sent: the payload could not be built ({type(e).__name__})")
            return
        attempts = self._retries + 1
        for attempt in range(1, attempts + 1):
            if self._stop.is_set():
                self._record(job, attempt, False, "not sent: the notifier was closed")
                return
            result = self._post(job, body)
            detail = result.detail
            last = result.ok or not result.retry or attempt == attempts
            if not result.ok and last:
                detail += "; not retried" if not result.retry else f"; gave up after {attempt} attempts"
                _log.warning("webhook for escalation %s to %s: %s", job.escalation.id, self.target, detail)
            self._record(job, attempt, result.ok, detail)
            if last:
                return
            self._stop.wait(self._delay(attempt, result.retry_after))

    def _body(self, esc: Escalation) -> bytes:
        payload = _payload(esc, self._redactor, self._secret_text, self._inbox_url)
        message = _slack(payload) if self.format == "slack" else payload
        return json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()

    def _post(self, job: _Job, body: bytes) -> _Attempt:
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "User-Agent": "headway-webhook",
            "X-Headway-Id": job.escalation.id,
            "X-Headway-Delivery": job.delivery,
            # Signed per attempt, so a retry after a long backoff is not refused as stale.
            _SIGNATURE: sign(self._secret, body, int(time.time())),
        }
        try:
            with self._client.stream("POST", self._url, content=body, headers=headers) as r:
                head = _head(r)
                status = r.status_code
                retry_after = _retry_after(r.headers.get("Retry-After"))
                phrase = r.reason_phrase
        except httpx.TimeoutException as e:
            return _Attempt(False, f"timed out after {self._timeout:g}s ({type(e).__name__})", True)
        except (httpx.NetworkError, httpx.RemoteProtocolError) as e:
            return _Attempt(
                False, f"connection failed: {type(e).__name__}: {self._clean_detail(str(e))}", True
            )
        except Exception as e:  # a local mistake (bad proxy, protocol): retrying would fail the same way
            return _Attempt(False, f"request failed: {type(e).__name__}: {self._clean_detail(str(e))}", False)
        detail = f"HTTP {status} {phrase}".rstrip()
        if 200 <= status < 300:
            return _Attempt(True, detail, False)
        if head:
            detail += ": " + self._clean_detail(head)
        if status == 429 or status >= 500:
            return _Attempt(False, detail, True, retry_after)
        return _Attempt(False, detail, False)  # redirects are not followed: the URL is configuration

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after <= self._max_backoff:
            return retry_after  # the server said when; honoured unless longer than we would ever wait
        base = min(self._max_backoff, self._backoff * 2.0 ** min(attempt - 1, 30))
        # Jittered, so notifiers that failed together do not all retry in the same instant.
        return random.uniform(base / 2, base)

    def _record(self, job: _Job, attempt: int, ok: bool, detail: str) -> None:
        delivery = Delivery(
            job.escalation.id, self.target, attempt, ok, self._clean_detail(detail), time.time()
        )
        try:
            job.store.record_delivery(delivery)
        except Exception:
            _log.exception("could not record a webhook delivery for escalation %s", job.escalation.id)


def _target(url: httpx.URL) -> str:
    """The URL as a delivery record shows it: no user, password, query or fragment (they may hold secrets)."""
    if url.host == "hooks.slack.com":
        # A Slack webhook's path is its credential.
        return "https://hooks.slack.com/services/" + REDACTED
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


def _head(response: httpx.Response, limit: int = 200) -> str:
    """The start of the response body, for the delivery record; the rest is not read."""
    data = b""
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return " ".join(data[:limit].decode("utf-8", "replace").split())


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (given as seconds or as an HTTP date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
