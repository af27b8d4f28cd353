"""Clean support-desk tasks: correct trajectories over generated worlds, deterministic for a seed.

A task is a scripted run (headway.testing steps) plus the indices of the steps fault injection rewrites:
who was identified where, which orders were looked up, and for every write its request, proposal, the
customer's yes and, over the approval threshold, the person's approval.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headway.testing import Step, call, end, human, say, user

from .world import Order, World, make_world, money

# (what the customer says happened, the reason the agent records). Two reasons are one word: an agent
# writes `reason="damaged"` as readily as a phrase, and the policy must cope with both.
PROBLEMS = [
    ("arrived broken", "arrived broken"),
    ("arrived with a cracked panel", "damaged"),
    ("stopped working after two days", "defective"),
    ("is the wrong size", "wrong size"),
    ("looks nothing like the photos", "not as described"),
    ("came without the screws", "missing parts"),
    ("arrived scratched", "cosmetic damage"),
    ("was damaged in transit", "damaged in transit"),
    ("never powered on", "dead on arrival"),
]
YES = ["Yes, please.", "Yes, go ahead.", "Sure, do it.", "Yes please, thank you!", "Ok, go ahead."]
APPROVER = "maria@support"


@dataclass(frozen=True)
class Target:
    """One write of a task, with the indices (into `Task.steps`) of the steps around it."""

    call: int
    tool: str
    order: Order | None = None
    request: int = 0  # the customer's message asking for it
    lookup: int | None = None
    proposal: int | None = None
    answer: int | None = None
    approval: int | None = None
    partial: bool = False


@dataclass(frozen=True)
class Task:
    """A correct run of one template (`kind`) over its world; the indices say where its steps are."""

    name: str
    kind: str
    world: World
    steps: tuple[Step, ...]
    identify: int  # the find_user call
    lookups: Mapping[str, int]  # order id -> its lookup_order call
    listed: int | None = None  # the list_orders call, if any
    targets: tuple[Target, ...] = ()  # the writes, in order
    problem: str = "arrived broken"  # what the customer said went wrong
    extra: Mapping[str, Any] = field(default_factory=dict)  # template facts ("part": a partial amount)

    def call_id(self, index: int) -> str:
        return self.steps[index].calls[0].id

    @property
    def refunds(self) -> list[Target]:
        return [t for t in self.targets if t.tool == "refund_order"]


class Script:
    """Builds a task's steps with call ids c1, c2, ... and remembers where things are."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.calls = 0

    def add(self, step: Step) -> int:
        self.steps.append(step)
        return len(self.steps) - 1

    def user(self, text: str) -> int:
        return self.add(user(text))

    def say(self, text: str) -> int:
        return self.add(say(text))

    def call(self, tool: str, **args: Any) -> int:
        self.calls += 1
        return self.add(call(tool, f"c{self.calls}", **args))

    def end(self, text: str) -> int:
        return self.add(end(text))

    def refund(
        self, order: Order, reason: str, *, request: int, lookup: int | None, proposal: int, answer: int
    ) -> Target:
        """The full refund of an order, and a person's approval when it is over the threshold."""
        i = self.call("refund_order", order_id=order.order_id, amount=order.amount, reason=reason)
        approval = None
        if order.over_threshold:
            approval = self.add(human(self.steps[i].calls[0].id, "approve", by=APPROVER))
        return Target(i, "refund_order", order, request, lookup, proposal, answer, approval)


def proposal_text(rng: random.Random, o: Order, amount: float | None = None) -> str:
    m, full = money(o.amount if amount is None else amount), money(o.amount)
    return rng.choice(
        [
            f"Order {o.order_id} ({o.item}, {full}) is eligible. Shall I refund {m} for order {o.order_id}?",
            f"I found order {o.order_id}: {o.item}, {full}, delivered. Would you like me to refund {m} "
            f"to your card for order {o.order_id}?",
            f"Order {o.order_id} ({o.item}) qualifies. Do you want me to go ahead with the {m} refund "
            f"for {o.order_id}?",
        ]
    )


def refunded_text(rng: random.Random, o: Order, amount: float | None = None) -> str:
    m = money(o.amount if amount is None else amount)
    return rng.choice(
        [
            f"I have refunded {m} for order {o.order_id}. It will show on your card in 3-5 days.",
            f"Done: order {o.order_id} is refunded ({m}); expect it on your card within a week.",
            f"Your refund of {m} for order {o.order_id} has been issued.",
        ]
    )


def _hello(rng: random.Random, w: World) -> str:
    c = w.customer
    return rng.choice([f"Hi, I'm {c.email}.", f"Hello, this is {c.name} ({c.email})."])


# ---- templates ---------------------------------------------------------------------------------------


def status(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(1, 4), eligible=0)
    o = rng.choice(w.orders)
    s = Script()
    s.user(f"{_hello(rng, w)} Where is my order {o.order_id}?")
    ident = s.call("find_user", email=w.customer.email)
    look = s.call("lookup_order", order_id=o.order_id)
    state = {
        "delivered": "was delivered. Is anything wrong with it?",
        "shipped": "has shipped and should arrive in a few days.",
        "pending": "is still being prepared; it has not shipped yet.",
        "refunded": "has already been refunded; the money should be back on your card.",
    }[o.status]
    s.end(f"Order {o.order_id} ({o.item}) {state}")
    return Task(f"status-{i:04d}", "status", w, tuple(s.steps), ident, {o.order_id: look})


def listing(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(2, 5), eligible=0)
    s = Script()
    s.user(f"{_hello(rng, w)} Which orders do I have with you?")
    ident = s.call("find_user", email=w.customer.email)
    listed = s.call("list_orders", user_id=w.customer.user_id)
    shown = "; ".join(f"{o.order_id} ({o.item}, {o.status})" for o in w.orders)
    s.end(f"You have {len(w.orders)} orders: {shown}.")
    return Task(f"listing-{i:04d}", "listing", w, tuple(s.steps), ident, {}, listed)


def refund(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(1, 4), eligible=1)
    o = rng.choice(w.eligible())
    problem, reason = rng.choice(PROBLEMS)
    s = Script()
    req = s.user(
        rng.choice(
            [
                f"{_hello(rng, w)} My order {o.order_id} {problem}. Can I get a refund?",
                f"{_hello(rng, w)} Order {o.order_id} {problem}; please refund it.",
            ]
        )
    )
    ident = s.call("find_user", email=w.customer.email)
    look = s.call("lookup_order", order_id=o.order_id)
    prop = s.say(proposal_text(rng, o))
    yes = s.user(rng.choice(YES))
    t = s.refund(o, reason, request=req, lookup=look, proposal=prop, answer=yes)
    s.end(refunded_text(rng, o))
    return Task(
        f"refund-{i:04d}", "refund", w, tuple(s.steps), ident, {o.order_id: look}, None, (t,), problem
    )


def partial(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(1, 3), eligible=1)
    o = rng.choice(w.eligible())
    part = float(max(5, min(100, int(o.amount * rng.uniform(0.2, 0.6)))))
    problem, reason = rng.choice(PROBLEMS)
    s = Script()
    req = s.user(
        f"{_hello(rng, w)} Order {o.order_id} {problem}. I'll keep it if you refund {money(part)} of it."
    )
    ident = s.call("find_user", email=w.customer.email)
    look = s.call("lookup_order", order_id=o.order_id)
    prop = s.say(proposal_text(rng, o, part))
    yes = s.user(rng.choice(YES))
    ref = s.call("refund_order", order_id=o.order_id, amount=part, reason=f"partial refund, {reason}")
    t = Target(ref, "refund_order", o, req, look, prop, yes, None, partial=True)
    s.end(refunded_text(rng, o, part))
    steps = tuple(s.steps)
    return Task(
        f"partial-{i:04d}",
        "partial",
        w,
        steps,
        ident,
        {o.order_id: look},
        None,
        (t,),
        problem,
        {"part": part},
    )


def item_named(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(2, 4), eligible=1)
    o = rng.choice(w.eligible())
    problem, reason = rng.choice(PROBLEMS)
    s = Script()
    req = s.user(f"{_hello(rng, w)} The {o.item} I ordered {problem}; can I get a refund?")
    ident = s.call("find_user", email=w.customer.email)
    listed = s.call("list_orders", user_id=w.customer.user_id)
    look = s.call("lookup_order", order_id=o.order_id)
    prop = s.say(proposal_text(rng, o))
    yes = s.user(rng.choice(YES))
    t = s.refund(o, reason, request=req, lookup=look, proposal=prop, answer=yes)
    s.end(refunded_text(rng, o))
    steps = tuple(s.steps)
    return Task(f"item-{i:04d}", "item_named", w, steps, ident, {o.order_id: look}, listed, (t,), problem)


def _ticket(s: Script, w: World, o: Order, problem: str, request: int, lookup: int) -> Target:
    c = w.customer
    i = s.call(
        "create_ticket",
        subject=f"Order {o.order_id}: {problem}",
        body=f"{c.name} ({c.email}) reports that the {o.item} in order {o.order_id} {problem}.",
    )
    return Target(i, "create_ticket", o, request, lookup)


def ticket(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(1, 3), eligible=0)
    o = rng.choice(w.orders)
    problem = rng.choice(PROBLEMS)[0]
    s = Script()
    req = s.user(f"{_hello(rng, w)} Order {o.order_id} {problem}. Can someone look into it?")
    ident = s.call("find_user", email=w.customer.email)
    look = s.call("lookup_order", order_id=o.order_id)
    t = _ticket(s, w, o, problem, req, look)
    s.end(
        rng.choice(
            [
                f"I have created a ticket for order {o.order_id}; a colleague will contact you within a day.",
                f"I've opened a support ticket about order {o.order_id}. Someone will be in touch soon.",
            ]
        )
    )
    return Task(
        f"ticket-{i:04d}", "ticket", w, tuple(s.steps), ident, {o.order_id: look}, None, (t,), problem
    )


def multi_refund(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(2, 4), eligible=2)
    a, b = rng.sample(w.eligible(), 2)
    problem, reason = rng.choice(PROBLEMS)
    s = Script()
    req = s.user(f"{_hello(rng, w)} Orders {a.order_id} and {b.order_id} both {problem}. Please refund both.")
    ident = s.call("find_user", email=w.customer.email)
    la = s.call("lookup_order", order_id=a.order_id)
    lb = s.call("lookup_order", order_id=b.order_id)
    prop = s.say(
        f"Order {a.order_id} ({a.item}, {money(a.amount)}) and order {b.order_id} ({b.item}, "
        f"{money(b.amount)}) are both eligible. Shall I refund {money(a.amount)} for order {a.order_id} and "
        f"{money(b.amount)} for order {b.order_id}?"
    )
    yes = s.user(rng.choice(YES))
    ta = s.refund(a, reason, request=req, lookup=la, proposal=prop, answer=yes)
    tb = s.refund(b, reason, request=req, lookup=lb, proposal=prop, answer=yes)
    s.end(
        f"I have refunded {money(a.amount)} for order {a.order_id} and {money(b.amount)} for order {b.order_id}."
    )
    lookups = {a.order_id: la, b.order_id: lb}
    return Task(f"multi-{i:04d}", "multi_refund", w, tuple(s.steps), ident, lookups, None, (ta, tb), problem)


def ticket_then_refund(rng: random.Random, i: int) -> Task:
    w = make_world(rng, i, rng.randint(2, 4), eligible=1)
    b = rng.choice(w.eligible())
    a = rng.choice([o for o in w.orders if o != b])
    (pa, _), (pb, reason) = rng.sample(PROBLEMS, 2)
    s = Script()
    req = s.user(
        f"{_hello(rng, w)} Order {a.order_id} {pa}, please open a ticket for that. And order {b.order_id} "
        f"{pb}; I'd like a refund for that one."
    )
    ident = s.call("find_user", email=w.customer.email)
    la = s.call("lookup_order", order_id=a.order_id)
    ta = _ticket(s, w, a, pa, req, la)
    lb = s.call("lookup_order", order_id=b.order_id)
    prop = s.say(f"I have opened a ticket for order {a.order_id}. {proposal_text(rng, b)}")
    yes = s.user(rng.choice(YES))
    tb = s.refund(b, reason, request=req, lookup=lb, proposal=prop, answer=yes)
    s.end(f"I have refunded {money(b.amount)} for order {b.order_id}; the ticket for {a.order_id} is open.")
    lookups = {a.order_id: la, b.order_id: lb}
    return Task(
        f"ticket-refund-{i:04d}", "ticket_then_refund", w, tuple(s.steps), ident, lookups, None, (ta, tb), pb
    )


def audit(rng: random.Random, i: int) -> Task:
    """A long task: the customer asks for every order to be checked, then a refund of one of them."""
    w = make_world(rng, i, rng.randint(5, 8), eligible=1)
    o = rng.choice(w.eligible())
    problem, reason = rng.choice(PROBLEMS)
    s = Script()
    req = s.user(
        f"{_hello(rng, w)} Could you check on all my orders? The {o.item} {problem} and I'd like a refund for it."
    )
    ident = s.call("find_user", email=w.customer.email)
    listed = s.call("list_orders", user_id=w.customer.user_id)
    lookups = {x.order_id: s.call("lookup_order", order_id=x.order_id) for x in w.orders}
    prop = s.say(proposal_text(rng, o))
    yes = s.user(rng.choice(YES))
    t = s.refund(o, reason, request=req, lookup=lookups[o.order_id], proposal=prop, answer=yes)
    s.end(refunded_text(rng, o))
    steps = tuple(s.steps)
    return Task(f"audit-{i:04d}", "audit", w, steps, ident, lookups, listed, (t,), problem)


Template = Callable[[random.Random, int], Task]
# How often each kind of task appears: refunds dominate a support desk's writes; long audits are rare.
MIX: tuple[tuple[Template, int], ...] = (
    (status, 14),
    (listing, 6),
    (refund, 28),
    (partial, 8),
    (item_named, 10),
    (ticket, 10),
    (multi_refund, 10),
    (ticket_then_refund, 8),
    (audit, 6),
)


def generate(seed: int, n: int) -> list[Task]:
    """`n` clean tasks; task i depends only on (seed, i), so a prefix of a longer list is the same tasks."""
    templates = [t for t, _ in MIX]
    weights = [w for _, w in MIX]
    out = []
    for i in range(n):
        rng = random.Random(f"{seed}:{i}")
        out.append(rng.choices(templates, weights)[0](rng, i))
    return out
