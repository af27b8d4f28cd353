"""A small order desk backed by SQLite: users, orders, refunds and tickets.

Side effects (refunds, tickets) are rows in the desk's own database, so tests and crash drills can count
exactly how many happened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

SEED_USERS = [("u1", "alice@example.com", "Alice Ng"), ("u2", "bob@example.com", "Bob Ruiz")]
SEED_ORDERS = [
    ("A1", "u1", "desk lamp", 40.0, "delivered"),
    ("A2", "u1", "office chair", 25.0, "delivered"),
    ("A3", "u1", "standing desk", 250.0, "delivered"),
    ("B1", "u2", "monitor arm", 60.0, "pending"),
]


class ToolError(Exception):
    """A tool failed in a way the agent should see (unknown order, refund not allowed)."""


# Tool descriptions and JSON-schema parameters, shared by the LangGraph and Agents SDK examples.
TOOL_SPECS: dict[str, dict[str, Any]] = {
    "find_user": {
        "description": "Find the customer by email. Returns user_id, name and order ids.",
        "parameters": {"email": {"type": "string"}},
    },
    "list_orders": {
        "description": "List a customer's orders (order_id, item, amount, status).",
        "parameters": {"user_id": {"type": "string"}},
    },
    "lookup_order": {
        "description": "Look up one order by id: item, amount, status and owner.",
        "parameters": {"order_id": {"type": "string"}},
    },
    "refund_order": {
        "description": "Refund an order. Irreversible: only after lookup and the customer's explicit yes.",
        "parameters": {
            "order_id": {"type": "string"},
            "amount": {"type": "number"},
            "reason": {"type": "string"},
        },
    },
    "create_ticket": {
        "description": "Open a support ticket for a human agent.",
        "parameters": {"subject": {"type": "string"}, "body": {"type": "string"}},
    },
}


class SupportDesk:
    """The desk's tools as methods; `call(name, args)` dispatches by tool name.

    `faults` maps a tool name to a function that rewrites its result: how the examples inject a
    silently wrong tool output without touching the agent.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = ":memory:",
        *,
        faults: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
    ) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self.faults = dict(faults or {})
        with self._lock:
            self._db.executescript(
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE IF NOT EXISTS users(user_id TEXT PRIMARY KEY, email TEXT UNIQUE, name TEXT);
                CREATE TABLE IF NOT EXISTS orders(order_id TEXT PRIMARY KEY, user_id TEXT, item TEXT,
                                                  amount REAL, status TEXT);
                CREATE TABLE IF NOT EXISTS refunds(refund_id TEXT PRIMARY KEY, order_id TEXT, amount REAL,
                                                   reason TEXT);
                CREATE TABLE IF NOT EXISTS tickets(ticket_id TEXT PRIMARY KEY, subject TEXT, body TEXT);
                """
            )
            self._db.executemany("INSERT OR IGNORE INTO users VALUES (?,?,?)", SEED_USERS)
            self._db.executemany("INSERT OR IGNORE INTO orders VALUES (?,?,?,?,?)", SEED_ORDERS)

    # ---- tools ------------------------------------------------------------------------------------

    def find_user(self, email: str) -> dict[str, Any]:
        row = self._one("SELECT user_id, email, name FROM users WHERE lower(email) = lower(?)", email.strip())
        if row is None:
            raise ToolError(f"no customer with email {email!r}")
        orders = [
            r[0] for r in self._all("SELECT order_id FROM orders WHERE user_id = ? ORDER BY order_id", row[0])
        ]
        return {"user_id": row[0], "email": row[1], "name": row[2], "orders": orders}

    def list_orders(self, user_id: str) -> dict[str, Any]:
        rows = self._all(
            "SELECT order_id, item, amount, status FROM orders WHERE user_id = ? ORDER BY order_id", user_id
        )
        return {
            "user_id": user_id,
            "orders": [dict(zip(("order_id", "item", "amount", "status"), r, strict=True)) for r in rows],
        }

    def lookup_order(self, order_id: str) -> dict[str, Any]:
        row = self._one(
            "SELECT order_id, user_id, item, amount, status FROM orders WHERE order_id = ?", order_id.strip()
        )
        if row is None:
            raise ToolError(f"order {order_id!r} not found")
        return dict(zip(("order_id", "user_id", "item", "amount", "status"), row, strict=True))

    def refund_order(self, order_id: str, amount: float, reason: str = "") -> dict[str, Any]:
        order = self.lookup_order(order_id)
        if order["status"] == "refunded":
            raise ToolError(f"order {order_id} was already refunded")
        if float(amount) > float(order["amount"]):
            raise ToolError(f"refund {amount} exceeds the order amount {order['amount']}")
        refund_id = "R-" + uuid.uuid4().hex[:8]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO refunds VALUES (?,?,?,?)", (refund_id, order_id, float(amount), reason)
            )
            self._db.execute("UPDATE orders SET status = 'refunded' WHERE order_id = ?", (order_id,))
            self._db.execute("COMMIT")
        return {"refund_id": refund_id, "order_id": order_id, "amount": float(amount), "status": "refunded"}

    def create_ticket(self, subject: str, body: str) -> dict[str, Any]:
        ticket_id = "T-" + uuid.uuid4().hex[:8]
        with self._lock:
            self._db.execute("INSERT INTO tickets VALUES (?,?,?)", (ticket_id, subject, body))
        return {"ticket_id": ticket_id, "subject": subject, "status": "open"}

    # ---- plumbing ---------------------------------------------------------------------------------

    def call(self, name: str, args: Mapping[str, Any]) -> Any:
        """Run a tool by name; a fault registered for it rewrites the (well-formed) result."""
        fn = getattr(self, name, None)
        if name not in TOOL_SPECS or fn is None:
            raise ToolError(f"unknown tool {name!r}")
        result = fn(**args)
        fault = self.faults.get(name)
        return fault(result) if fault is not None else result

    def count(self, table: str) -> int:
        if table not in ("refunds", "tickets"):
            raise ValueError(table)
        row = self._one(f"SELECT count(*) FROM {table}")
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()

    def _one(self, sql: str, *params: Any) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self._db.execute(sql, params).fetchone()
            return row

    def _all(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, params).fetchall())
