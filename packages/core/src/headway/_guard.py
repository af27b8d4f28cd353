"""The Guard: built once from a Policy, hands out one Run per agent run, and owns the trace store.

Thread-safe and async-safe (no method awaits; each takes a short lock). Ended runs are released at
once; idle runs expire after `idle_timeout` and are restored from the trace store if they come back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._escalations import Escalation, EscalationStore, MemoryEscalations, SQLiteEscalations
from ._policy import Policy
from ._run import Run
from ._store import MemoryStore, SQLiteStore, TraceStore, is_postgres_dsn
from ._types import Decision

if TYPE_CHECKING:
    from .notify import Notifier

DEFAULT_TRACES = ".headway/traces.db"


_log = logging.getLogger("headway")


def _open_store(store: TraceStore | str | os.PathLike[str] | None) -> TraceStore:
    if store is None:
        # HEADWAY_TRACES lets a deployment (or a test session) move the embedded store without code.
        store = os.environ.get("HEADWAY_TRACES", DEFAULT_TRACES)
    if isinstance(store, str | os.PathLike):
        target = str(store)
        if target == ":memory:":
            return MemoryStore()
        if is_postgres_dsn(target):
            from .postgres import PostgresStore  # optional: headway[postgres]

            return PostgresStore(target)
        return SQLiteStore(store)
    return store


def _escalation_store(traces: TraceStore) -> EscalationStore:
    """Escalations live beside the traces: in the same SQLite file, or the same PostgreSQL database."""
    # Through wrappers that forward to a real store (e.g. headway.otel.OTelStore), to that store.
    for _ in range(8):
        inner = getattr(traces, "inner", None)
        if inner is None or isinstance(traces, EscalationStore):
            break
        traces = inner
    if isinstance(traces, EscalationStore):
        return traces
    if isinstance(traces, SQLiteStore) and str(traces.path) != ":memory:":
        return SQLiteEscalations(traces.path)
    return MemoryEscalations()


class Guard:
    """Verification for every run of one agent: `guard.start_run(run_id)` per run, `guard.close()` at exit.

    `store`: a TraceStore, a SQLite path, a `postgresql://` DSN (`headway[postgres]`), ":memory:", or
    None for `.headway/traces.db` (or the HEADWAY_TRACES environment variable).
    `escalations`: where escalations and the exactly-once ledger are kept; by default beside the traces
    (the same SQLite file or PostgreSQL database; in memory for a memory store).
    `notify`: notifiers told about each new escalation (e.g. `headway.notify.WebhookNotifier`).
    `require_stored_decisions`: a resume must carry a decision the escalation store already holds
    (decided in the inbox, the CLI or through `guard.escalations`); otherwise a resume records its own
    decision there, and one that contradicts the stored decision is refused either way.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        store: TraceStore | str | os.PathLike[str] | None = None,
        escalations: EscalationStore | None = None,
        notify: Iterable[Notifier] = (),
        require_stored_decisions: bool = False,
        idle_timeout: float = 3600.0,
    ) -> None:
        if not isinstance(policy, Policy):
            raise TypeError(f"Guard needs a Policy, got {type(policy).__name__}")
        self.policy = policy
        self.store = _open_store(store)
        self.escalations: EscalationStore = (
            escalations if escalations is not None else _escalation_store(self.store)
        )
        self.notifiers: tuple[Notifier, ...] = tuple(notify)
        self.require_stored_decisions = require_stored_decisions
        self.idle_timeout = idle_timeout
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._last_sweep = time.monotonic()

    def start_run(self, run_id: str | None = None, *, metadata: Mapping[str, Any] | None = None) -> Run:
        """The Run for this id: the active one, one restored from the trace store, or a new one.

        Restoring is what lets a LangGraph thread or an Agents SDK RunState resume in another process
        with its trajectory intact. A run that already ended is not reopened: a new Run starts under the
        same id, its events numbered after the old ones (a conversation's next turn, say).
        """
        rid = str(run_id) if run_id else uuid.uuid4().hex
        # Adapters ask for the run at every event: an active run is returned without the lock (a dict
        # read is atomic), so the common case costs one lookup.
        active = self._runs.get(rid)
        if active is not None and not active.ended:
            active.last_active = time.monotonic()
            return active
        with self._lock:
            self._sweep()
            run = self._runs.get(rid)
            if run is not None and not run.ended:
                return run
            if run is not None:
                fresh = self._run(rid, metadata, first_seq=run.last_seq + 1)
                self._runs[rid] = fresh
                return fresh
        # Read the run's history outside the lock: with a networked store (PostgreSQL) that is a round
        # trip, and other runs starting in this process must not queue behind it.
        events = self.store.events(rid)
        with self._lock:
            run = self._runs.get(rid)
            if run is not None and not run.ended:
                return run  # another thread started it meanwhile
            ends = [i for i, e in enumerate(events) if e.type == "end"]
            current = events[ends[-1] + 1 :] if ends else events
            if run is not None:
                fresh = self._run(rid, metadata, first_seq=run.last_seq + 1)
            elif current:
                fresh = self._run(rid, metadata, record_start=False)
                fresh._restore(current)
            else:
                fresh = self._run(rid, metadata, first_seq=(events[-1].seq if events else 0) + 1)
            self._runs[rid] = fresh
            return fresh

    def _run(self, rid: str, metadata: Mapping[str, Any] | None, **kw: Any) -> Run:
        return Run(
            self.policy,
            rid,
            self.store,
            metadata=metadata,
            escalations=self.escalations,
            notify=self._notify if self.notifiers else None,
            require_stored_decisions=self.require_stored_decisions,
            **kw,
        )

    def _notify(self, escalation: Escalation) -> None:
        for notifier in self.notifiers:
            try:
                notifier.notify(escalation, self.escalations)
            except Exception:  # telling people must never break the agent; deliveries record failures
                _log.exception("headway: notifier %r failed on escalation %s", notifier, escalation.id)

    def get_run(self, run_id: str) -> Run | None:
        """The active run with this id, if any (no restore, no creation)."""
        with self._lock:
            run = self._runs.get(run_id)
            return None if run is None or run.ended else run

    def end_run(self, run_id: str, final_answer: str | None = None) -> Decision | None:
        """End a run and release it; returns its final Decision (None if the run is unknown)."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        return None if run is None else run.end(final_answer)

    @property
    def active_runs(self) -> int:
        with self._lock:
            self._sweep(force=True)
            return len(self._runs)

    def flush(self) -> None:
        self.store.flush()

    def close(self) -> None:
        """Deliver pending notifications, then flush and close the trace and escalation stores. The Guard
        must not be used afterwards."""
        for notifier in self.notifiers:
            close = getattr(notifier, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    _log.exception("headway: could not close notifier %r", notifier)
        self.store.close()
        shared: object = self.store  # one PostgreSQL store can be both
        if self.escalations is not shared:
            self.escalations.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sweep(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sweep < min(60.0, self.idle_timeout / 10):
            return
        self._last_sweep = now
        for rid in [
            rid for rid, r in self._runs.items() if r.ended or now - r.last_active > self.idle_timeout
        ]:
            del self._runs[rid]
