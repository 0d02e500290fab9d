"""Conversions between SQL rows and domain values (timestamps, amounts, JSON)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from treasurer.domain.authorization import Authorization, AuthState


def to_us(moment: datetime | None) -> int | None:
    """Aware datetime → integer microseconds since the epoch (exact, no float)."""
    if moment is None:
        return None
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    seconds, micros = divmod(int(value), 1_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micros)


def from_us_required(value: int) -> datetime:
    moment = from_us(value)
    assert moment is not None
    return moment


def amount_param(value: int | None, dialect: str) -> int | str | None:
    """Token amounts: decimal text on SQLite (beyond int64), native NUMERIC on PostgreSQL."""
    if value is None:
        return None
    return str(value) if dialect == "sqlite" else value


def amount_value(value: object) -> int | None:
    if value is None:
        return None
    return int(str(value))


def dumps(data: object) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=True, default=str)


def loads(text: str) -> Any:
    return json.loads(text)


AUTH_COLUMNS = (
    "id, agent_id, wallet_id, department_id, chain, vendor, asset_id, amount, value_usd_micros, "
    "price_atto, decimals, state, tier, recipient, created_us, expires_us, release_after_us, "
    "finalized_us, idempotency_key, request_hash, decision, captured_amount, "
    "captured_usd_micros, tx_hash"
)


def auth_params(auth: Authorization, dialect: str) -> dict[str, Any]:
    return {
        "id": auth.id,
        "agent_id": auth.agent_id,
        "wallet_id": auth.wallet_id,
        "department_id": auth.department_id,
        "chain": auth.chain,
        "vendor": auth.vendor,
        "asset_id": auth.asset_id,
        "amount": amount_param(auth.amount, dialect),
        "value_usd_micros": auth.value_usd_micros,
        "price_atto": amount_param(auth.price_atto, dialect),
        "decimals": auth.decimals,
        "state": auth.state.value,
        "tier": auth.tier,
        "recipient": auth.recipient,
        "created_us": to_us(auth.created_at),
        "expires_us": to_us(auth.expires_at),
        "release_after_us": to_us(auth.release_after),
        "finalized_us": to_us(auth.finalized_at),
        "idempotency_key": auth.idempotency_key,
        "request_hash": auth.request_hash,
        "decision": dumps(auth.decision),
        "captured_amount": amount_param(auth.captured_amount, dialect),
        "captured_usd_micros": auth.captured_usd_micros,
        "tx_hash": auth.tx_hash,
    }


def auth_from_row(row: tuple[Any, ...]) -> Authorization:
    (
        ident,
        agent_id,
        wallet_id,
        department_id,
        chain,
        vendor,
        asset_id,
        amount,
        value_usd_micros,
        price_atto,
        decimals,
        state,
        tier,
        recipient,
        created_us,
        expires_us,
        release_after_us,
        finalized_us,
        idempotency_key,
        request_hash,
        decision,
        captured_amount,
        captured_usd_micros,
        tx_hash,
    ) = row
    return Authorization(
        id=ident,
        agent_id=agent_id,
        wallet_id=wallet_id,
        department_id=department_id,
        chain=chain,
        vendor=vendor,
        asset_id=asset_id,
        amount=int(str(amount)),
        value_usd_micros=int(value_usd_micros),
        price_atto=amount_value(price_atto),
        decimals=decimals,
        state=AuthState(state),
        tier=tier,
        recipient=recipient,
        created_at=from_us_required(created_us),
        expires_at=from_us(expires_us),
        release_after=from_us(release_after_us),
        finalized_at=from_us(finalized_us),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        decision=loads(decision),
        captured_amount=amount_value(captured_amount),
        captured_usd_micros=captured_usd_micros,
        tx_hash=tx_hash,
    )
