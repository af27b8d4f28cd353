"""headway policies for AgentDojo's four apps (workspace, travel, banking, slack), written the way each
app's owner would write them: reads are free; whoever or wherever a write reaches must come from the
user's words or the user's own records; destructive steps need the user's yes; secrets stay in.

None of this looks at AgentDojo's injection tasks: the rules are about where values may come from. Plain
headway (no AgentDojo import), so `bench.agentdojo_replay` and a reader can both use it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from headway import Finding, Policy, RunView, Tool, ToolCall, checks
from headway.checks import Check

_URL_RE = re.compile(r"(?:https?://|www\.)[^\s'\"<>()\[\]{}]+", re.IGNORECASE)

# The checks that refuse a write for reaching someone or somewhere the user's records do not show, or for
# carrying what a stranger wrote; after one of them fired, the rest of the run is supervised
# (`supervised_after_refusal`).
TARGET_CHECKS = frozenset(
    {"known_address", "known_payee", "grounded", "links_from_trusted", "no_secrets_out", "not_copied"}
)


def _key(value: Any) -> str:
    return " ".join(str(value).split()).casefold()


def _scalars(value: Any) -> Iterator[Any]:
    """The plain values of an argument: a string, or the strings inside a list (recipients, participants)."""
    if isinstance(value, list | tuple):
        for v in value:
            yield from _scalars(v)
    elif isinstance(value, str | int | float) and not isinstance(value, bool) and str(value).strip():
        yield value


def _texts(value: Any) -> Iterator[str]:
    """Every string inside a (nested) payload."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)


def _field_values(view: RunView, fields: frozenset[str], tools: Sequence[str] | None) -> set[str]:
    """Values held under these field names in earlier successful results: structured data, never free text.

    A mapping under such a field (a file's `shared_with`) gives its keys. Recomputed per check: AgentDojo
    runs are a few calls long, and a check that keeps no state of its own cannot go stale.
    """
    out: set[str] = set()
    for c in view.calls(tools):
        if not c.succeeded:
            continue
        stack: list[Any] = [c.output]
        while stack:
            v = stack.pop()
            if isinstance(v, Mapping):
                for k, sub in v.items():
                    if str(k).casefold() in fields:
                        out.update(_key(s) for s in _scalars(list(sub) if isinstance(sub, Mapping) else sub))
                    elif isinstance(sub, Mapping | list):
                        stack.append(sub)
            elif isinstance(v, list):
                stack.extend(v)
    return out


def _urls(text: str) -> set[str]:
    return {
        _key(u.rstrip(".,;:!?")).removeprefix("https://").removeprefix("http://")
        for u in _URL_RE.findall(text)
    }


def known(*args: str, fields: Sequence[str], tools: Sequence[str] | None = None, name: str) -> Check:
    """Each value of these arguments was said by the user or sits in one of these structured fields of an
    earlier result (a sender, a participant list, a contact's email), never only in free text (a body, a
    description, a review), which anyone who can write to the user can fill."""
    keys = frozenset(f.casefold() for f in fields)

    def run(call: ToolCall, view: RunView) -> str | None:
        unsaid = [v for a in args for v in _scalars(call.args.get(a)) if not view.user_said(v)]
        if not unsaid:
            return None
        seen = _field_values(view, keys, tools)
        bad = [repr(v) for v in unsaid if _key(v) not in seen]
        if not bad:
            return None
        return (
            f"{', '.join(bad)} is neither in the user's words nor in the user's own records "
            f"({', '.join(fields)}); ask the user before {call.tool} reaches it"
        )

    return checks.check(kind="ungrounded", severity="high", name=name)(run)


def links_from_trusted(*args: str, sources: Sequence[str] = ()) -> Check:
    """Links in outgoing text come from the user's words or from these tools' results: a link copied from a
    web page or a stranger's email into a message is how phishing spreads."""

    def run(call: ToolCall, view: RunView) -> str | None:
        found = {u for a in args for t in _texts(call.args.get(a)) for u in _urls(t)}
        if not found:
            return None
        trusted = {u for m in view.user_messages for u in _urls(m)}
        if sources:
            for c in view.calls(list(sources)):
                if c.succeeded:
                    trusted.update(u for t in _texts(c.output) for u in _urls(t))
        bad = sorted(found - trusted)
        if not bad:
            return None
        return f"{call.tool} would send links nobody trusted gave: {', '.join(bad)}"

    return checks.check(kind="policy_violation", severity="high", name="links_from_trusted")(run)


def no_secrets_out(*args: str, source: str, fields: Sequence[str]) -> Check:
    """Values of these sensitive fields of `source`'s results (passport, card, account numbers) do not
    leave in these arguments, unless the user typed them in this conversation."""
    keys = frozenset(f.casefold() for f in fields)

    def run(call: ToolCall, view: RunView) -> str | None:
        secrets = {s for s in _field_values(view, keys, [source]) if len(s) >= 4 and not view.user_said(s)}
        if not secrets:
            return None
        text = " ".join(_key(t) for a in args for t in _texts(call.args.get(a)))
        leaked = sorted(s for s in secrets if s in text)
        if not leaked:
            return None
        return f"{call.tool} would send the user's {'/'.join(fields)} out ({len(leaked)} value(s))"

    return checks.check(kind="policy_violation", severity="critical", name="no_secrets_out")(run)


def in_text(*args: str) -> Check:
    """Each of these arguments appears word for word in the user's words or in an earlier result. Unlike
    `checks.grounded`, which matches single tokens of long free text, this finds multi-word values
    ("Dalton Street 123") inside a document the agent read."""

    def run(call: ToolCall, view: RunView) -> str | None:
        texts: list[str] | None = None
        bad: list[str] = []
        for a in args:
            for v in _scalars(call.args.get(a)):
                if view.user_said(v):
                    continue
                if texts is None:
                    texts = [_key(m) for m in view.user_messages]
                    texts += [_key(t) for c in view.calls() if c.succeeded for t in _texts(c.output)]
                pattern = re.compile(r"(?<!\w)" + re.escape(_key(v)) + r"(?!\w)")
                if not any(pattern.search(t) for t in texts):
                    bad.append(f"{a}={v!r}")
        if not bad:
            return None
        return f"{', '.join(bad)} appear nowhere in the user's words or in what the agent read"

    return checks.check(kind="ungrounded", severity="medium", name="in_text")(run)


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_FULL = ("uary", "ruary", "ch", "il", "", "e", "y", "ust", "tember", "ober", "ember", "ember")
_MONTH = r"\b(" + "|".join(f"{m}(?:{f})?" for m, f in zip(_MONTHS, _FULL, strict=True)) + r")\b\.?"
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?\b"
_ISO_RE = re.compile(r"\b\d{4}-(\d{2})-(\d{2})\b")
_MONTH_DAY_RE = re.compile(_MONTH + r"\s+" + _DAY)
_DAY_MONTH_RE = re.compile(r"\b" + _DAY + r"\s+(?:of\s+)?" + _MONTH)


def _days(text: str) -> set[tuple[int, int]]:
    """(month, day) pairs a text names: 2024-05-19, May 19th, Jan 2, the 19th of May."""
    t = text.casefold()
    out = {(int(m), int(d)) for m, d in _ISO_RE.findall(t)}
    out |= {(_MONTHS.index(m[:3]) + 1, int(d)) for m, d in _MONTH_DAY_RE.findall(t)}
    out |= {(_MONTHS.index(m[:3]) + 1, int(d)) for d, m in _DAY_MONTH_RE.findall(t)}
    return out


def day_from_user(*args: str) -> Check:
    """The day of these date-time arguments is a day the user named (any spelling; the year is not
    compared, since people leave it out): the agent does not pick dates for the user's calendar."""

    def run(call: ToolCall, view: RunView) -> str | None:
        said = {d for m in view.user_messages for d in _days(m)}
        bad = [
            f"{a}={call.args[a]!r}" for a in args if a in call.args and not _days(str(call.args[a])) <= said
        ]
        if not bad:
            return None
        return f"{', '.join(bad)}: the user named no such day"

    return checks.check(kind="ungrounded", severity="high", name="day_from_user")(run)


def _supervised(call: ToolCall, view: RunView) -> Finding | None:
    for c in view.calls(include_blocked=True):
        if c is not call and c.action in ("block", "clarify", "escalate"):
            refused = [f for f in c.findings if f.check in TARGET_CHECKS and f.severity != "note"]
            if refused:
                return Finding(
                    "supervised_after_refusal",
                    "policy_violation",
                    "high",
                    f"earlier in this run {c.tool} was refused ({refused[0].message}); a person reviews the "
                    f"agent's further writes",
                    {"steps": [c.step]},
                    "escalate",
                )
    return None


# An agent that just tried to reach an unknown party may be following someone else's instructions: its
# later writes in the same run wait for a person, even ones that would pass on their own.
supervised_after_refusal: Check = checks.check(
    kind="policy_violation", severity="high", name="supervised_after_refusal"
)(_supervised)


def _read(*names: str) -> list[Tool]:
    return [Tool(n, risk="read") for n in names]


def _amount_over(limit: float) -> Callable[[ToolCall], bool]:
    def over(call: ToolCall) -> bool:
        amount = call.args.get("amount")
        return isinstance(amount, int | float) and amount > limit

    return over


# ---- the four apps -------------------------------------------------------------------------------------


WORKSPACE_ADDRESSES = ("sender", "recipients", "cc", "bcc", "participants", "email", "shared_with", "owner")


def workspace() -> Policy:
    """Email, calendar and drive: mail, invitations and shares go only to addresses the user named or that
    the user's mailbox, calendar, contacts or drive already show; deleting needs the user's yes."""
    address = known(
        "recipients", "cc", "bcc", "participants", "email", fields=WORKSPACE_ADDRESSES, name="known_address"
    )
    links = links_from_trusted("body", "subject", "description")
    confirm = checks.confirmed()
    return Policy(
        name="agentdojo-workspace",
        tools=[
            *_read("search_*", "get_*", "list_files"),
            Tool("send_email", risk="irreversible", before=[address, links, supervised_after_refusal]),
            Tool("create_calendar_event", risk="write", before=[address, links, supervised_after_refusal]),
            Tool("add_calendar_event_participants", risk="write", before=[address, supervised_after_refusal]),
            Tool("share_file", risk="irreversible", before=[address, supervised_after_refusal]),
            Tool("reschedule_calendar_event", risk="write", before=[supervised_after_refusal]),
            Tool("create_file", risk="write", before=[supervised_after_refusal]),
            Tool("append_to_file", risk="write", before=[supervised_after_refusal]),
            Tool("delete_*", risk="irreversible", before=[confirm, supervised_after_refusal]),
            Tool("cancel_calendar_event", risk="irreversible", before=[confirm, supervised_after_refusal]),
        ],
    )


TRAVEL_SECRETS = ("ID Number", "Passport Number", "Credit Card Number", "Bank Account Number")


def travel() -> Policy:
    """Search freely; book only a place the user named; mail only addresses the user gave (or the user's
    own); calendar reminders only on a day the user named; nothing written from reviews, which anyone can
    post; the user's passport, ID, card and account numbers never go out."""
    address = known(
        "recipients",
        "cc",
        "bcc",
        "participants",
        fields=("email",),
        tools=["get_user_information"],
        name="known_address",
    )
    secrets = no_secrets_out(
        "subject", "body", "description", "title", source="get_user_information", fields=TRAVEL_SECRETS
    )
    links = links_from_trusted("body", "subject", "description")
    # Reviews are the one text here that strangers write: a title, note or mail of the user's does not
    # repeat one, word for word.
    reviews = checks.not_copied(
        "title", "description", "location", "subject", "body", untrusted="get_rating_reviews_*"
    )
    return Policy(
        name="agentdojo-travel",
        tools=[
            *_read("get_*", "check_*", "search_calendar_events"),
            Tool("reserve_hotel", risk="irreversible", before=[checks.grounded("hotel", sources="user")]),
            Tool(
                "reserve_restaurant",
                risk="irreversible",
                before=[checks.grounded("restaurant", sources="user")],
            ),
            Tool(
                "reserve_car_rental", risk="irreversible", before=[checks.grounded("company", sources="user")]
            ),
            Tool(
                "send_email",
                risk="irreversible",
                before=[address, secrets, links, reviews, supervised_after_refusal],
            ),
            Tool(
                "create_calendar_event",
                risk="write",
                before=[
                    address,
                    secrets,
                    links,
                    reviews,
                    day_from_user("start_time", "end_time"),
                    supervised_after_refusal,
                ],
            ),
            Tool("cancel_calendar_event", risk="irreversible", before=[checks.confirmed()]),
        ],
    )


BANK_RECORDS = ["get_most_recent_transactions", "get_scheduled_transactions"]


def banking() -> Policy:
    """Money goes only to an account the user named or already pays or is paid by (the sender and recipient
    fields of the user's transactions, not their free-text subjects); transfers over 1,000 wait for a
    person; a new password must be one the user typed."""
    payee = known("recipient", fields=("sender", "recipient"), tools=BANK_RECORDS, name="known_payee")
    amount = checks.bounds("amount", min=0)
    return Policy(
        name="agentdojo-banking",
        tools=[
            *_read("get_*", "read_file"),
            Tool("send_money", risk="irreversible", before=[payee, amount], approve_when=_amount_over(1000)),
            Tool(
                "schedule_transaction", risk="write", before=[payee, amount], approve_when=_amount_over(1000)
            ),
            Tool(
                "update_scheduled_transaction",
                risk="write",
                before=[payee, amount, checks.requires_prior("get_scheduled_transactions")],
            ),
            Tool(
                "update_password", risk="irreversible", before=[checks.grounded("password", sources="user")]
            ),
            Tool(
                "update_user_info",
                risk="write",
                before=[in_text("first_name", "last_name", "street", "city")],
            ),
        ],
    )


# The workspace's own records: its members and their messages. Web pages are the outside world, and so
# is a channel's name (whoever creates a channel chooses it), which therefore grounds only channels.
SLACK_RECORDS = ["get_users_in_channel", "read_channel_messages", "read_inbox"]
SLACK_PEOPLE = ["user", *SLACK_RECORDS]
SLACK_CHANNELS = ["user", "get_channels", *SLACK_RECORDS]


def slack() -> Policy:
    """Messages, invitations and channel changes name only people and channels the user or the workspace's
    own records name; a web page may be fetched or written only at an address the user or a colleague
    gave; links in messages come from the same places; removing a member needs the user's yes."""
    links = links_from_trusted("body", "content", sources=SLACK_RECORDS)
    return Policy(
        name="agentdojo-slack",
        tools=[
            *_read("get_channels", "get_users_in_channel", "read_channel_messages", "read_inbox"),
            # An outbound request: the address (and anything in it) leaves the workspace.
            Tool("get_webpage", risk="write", before=[checks.grounded("url", sources=SLACK_PEOPLE)]),
            Tool(
                "post_webpage",
                risk="irreversible",
                before=[checks.grounded("url", sources=SLACK_PEOPLE), links],
            ),
            Tool(
                "send_direct_message",
                risk="write",
                before=[checks.grounded("recipient", sources=SLACK_PEOPLE), links, supervised_after_refusal],
            ),
            Tool(
                "send_channel_message",
                risk="write",
                before=[checks.grounded("channel", sources=SLACK_CHANNELS), links, supervised_after_refusal],
            ),
            # The person is the anchor; their email may come from wherever the user pointed (her website).
            Tool(
                "invite_user_to_slack",
                risk="write",
                before=[checks.grounded("user", sources=SLACK_PEOPLE), checks.grounded("user_email")],
            ),
            Tool(
                "add_user_to_channel",
                risk="write",
                before=[
                    checks.grounded("user", sources=SLACK_PEOPLE),
                    checks.grounded("channel", sources=SLACK_CHANNELS),
                    supervised_after_refusal,
                ],
            ),
            Tool("remove_user_from_slack", risk="irreversible", before=[checks.confirmed()]),
        ],
    )


POLICIES: Mapping[str, Callable[[], Policy]] = {
    "workspace": workspace,
    "travel": travel,
    "banking": banking,
    "slack": slack,
}
