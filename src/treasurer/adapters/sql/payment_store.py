"""``SqlPaymentStore``: custodial payments and the notification outbox in SQL.

It shares the :class:`~treasurer.adapters.sql.db.Database` of the main store (one pool, one
SQLite writer). Every transition is an ``UPDATE … WHERE id = :id AND state = :expected``: the
row count says whether this writer made the transition or another one already had, which is
what makes confirmers safe to run repeatedly, concurrently and after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from treasurer.adapters.sql.codec import (
    amount_param,
    amount_value,
    dumps,
    from_us,
    from_us_required,
    loads,
    to_us,
)
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable
from treasurer.domain.errors import StoreUnavailable
from treasurer.domain.payment import UNFINISHED_STATES, Notification, Payment, PaymentState

T = TypeVar("T")

_COLUMNS = (
    "id",
    "authorization_id",
    "agent_id",
    "wallet_id",
    "chain",
    "asset_id",
    "recipient",
    "amount",
    "state",
    "tier",
    "idempotency_key",
    "request_hash",
    "tx_id",
    "raw_tx",
    "fee_quote",
    "fee_quote_usd_micros",
    "fee_paid",
    "fee_paid_usd_micros",
    "created_us",
    "updated_us",
    "broadcast_us",
    "finalized_us",
    "error",
)
#: Columns a transition may change (identity and the request itself never change).
_MUTABLE = (
    "authorization_id",
    "state",
    "tier",
    "tx_id",
    "raw_tx",
    "fee_quote",
    "fee_quote_usd_micros",
    "fee_paid",
    "fee_paid_usd_micros",
    "updated_us",
    "broadcast_us",
    "finalized_us",
    "error",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM payments"
_INSERT = (
    f"INSERT INTO payments ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})"
)
_UPDATE = (
    f"UPDATE payments SET {', '.join(f'{c} = :{c}' for c in _MUTABLE)} "
    "WHERE id = :id AND state = :expected"
)
_INSERT_NOTIFICATION = (
    "INSERT INTO notifications (kind, payload, created_us, delivered_us) "
    "VALUES (:kind, :payload, :created_us, NULL)"
)


def _params(payment: Payment, dialect: str) -> dict[str, Any]:
    return {
        "id": payment.id,
        "authorization_id": payment.authorization_id,
        "agent_id": payment.agent_id,
        "wallet_id": payment.wallet_id,
        "chain": payment.chain,
        "asset_id": payment.asset_id,
        "recipient": payment.recipient,
        "amount": amount_param(payment.amount, dialect),
        "state": payment.state.value,
        "tier": payment.tier,
        "idempotency_key": payment.idempotency_key,
        "request_hash": payment.request_hash,
        "tx_id": payment.tx_id,
        "raw_tx": payment.raw_tx,
        "fee_quote": amount_param(payment.fee_quote, dialect),
        "fee_quote_usd_micros": payment.fee_quote_usd_micros,
        "fee_paid": amount_param(payment.fee_paid, dialect),
        "fee_paid_usd_micros": payment.fee_paid_usd_micros,
        "created_us": to_us(payment.created_at),
        "updated_us": to_us(payment.updated_at),
        "broadcast_us": to_us(payment.broadcast_at),
        "finalized_us": to_us(payment.finalized_at),
        "error": payment.error,
    }


def _payment(row: tuple[Any, ...]) -> Payment:
    values = dict(zip(_COLUMNS, row, strict=True))
    amount = amount_value(values["amount"])
    assert amount is not None
    return Payment(
        id=values["id"],
        authorization_id=values["authorization_id"],
        agent_id=values["agent_id"],
        wallet_id=values["wallet_id"],
        chain=values["chain"],
        asset_id=values["asset_id"],
        recipient=values["recipient"],
        amount=amount,
        state=PaymentState(values["state"]),
        tier=values["tier"],
        idempotency_key=values["idempotency_key"],
        request_hash=values["request_hash"],
        tx_id=values["tx_id"],
        raw_tx=values["raw_tx"],
        fee_quote=amount_value(values["fee_quote"]),
        fee_quote_usd_micros=values["fee_quote_usd_micros"],
        fee_paid=amount_value(values["fee_paid"]),
        fee_paid_usd_micros=values["fee_paid_usd_micros"],
        created_at=from_us_required(values["created_us"]),
        updated_at=from_us_required(values["updated_us"]),
        broadcast_at=from_us(values["broadcast_us"]),
        finalized_at=from_us(values["finalized_us"]),
        error=values["error"],
    )


class SqlPaymentStore:
    """The :class:`~treasurer.service.ports.PaymentStore` over one shared database."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.dialect = database.dialect

    def _run(self, work: Callable[[Tx], T], *, write: bool = True, atomic: bool = True) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write, atomic=atomic)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    def insert(self, payment: Payment) -> tuple[Payment, bool]:
        params = _params(payment, self.dialect)
        try:
            self._run(lambda tx: tx.execute(_INSERT, params), atomic=False)
        except Exception as exc:
            if not self.db.is_unique_violation(exc) or payment.idempotency_key is None:
                raise
            first = self.find_by_idempotency_key(payment.agent_id, payment.idempotency_key)
            if first is None:
                raise
            return first, False
        return payment, True

    def get(self, payment_id: str) -> Payment | None:
        row = self._run(
            lambda tx: tx.one(f"{_SELECT} WHERE id = :id", {"id": payment_id}),
            write=False,
            atomic=False,
        )
        return _payment(row) if row else None

    def find_by_idempotency_key(self, agent_id: str, key: str) -> Payment | None:
        row = self._run(
            lambda tx: tx.one(
                f"{_SELECT} WHERE agent_id = :a AND idempotency_key = :k", {"a": agent_id, "k": key}
            ),
            write=False,
            atomic=False,
        )
        return _payment(row) if row else None

    def update(
        self,
        payment: Payment,
        expected: PaymentState,
        notification: Notification | None = None,
    ) -> bool:
        params = {
            name: value
            for name, value in _params(payment, self.dialect).items()
            if name in _MUTABLE or name == "id"
        }
        params["expected"] = expected.value

        def work(tx: Tx) -> bool:
            if tx.execute(_UPDATE, params) != 1:
                return False
            if notification is not None:
                tx.execute(
                    _INSERT_NOTIFICATION,
                    {
                        "kind": notification.kind,
                        "payload": dumps(notification.payload),
                        "created_us": to_us(payment.updated_at),
                    },
                )
            return True

        return self._run(work, atomic=notification is not None)

    def unfinished(
        self, limit: int, states: frozenset[PaymentState] = UNFINISHED_STATES
    ) -> list[Payment]:
        names = {f"s{i}": state.value for i, state in enumerate(sorted(states))}
        if not names:
            return []
        placeholders = ", ".join(f":{name}" for name in names)
        rows = self._run(
            lambda tx: tx.all(
                f"{_SELECT} WHERE state IN ({placeholders}) ORDER BY created_us, id LIMIT :limit",
                {**names, "limit": limit},
            ),
            write=False,
        )
        return [_payment(row) for row in rows]

    def notifications(self, limit: int, after_id: int = 0) -> list[dict[str, object]]:
        rows = self._run(
            lambda tx: tx.all(
                "SELECT id, kind, payload, created_us, delivered_us FROM notifications "
                "WHERE id > :after ORDER BY id LIMIT :limit",
                {"after": after_id, "limit": limit},
            ),
            write=False,
        )
        return [
            {
                "id": int(r[0]),
                "kind": r[1],
                "payload": loads(r[2]),
                "created_at": from_us(r[3]),
                "delivered_at": from_us(r[4]),
            }
            for r in rows
        ]
