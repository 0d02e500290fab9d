"""Which audit events become notifications, and what each one says.

Notifications are derived from the audit log rather than written beside it: every change
already records its event in its own transaction, so following the sealed events loses
nothing and adds no write to the hot path. This module is the whole mapping, pure: a sealed
event in, a :class:`Notice` (type, data, one-line summary) or ``None`` out.

============================  ==================================================================
notification                  audit event it comes from
============================  ==================================================================
``payment.notify``            ``payment.broadcast`` of a notify-tier payment
``payment.failed``            ``payment.failed`` (refused, reverted, dropped, frozen, fee cap)
``payment.delayed``           ``authorization.created`` in state ``delayed``
``approval.requested``        ``authorization.created`` in state ``pending_approval``
``approval.decided``          ``authorization.approved`` / ``authorization.rejected``
``budget.breach``             ``authorization.denied`` with a ``*_budget_exceeded`` or
                              ``*_budget_count_exceeded`` reason
``agent.frozen``              ``freeze.set`` on ``agent:<id>``, or ``agent.status`` → frozen
``agent.decommissioned``      ``agent.status`` → decommissioned
``scope.frozen``              ``freeze.set`` on a wallet, a department or the org
``spend.unauthorized``        ``spend.unauthorized`` (the reconciliation watcher)
``spend.mismatch``            ``spend.mismatch`` (a capture the chain contradicts)
============================  ==================================================================

A spend in the delay or approval tier is announced once, from its authorization, whether it
is a governance-mode spend or a custodial payment; for a payment, ``data.payment`` names it
(the dispatcher finds it by the authorization's idempotency key, which the payment pipeline
derives from its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

#: Every notification type, in the order the docs list them.
EVENT_TYPES = (
    "payment.notify",
    "payment.failed",
    "payment.delayed",
    "approval.requested",
    "approval.decided",
    "budget.breach",
    "agent.frozen",
    "agent.decommissioned",
    "scope.frozen",
    "spend.unauthorized",
    "spend.mismatch",
)


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """A sealed audit event as the dispatcher reads it.

    ``agent``, ``wallet``, ``department`` and ``chain`` are the index terms the sealer derived
    (None where the event concerns none); ``payment`` is the custodial payment behind an
    authorization event, when there is one.
    """

    seq: int
    id: int
    at: datetime
    kind: str
    actor: str
    subject: str
    payload: Mapping[str, object]
    agent: str | None = None
    wallet: str | None = None
    department: str | None = None
    chain: str | None = None
    payment: str | None = None


@dataclass(frozen=True, slots=True)
class Notice:
    """One notification: its type, its data (JSON-ready) and a one-line summary for people."""

    type: str
    data: dict[str, object] = field(default_factory=dict)
    summary: str = ""


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _parties(event: SourceEvent) -> dict[str, object]:
    return {
        "agent": event.agent,
        "department": event.department,
        "wallet": event.wallet,
        "chain": event.chain,
    }


def _spend(event: SourceEvent) -> dict[str, object]:
    """The spend of an authorization event (its decision payload), flattened."""
    body = event.payload
    request = _dict(body.get("request"))
    return {
        "authorization": _text(body.get("authorization")) or event.subject,
        "payment": event.payment,
        **_parties(event),
        "agent": event.agent or _text(request.get("agent")),
        "wallet": event.wallet or _text(request.get("wallet")),
        "asset": _text(request.get("asset")),
        "amount": _text(request.get("amount")),
        "value_usd": _text(body.get("value_usd")),
        "recipient": _text(request.get("recipient")),
        "kind": _text(request.get("kind")),
        "tier": _text(body.get("tier")),
    }


def _reasons(body: Mapping[str, object]) -> list[dict[str, object]]:
    return [
        {"code": r.get("code"), "message": r.get("message"), "policy_id": r.get("policy_id")}
        for r in (_dict(item) for item in _list(body.get("reasons")))
    ]


def is_budget_code(code: object) -> bool:
    """``agent_daily_budget_exceeded``, ``org_monthly_budget_count_exceeded``: a budget said no."""
    return isinstance(code, str) and (
        code.endswith("_budget_exceeded") or code.endswith("_budget_count_exceeded")
    )


def _dollars(text: object) -> str | None:
    """``"1498.5"`` → ``$1,498.50`` (for people; the data keeps the exact string)."""
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return None
    return f"${value:,.2f}" if value.is_finite() else None


def _what(data: Mapping[str, object]) -> str:
    """``250 evm-local:DUSD ($250.00)`` — as much of the amount as is known."""
    amount, asset = data.get("amount"), data.get("asset")
    usd = _dollars(data.get("value_usd")) if data.get("value_usd") else None
    text = " ".join(str(p) for p in (amount, asset) if p)
    if usd:
        text = f"{text} ({usd})" if text else usd
    return text or "an amount"


def _who(data: Mapping[str, object]) -> str:
    agent, wallet = data.get("agent"), data.get("wallet")
    return f"agent {agent or '?'}" + (f" on wallet {wallet}" if wallet else "")


def _ref(data: Mapping[str, object]) -> str:
    payment, authorization = data.get("payment"), data.get("authorization")
    return f"payment {payment}" if payment else f"authorization {authorization}"


# -- one function per source kind -----------------------------------------------------------------
def _created(event: SourceEvent) -> Notice | None:
    state = event.payload.get("state")
    data = _spend(event)
    if state == "delayed":
        data["delay_s"] = event.payload.get("delay_s")
        summary = (
            f"Delayed: {_who(data)} wants to pay {_what(data)}; it runs in "
            f"{data['delay_s']} s unless cancelled ({_ref(data)})"
        )
        return Notice("payment.delayed", data, summary)
    if state == "pending_approval":
        data["approvals"] = _list(event.payload.get("approvals"))
        summary = f"Approval needed: {_who(data)} wants to pay {_what(data)} ({_ref(data)})"
        return Notice("approval.requested", data, summary)
    return None


def _denied(event: SourceEvent) -> Notice | None:
    reasons = _reasons(event.payload)
    breached = [r for r in reasons if is_budget_code(r["code"])]
    if not breached:
        return None
    data = {**_spend(event), "reasons": reasons, "breached": [r["code"] for r in breached]}
    first = breached[0]["message"] or breached[0]["code"]
    summary = f"Budget breach: denied {_what(data)} for {_who(data)}: {first} ({_ref(data)})"
    return Notice("budget.breach", data, summary)


def _decided(event: SourceEvent) -> Notice:
    approved = event.kind == "authorization.approved"
    data: dict[str, object] = {
        "authorization": event.subject,
        "payment": event.payment,
        **_parties(event),
        "decision": "approved" if approved else "rejected",
        "by": event.actor,
        "reason": _text(event.payload.get("reason")),
    }
    verdict = "Approved" if approved else "Rejected"
    summary = f"{verdict} by {event.actor}: {_ref(data)} of {_who(data)}"
    return Notice("approval.decided", data, summary)


def _payment_data(event: SourceEvent) -> dict[str, object]:
    body = event.payload
    keys = ("payment", "authorization", "asset", "amount", "amount_base_units", "value_usd")
    data: dict[str, object] = {key: body.get(key) for key in keys}
    data.update(_parties(event))
    data["agent"] = event.agent or _text(body.get("agent"))
    data["wallet"] = event.wallet or _text(body.get("wallet"))
    data["chain"] = event.chain or _text(body.get("chain"))
    for key in ("recipient", "tier", "tx_id", "kind"):
        data[key] = body.get(key)
    return data


def _payment(event: SourceEvent) -> Notice | None:
    data = _payment_data(event)
    if event.kind == "payment.broadcast" and event.payload.get("tier") == "notify":
        summary = (
            f"Payment sent: {_who(data)} paid {_what(data)} to {data['recipient']} "
            f"(payment {data['payment']}, tx {data['tx_id']})"
        )
        return Notice("payment.notify", data, summary)
    if event.kind == "payment.failed":
        data["error"] = event.payload.get("error")
        summary = (
            f"Payment failed: {_what(data)} from {_who(data)}: {data['error']} "
            f"(payment {data['payment']})"
        )
        return Notice("payment.failed", data, summary)
    return None


def _freeze(event: SourceEvent) -> Notice:
    scope = event.subject
    reason = _text(event.payload.get("reason"))
    data: dict[str, object] = {
        **_parties(event),
        "scope": scope,
        "reason": reason,
        "by": event.actor,
    }
    because = f": {reason}" if reason else ""
    if scope.startswith("agent:"):
        data["agent"] = scope.partition(":")[2]
        return Notice(
            "agent.frozen", data, f"Agent {data['agent']} frozen by {event.actor}{because}"
        )
    return Notice("scope.frozen", data, f"Frozen: {scope} by {event.actor}{because}")


def _status(event: SourceEvent) -> Notice | None:
    status = event.payload.get("status")
    agent = event.subject.partition(":")[2] or event.agent
    data: dict[str, object] = {**_parties(event), "agent": agent, "status": status}
    data["by"] = event.actor
    if status == "frozen":
        return Notice("agent.frozen", data, f"Agent {agent} frozen by {event.actor}")
    if status == "decommissioned":
        return Notice(
            "agent.decommissioned", data, f"Agent {agent} decommissioned by {event.actor}"
        )
    return None


def _unauthorized(event: SourceEvent) -> Notice:
    data: dict[str, object] = {**_parties(event), **event.payload}
    for key in ("agent", "wallet", "chain"):
        data[key] = data.get(key) or getattr(event, key)
    tx = data.get("tx_id") or data.get("tx_hash")
    summary = f"Unauthorized spend: {_what(data)} left wallet {data.get('wallet') or '?'}" + (
        f" (tx {tx})" if tx else ""
    )
    return Notice("spend.unauthorized", data, summary)


def _mismatch(event: SourceEvent) -> Notice:
    """A capture the chain contradicts (amount or recipient differ from what was authorized)."""
    data: dict[str, object] = {**_parties(event), **event.payload}
    for key in ("agent", "wallet", "chain"):
        data[key] = data.get(key) or getattr(event, key)
    tx = data.get("tx_id") or data.get("tx_hash")
    summary = f"Capture contradicted by the chain on wallet {data.get('wallet') or '?'}" + (
        f" (tx {tx})" if tx else ""
    )
    return Notice("spend.mismatch", data, summary)


_BY_KIND: dict[str, Callable[[SourceEvent], Notice | None]] = {
    "authorization.created": _created,
    "authorization.denied": _denied,
    "authorization.approved": _decided,
    "authorization.rejected": _decided,
    "payment.broadcast": _payment,
    "payment.failed": _payment,
    "freeze.set": _freeze,
    "agent.status": _status,
    "spend.unauthorized": _unauthorized,
    "spend.mismatch": _mismatch,
}
#: The audit kinds worth reading at all (the dispatcher filters on them in SQL).
SOURCE_KINDS = frozenset(_BY_KIND)


def notice_of(event: SourceEvent) -> Notice | None:
    """The notification an audit event makes, or None for events nobody is told about."""
    handler = _BY_KIND.get(event.kind)
    return None if handler is None else handler(event)
