"""``SqlPaymentQueue``: the :class:`~treasurer.service.queue_ports.PaymentQueueStore` in SQL.

It shares the payment store's table and database. **Claims** are one transaction each batch:
the candidates are selected (``FOR UPDATE OF p SKIP LOCKED`` on PostgreSQL, so concurrent
nodes take disjoint rows without waiting on each other; SQLite has one writer at a time) and
each is moved by ``UPDATE … WHERE id = :id AND state = 'queued'``, which is what guarantees
that a payment is claimed once even where the lock is absent. Every claim writes its audit
event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from treasurer.adapters.sql.codec import to_us
from treasurer.adapters.sql.config_store import write_audit
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable

# The payment store's row mapping: one definition of the columns for both adapters.
from treasurer.adapters.sql.payment_store import _COLUMNS, _payment
from treasurer.domain.authorization import RESERVING_STATES
from treasurer.domain.errors import StoreUnavailable
from treasurer.domain.payment import Payment
from treasurer.service.ports import AuditRecord
from treasurer.service.queue_ports import SENDING

T = TypeVar("T")

_P_COLUMNS = ", ".join(f"p.{c}" for c in _COLUMNS)
_RESERVING = "(" + ", ".join(f"'{s.value}'" for s in sorted(RESERVING_STATES)) + ")"
_LOCK = {"postgresql": " FOR UPDATE OF p SKIP LOCKED", "sqlite": ""}
_READY = (
    "SELECT p.id FROM payments p JOIN authorizations a ON a.id = p.authorization_id "
    "WHERE p.state = 'queued' AND a.state = 'pending' "
    "AND (a.expires_us IS NULL OR a.expires_us > :now) "
    "ORDER BY p.created_us, p.id LIMIT :limit"
)
_STALE = (
    "SELECT p.id FROM payments p WHERE p.state = 'created' AND p.claim_token IS NOT NULL "
    "AND p.claim_token <> :sending AND p.tx_id IS NULL AND p.claimed_us < :before "
    "ORDER BY p.claimed_us, p.id LIMIT :limit"
)
_CLAIM = (
    "UPDATE payments SET state = 'created', claimed_us = :now, claim_token = :token, "
    "updated_us = :now WHERE id = :id AND state = 'queued'"
)
_RECLAIM = (
    "UPDATE payments SET claimed_us = :now, claim_token = :token, updated_us = :now "
    "WHERE id = :id AND state = 'created' AND tx_id IS NULL AND claim_token <> :sending "
    "AND claimed_us < :before"
)


class SqlPaymentQueue:
    """Claims and sweeps of queued payments over one shared database."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.dialect = database.dialect

    def _run(self, work: Callable[[Tx], T], *, write: bool = True) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    def _take(
        self,
        select: str,
        update: str,
        params: dict[str, Any],
        kind: str,
        now: datetime,
    ) -> list[Payment]:
        """Select candidates (skip-locked), move each with a guarded update, audit each."""

        def work(tx: Tx) -> list[Payment]:
            ids = [row[0] for row in tx.all(select + _LOCK.get(self.dialect, ""), params)]
            taken = []
            for ident in ids:
                if tx.execute(update, {**params, "id": ident}) != 1:
                    continue  # moved by another writer since the select (no lock on SQLite)
                row = tx.one(f"SELECT {_P_COLUMNS} FROM payments p WHERE p.id = :id", {"id": ident})
                assert row is not None
                payment = _payment(row)
                write_audit(tx, _claim_audit(kind, payment, params["token"]), now)
                taken.append(payment)
            return taken

        return self._run(work)

    def claim_ready(self, limit: int, now: datetime, token: str) -> list[Payment]:
        params = {"now": to_us(now), "limit": limit, "token": token}
        return self._take(_READY, _CLAIM, params, "payment.claimed", now)

    def reclaim_stale(
        self, limit: int, now: datetime, stale_before: datetime, token: str
    ) -> list[Payment]:
        params = {
            "now": to_us(now),
            "before": to_us(stale_before),
            "limit": limit,
            "token": token,
            "sending": SENDING,
        }
        return self._take(_STALE, _RECLAIM, params, "payment.reclaimed", now)

    def mark_sending(self, payment_id: str, token: str, now: datetime) -> bool:
        changed = self._run(
            lambda tx: tx.execute(
                "UPDATE payments SET claim_token = :sending, updated_us = :now "
                "WHERE id = :id AND state = 'created' AND claim_token = :token",
                {"sending": SENDING, "now": to_us(now), "id": payment_id, "token": token},
            )
        )
        return changed == 1

    def settled_queued(self, limit: int) -> list[tuple[Payment, str]]:
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {_P_COLUMNS}, a.state FROM payments p "
                "JOIN authorizations a ON a.id = p.authorization_id "
                f"WHERE p.state = 'queued' AND a.state NOT IN {_RESERVING} "
                "ORDER BY p.created_us, p.id LIMIT :limit",
                {"limit": limit},
            ),
            write=False,
        )
        return [(_payment(row[:-1]), str(row[-1])) for row in rows]

    def unreleased_cancelled(self, limit: int) -> list[Payment]:
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {_P_COLUMNS} FROM payments p "
                "JOIN authorizations a ON a.id = p.authorization_id "
                f"WHERE p.state = 'cancelled' AND a.state IN {_RESERVING} "
                "ORDER BY p.created_us, p.id LIMIT :limit",
                {"limit": limit},
            ),
            write=False,
        )
        return [_payment(row) for row in rows]


def _claim_audit(kind: str, payment: Payment, token: str) -> AuditRecord:
    payload: dict[str, object] = {
        "payment": payment.id,
        "authorization": payment.authorization_id,
        "agent": payment.agent_id,
        "wallet": payment.wallet_id,
        "chain": payment.chain,
        "tier": payment.tier,
        "claim": token,
    }
    return AuditRecord(kind, "system:payments", payment.id, payload)
