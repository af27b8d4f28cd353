"""The gauntlet policy's one domain check: a refund pays the order's amount unless the customer named it."""

from __future__ import annotations

import math
from collections.abc import Mapping

from headway import RunView, ToolCall, checks


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(str(value).replace("$", "").replace(",", ""))
    except ValueError:
        return None


@checks.check(kind="policy_violation", severity="high")
def refund_matches_order(call: ToolCall, view: RunView) -> str | None:
    """`amount` equals the looked-up order's amount, or the customer said that amount (a partial refund).

    Grounding alone accepts any figure some tool showed, so a refund of one order for the price of
    another (both listed) passes it; this ties the amount to the order being refunded.
    """
    order = view.last_output("lookup_order", order_id=call.args.get("order_id"))
    if not isinstance(order, Mapping):
        return None  # no lookup: requires_prior and observed already say so
    amount, price = _number(call.args.get("amount")), _number(order.get("amount"))
    if amount is None or price is None or math.isclose(amount, price, abs_tol=0.005):
        return None
    if view.user_said(call.args.get("amount")):
        return None
    return (
        f"amount={call.args.get('amount')!r} is not the amount of order {call.args.get('order_id')!r} "
        f"({order.get('amount')!r}) and the customer never asked for it; refund the order's amount or ask"
    )
