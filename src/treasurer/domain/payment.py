"""Custodial payments: one transfer Treasurer signs, from request to receipt.

A payment wraps an authorization (the budget side, see :mod:`.authorization`) with the chain
side: the transaction, its fee and its outcome. States move one way only::

    created ──▶ broadcast ──▶ confirmed
       │            └──────▶ failed      (reverted or dropped: the authorization is voided)
       ├──▶ denied                        (the decision said no; nothing was reserved)
       ├──▶ queued                        (delay/approval tier: reserved, executed later)
       └──▶ failed                        (frozen before signing, fee above the caller's cap,
                                           the node refused the transaction)
    queued ──▶ created                    (claimed by the queue executor once approved or
       │                                   its delay has passed; then as above)
       ├──▶ cancelled                     (by its agent, a finance key, an admin, or a
       │                                   decommission: the reservation is released)
       └──▶ failed                        (rejected, expired or voided while it waited)

Every transition is written with a guard on the state it leaves (``UPDATE … WHERE state =
:expected``), so racing confirmers, retries and restarted processes apply each one exactly once.
Amounts are base units (the transfer's asset for ``amount``, the chain's native coin for fees);
USD is integer micro-dollars.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PaymentState(StrEnum):
    CREATED = "created"  # recorded; deciding, or decided and about to sign
    QUEUED = "queued"  # delay/approval tier: reserved, waits to be executed
    BROADCAST = "broadcast"  # signed and handed to the chain; waits for its receipt
    CONFIRMED = "confirmed"  # mined successfully; the authorization is captured
    FAILED = "failed"  # never sent, or reverted/dropped; the authorization is voided
    DENIED = "denied"  # the decision denied it
    CANCELLED = "cancelled"  # cancelled while queued; the authorization is voided


#: States the confirmer still has work on (``created`` only when a transaction id is known).
UNFINISHED_STATES = frozenset({PaymentState.CREATED, PaymentState.BROADCAST})
FINAL_STATES = frozenset(
    {PaymentState.CONFIRMED, PaymentState.FAILED, PaymentState.DENIED, PaymentState.CANCELLED}
)

#: Allowed transitions; anything else is a bug in the caller.
TRANSITIONS: dict[PaymentState, frozenset[PaymentState]] = {
    PaymentState.CREATED: frozenset(
        {PaymentState.QUEUED, PaymentState.BROADCAST, PaymentState.FAILED, PaymentState.DENIED}
    ),
    PaymentState.QUEUED: frozenset(
        {PaymentState.CREATED, PaymentState.FAILED, PaymentState.CANCELLED}
    ),
    PaymentState.BROADCAST: frozenset({PaymentState.CONFIRMED, PaymentState.FAILED}),
    PaymentState.CONFIRMED: frozenset(),
    PaymentState.FAILED: frozenset(),
    PaymentState.DENIED: frozenset(),
    PaymentState.CANCELLED: frozenset(),
}


def can_move(current: PaymentState, new: PaymentState) -> bool:
    """Whether ``current → new`` is a transition of the lifecycle above."""
    return new in TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class Payment:
    """One custodial payment as stored.

    ``raw_tx`` is the signed transaction in hex, kept so a restarted process can re-broadcast
    it; ``fee_quote``/``fee_quote_usd_micros`` are what the decision was made with (the most it
    may cost), ``fee_paid``/``fee_paid_usd_micros`` what the receipt says it cost.
    ``request_hash`` fingerprints what the caller asked for, so an idempotent retry with a
    different request is told apart from a true retry.

    ``kind``, ``to``, ``data`` and ``value`` complete the request beyond the decided asset,
    amount and counterparty, so a queued payment is executed later exactly as asked: ``to``
    is the contract of a ``call``, ``data`` its calldata (0x-hex, as given) and ``value`` the
    native base units sent with it; transfers and approves leave them None.
    """

    id: str
    agent_id: str
    wallet_id: str
    chain: str
    asset_id: str
    recipient: str
    amount: int
    state: PaymentState
    request_hash: str
    created_at: datetime
    updated_at: datetime
    authorization_id: str | None = None
    tier: str | None = None
    idempotency_key: str | None = None
    tx_id: str | None = None
    raw_tx: str | None = None
    fee_quote: int | None = None
    fee_quote_usd_micros: int | None = None
    fee_paid: int | None = None
    fee_paid_usd_micros: int | None = None
    broadcast_at: datetime | None = None
    finalized_at: datetime | None = None
    error: str | None = None
    kind: str = "transfer"
    to: str | None = None
    data: str | None = None
    value: int | None = None

    @property
    def done(self) -> bool:
        """Whether nothing more will happen to this payment."""
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class Notification:
    """An event for the outbox, written in the same transaction as the change it announces."""

    kind: str
    payload: dict[str, object]
