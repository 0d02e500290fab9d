"""Two-phase authorizations (the TigerBeetle pending → posted | voided | expired model).

``authorize`` reserves the spend's USD value on every covering budget at once (``pending``);
``capture`` posts the final amount, which may be lower than authorized (never higher); ``void``
and expiry release the reservation. Each transition happens at most once: the store guards every
one on the current state. Denied requests are recorded too (state ``denied``), so an idempotent
retry of a denied request returns the same denial.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class AuthState(StrEnum):
    PENDING = "pending"  # reserved, may be captured
    PENDING_APPROVAL = "pending_approval"  # reserved, waits for approvers
    DELAYED = "delayed"  # reserved, may be captured after the delay
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"
    DENIED = "denied"
    REJECTED = "rejected"


#: States that hold a reservation on the budgets.
RESERVING_STATES = frozenset({AuthState.PENDING, AuthState.PENDING_APPROVAL, AuthState.DELAYED})
FINAL_STATES = frozenset(
    {AuthState.CAPTURED, AuthState.VOIDED, AuthState.EXPIRED, AuthState.DENIED, AuthState.REJECTED}
)


@dataclass(frozen=True, slots=True)
class Authorization:
    """One authorization as stored."""

    id: str
    agent_id: str
    wallet_id: str
    department_id: str | None
    chain: str
    asset_id: str | None
    amount: int
    value_usd_micros: int
    state: AuthState
    tier: str
    created_at: datetime
    expires_at: datetime | None
    idempotency_key: str | None
    request_hash: str
    recipient: str | None
    decision: dict[str, object]
    price_atto: int | None = None
    decimals: int | None = None
    captured_amount: int | None = None
    captured_usd_micros: int | None = None
    finalized_at: datetime | None = None
    tx_hash: str | None = None
    vendor: str = "other"
    release_after: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationLine:
    """The reservation an authorization holds on one balance row."""

    balance_key: str
    amount_micros: int
