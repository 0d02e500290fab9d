"""``SqlPaymentStore``: custodial payments and the notification outbox in SQL.

It shares the :class:`~treasurer.adapters.sql.db.Database` of the main store (one pool, one
SQLite writer). Every transition is an ``UPDATE … WHERE id = :id AND state = :expected``: the
row count says whether this writer made the transition or another one already had, which is
what makes confirmers safe to run repeatedly, concurrently and after a restart.

Every transition that takes effect writes an audit event ``payment.<new state>`` in its own
transaction; the webhook notifier derives ``payment.notify`` and ``payment.failed`` from them
(``docs/webhooks.md``). The older ``notifications`` table is still written for a notify-tier
broadcast, for compatibility, but nothing delivers from it any more: the audit event is the
one source, so a notification is never sent twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
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
from treasurer.adapters.sql.config_store import write_audit
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable
from treasurer.domain.errors import StoreUnavailable
from treasurer.domain.money import format_amount, usd_decimal_text
from treasurer.domain.payment import UNFINISHED_STATES, Notification, Payment, PaymentState
from treasurer.service.ports import AuditRecord

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
    "kind",
    "call_to",
    "call_data",
    "call_value",
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
        "kind": payment.kind,
        "call_to": payment.to,
        "call_data": payment.data,
        "call_value": amount_param(payment.value, dialect),
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
        kind=values["kind"],
        to=values["call_to"],
        data=values["call_data"],
        value=amount_value(values["call_value"]),
    )


def _transition_audit(
    tx: Tx, payment: Payment, expected: PaymentState, notification: Notification | None
) -> AuditRecord:
    """The audit event of one transition (kind ``payment.<new state>``), written in its
    transaction. The amount in token units and its USD value come from the authorization,
    which holds the asset's decimals and the valuation the decision used."""
    decimals = value_usd = None
    if payment.authorization_id is not None:
        row = tx.one(
            "SELECT decimals, value_usd_micros FROM authorizations WHERE id = :id",
            {"id": payment.authorization_id},
        )
        if row is not None:
            decimals, value_usd = row[0], row[1]
    payload: dict[str, object] = {
        "payment": payment.id,
        "authorization": payment.authorization_id,
        "agent": payment.agent_id,
        "wallet": payment.wallet_id,
        "chain": payment.chain,
        "asset": payment.asset_id,
        "recipient": payment.recipient,
        "amount_base_units": str(payment.amount),
        "amount": None if decimals is None else format_amount(payment.amount, int(decimals)),
        "value_usd": None if value_usd is None else usd_decimal_text(int(value_usd)),
        "tier": payment.tier,
        "from": expected.value,
        "state": payment.state.value,
        "tx_id": payment.tx_id,
        "error": payment.error,
    }
    if payment.fee_paid is not None:
        payload["fee_paid_base_units"] = str(payment.fee_paid)
        payload["fee_paid_usd_micros"] = payment.fee_paid_usd_micros
    if notification is not None:
        payload["notice"] = notification.kind
        payload["kind"] = notification.payload.get("kind")
    return AuditRecord(f"payment.{payment.state.value}", "system:payments", payment.id, payload)


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
            write_audit(
                tx, _transition_audit(tx, payment, expected, notification), payment.updated_at
            )
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

        return self._run(work)

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

    def list_page(
        self,
        limit: int,
        *,
        agents: Sequence[str] | None = None,
        wallet: str | None = None,
        state: PaymentState | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[Payment]:
        if agents is not None and not agents:
            return []
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if agents is not None:
            names = {f"a{i}": agent for i, agent in enumerate(sorted(set(agents)))}
            where.append(f"agent_id IN ({', '.join(':' + n for n in names)})")
            params.update(names)
        if wallet is not None:
            where.append("wallet_id = :wallet")
            params["wallet"] = wallet
        if state is not None:
            where.append("state = :state")
            params["state"] = state.value
        if before is not None:
            # Spelled out rather than a row-value comparison: both databases plan it on the
            # (created_us) ordering, and it reads the same on SQLite and PostgreSQL.
            where.append("(created_us < :b_us OR (created_us = :b_us AND id < :b_id))")
            params["b_us"], params["b_id"] = to_us(before[0]), before[1]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"{_SELECT}{clause} ORDER BY created_us DESC, id DESC LIMIT :limit"
        rows = self._run(lambda tx: tx.all(sql, params), write=False)
        return [_payment(row) for row in rows]
