"""``SqlReconcileStore``: observed transfers, watch leases and unauthorized-spend postings in SQL.

It shares the :class:`~treasurer.adapters.sql.db.Database` of the main store. The tables come
from migration 9 (``chain_transfers``, ``chain_watch``, the budget overdraft columns).

- **Idempotent recording.** A transfer is inserted with ``ON CONFLICT (network, tx_id, idx) DO
  NOTHING``; when the insert changes no row, the transfer was recorded before and the rest of
  the transaction (authorization, postings, audit) is not written. A later resolution moves a
  row from ``awaiting_capture`` with ``WHERE status = 'awaiting_capture'``, for the same reason.
- **Leases.** One row per network. Claiming is one upsert that only succeeds for the current
  holder or once the lease has run out, so exactly one node watches a network at a time on
  SQLite and PostgreSQL alike; a node that lost its lease cannot move the cursor.
- **Posting past the limit.** An unauthorized spend is posted to every covering balance row
  in the global lock order, like a capture, but without the reservation's ``posted + pending
  + x <= limit`` condition: the money has left. Whatever lands above the limit is added to the
  row's ``overdraft_micros`` (and ``overdraft_count``), which is exactly what the CHECK
  constraints allow beyond the limit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from treasurer.adapters.sql.budget_store import INSERT_AUTH, INSERT_LINE, _expire_rolling
from treasurer.adapters.sql.codec import (
    AUTH_COLUMNS,
    amount_param,
    amount_value,
    auth_from_row,
    auth_params,
    dumps,
    from_us,
    from_us_required,
    loads,
    to_us,
)
from treasurer.adapters.sql.config_store import set_freeze, write_audit
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable
from treasurer.domain.authorization import Authorization
from treasurer.domain.budgets import BudgetClaim
from treasurer.domain.errors import StoreUnavailable
from treasurer.service.chain_ports import ObservedTransfer
from treasurer.service.ports import AuditRecord
from treasurer.service.reconcile_ports import (
    FreezeOrder,
    PaymentLink,
    TransferRecord,
    TransferStatus,
    WatchClaim,
)

T = TypeVar("T")

_COLUMNS = (
    "network",
    "tx_id",
    "idx",
    "wallet_id",
    "agent_id",
    "sender",
    "recipient",
    "token",
    "amount",
    "block",
    "initiator",
    "status",
    "authorization_id",
    "detail",
    "observed_us",
    "resolved_us",
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM chain_transfers"
_INSERT = (
    f"INSERT INTO chain_transfers ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (network, tx_id, idx) DO NOTHING"
)
_RESOLVE = (
    "UPDATE chain_transfers SET status = :status, authorization_id = :authorization_id, "
    "detail = :detail, resolved_us = :resolved_us "
    "WHERE network = :network AND tx_id = :tx_id AND idx = :idx AND status = :expected"
)
_CLAIM = (
    "INSERT INTO chain_watch (network, last_block, lease_owner, lease_until_us, updated_us) "
    "VALUES (:n, NULL, :o, :until, :now) ON CONFLICT (network) DO UPDATE SET "
    "lease_owner = excluded.lease_owner, lease_until_us = excluded.lease_until_us "
    "WHERE chain_watch.lease_owner = excluded.lease_owner "
    "OR chain_watch.lease_until_us IS NULL OR chain_watch.lease_until_us < excluded.updated_us "
    "RETURNING last_block"
)
#: Post ``x`` (a count of one) to a balance row whatever its limit; any excess over the limit
#: becomes the row's overdraft (right-hand sides read the row as it was).
_POST = (
    "INSERT INTO budget_balances (key, policy_id, scope, period, subject, limit_micros, "
    "max_count, posted, pending, posted_count, pending_count, updated_us, overdraft_micros, "
    "overdraft_count) VALUES (:key, :policy_id, :scope, :period, :subject, :limit, "
    ":max_count, :x, 0, 1, 0, :now, :over_x, :over_c) "
    "ON CONFLICT (key) DO UPDATE SET posted = budget_balances.posted + excluded.posted, "
    "posted_count = budget_balances.posted_count + 1, updated_us = excluded.updated_us, "
    "overdraft_micros = CASE WHEN budget_balances.limit_micros IS NOT NULL AND "
    "budget_balances.posted + budget_balances.pending + excluded.posted "
    "- budget_balances.limit_micros > budget_balances.overdraft_micros THEN "
    "budget_balances.posted + budget_balances.pending + excluded.posted "
    "- budget_balances.limit_micros ELSE budget_balances.overdraft_micros END, "
    "overdraft_count = CASE WHEN budget_balances.max_count IS NOT NULL AND "
    "budget_balances.posted_count + budget_balances.pending_count + 1 "
    "- budget_balances.max_count > budget_balances.overdraft_count THEN "
    "budget_balances.posted_count + budget_balances.pending_count + 1 "
    "- budget_balances.max_count ELSE budget_balances.overdraft_count END"
)
_BUCKET = (
    "INSERT INTO budget_buckets (key, bucket, amount, count) VALUES (:k, :b, :u, 1) "
    "ON CONFLICT (key, bucket) DO UPDATE SET amount = budget_buckets.amount + excluded.amount, "
    "count = budget_buckets.count + 1"
)
_CANDIDATE_STATES = "('captured', 'delayed', 'pending', 'pending_approval')"
_LINKING = "('matched', 'mismatch', 'payment')"


def _placeholders(prefix: str, values: Sequence[object]) -> tuple[str, dict[str, object]]:
    params = {f"{prefix}{i}": value for i, value in enumerate(values)}
    return ", ".join(f":{name}" for name in params), params


class SqlReconcileStore:
    """The :class:`~treasurer.service.reconcile_ports.ReconcileStore` over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.dialect

    def _run(self, work: Callable[[Tx], T], *, write: bool = True) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    # -- watching a network ---------------------------------------------------------------
    def claim(self, network: str, owner: str, now: datetime, lease_s: float) -> WatchClaim | None:
        now_us = to_us(now)
        assert now_us is not None
        params = {"n": network, "o": owner, "until": now_us + int(lease_s * 1e6), "now": now_us}
        row = self._run(lambda tx: tx.one(_CLAIM, params))
        if row is None:
            return None
        return WatchClaim(network, None if row[0] is None else int(row[0]))

    def advance(self, network: str, owner: str, cursor: int, now: datetime) -> bool:
        changed = self._run(
            lambda tx: tx.execute(
                "UPDATE chain_watch SET last_block = :c, updated_us = :now "
                "WHERE network = :n AND lease_owner = :o",
                {"c": cursor, "now": to_us(now), "n": network, "o": owner},
            )
        )
        return changed == 1

    def release(self, network: str, owner: str) -> None:
        self._run(
            lambda tx: tx.execute(
                "UPDATE chain_watch SET lease_until_us = NULL "
                "WHERE network = :n AND lease_owner = :o",
                {"n": network, "o": owner},
            )
        )

    # -- transfers ------------------------------------------------------------------------
    def recorded(
        self, network: str, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], TransferStatus]:
        if not keys:
            return {}
        wanted = set(keys)
        ids, params = _placeholders("t", sorted({tx_id for tx_id, _ in keys}))
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT tx_id, idx, status FROM chain_transfers WHERE network = :n "
                f"AND tx_id IN ({ids})",
                {"n": network, **params},
            ),
            write=False,
        )
        found = {(r[0], int(r[1])): TransferStatus(r[2]) for r in rows}
        return {key: status for key, status in found.items() if key in wanted}

    def settle(
        self,
        record: TransferRecord,
        expected: TransferStatus | None,
        audits: Sequence[AuditRecord] = (),
        freeze: FreezeOrder | None = None,
    ) -> bool:
        def work(tx: Tx) -> bool:
            if not self._write_record(tx, record, expected):
                return False
            now = record.resolved_at or record.observed_at
            for audit in audits:
                write_audit(tx, audit, now)
            _freeze(tx, freeze, now)
            return True

        return self._run(work)

    def record_unauthorized(
        self,
        record: TransferRecord,
        expected: TransferStatus | None,
        authorization: Authorization,
        claims: Sequence[BudgetClaim],
        audits: Sequence[AuditRecord],
        now: datetime,
        freeze: FreezeOrder | None = None,
    ) -> bool:
        def work(tx: Tx) -> bool:
            if not self._write_record(tx, record, expected):
                return False
            tx.execute(INSERT_AUTH, auth_params(authorization, self.dialect))
            usd = authorization.captured_usd_micros or 0
            for claim in sorted(claims, key=lambda c: c.lock_order):
                _post(tx, authorization.id, claim, usd, now)
            for audit in audits:
                write_audit(tx, audit, now)
            _freeze(tx, freeze, now)
            return True

        return self._run(work)

    def _write_record(
        self, tx: Tx, record: TransferRecord, expected: TransferStatus | None
    ) -> bool:
        params = self._params(record)
        if expected is None:
            return tx.execute(_INSERT, params) == 1
        return tx.execute(_RESOLVE, {**params, "expected": expected.value}) == 1

    def awaiting(self, network: str, limit: int) -> list[TransferRecord]:
        rows = self._run(
            lambda tx: tx.all(
                f"{_SELECT} WHERE network = :n AND status = 'awaiting_capture' "
                "ORDER BY observed_us, tx_id, idx LIMIT :limit",
                {"n": network, "limit": limit},
            ),
            write=False,
        )
        return [_record(row) for row in rows]

    def transfers(
        self, network: str | None, status: TransferStatus | None, limit: int
    ) -> list[TransferRecord]:
        where: list[str] = []
        params: dict[str, object] = {"limit": limit}
        if network is not None:
            where.append("network = :n")
            params["n"] = network
        if status is not None:
            where.append("status = :s")
            params["s"] = status.value
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._run(
            lambda tx: tx.all(
                f"{_SELECT}{clause} ORDER BY observed_us, network, block, tx_id, idx LIMIT :limit",
                params,
            ),
            write=False,
        )
        return [_record(row) for row in rows]

    # -- what a transfer may match --------------------------------------------------------
    def payment_for_tx(self, network: str, tx_id: str) -> PaymentLink | None:
        row = self._run(
            lambda tx: tx.one(
                "SELECT id, authorization_id FROM payments WHERE chain = :n "
                "AND (tx_id = :tx OR lower(tx_id) = :lower) ORDER BY created_us LIMIT 1",
                {"n": network, "tx": tx_id, "lower": tx_id.lower() if _is_hex(tx_id) else tx_id},
            ),
            write=False,
        )
        return None if row is None else PaymentLink(row[0], row[1])

    def captured_with_tx(self, wallet_id: str, tx_id: str) -> list[Authorization]:
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE wallet_id = :w "
                "AND state = 'captured' AND tier <> 'unauthorized' AND tx_hash IS NOT NULL "
                "AND lower(tx_hash) = :lower ORDER BY created_us, id",
                {"w": wallet_id, "lower": tx_id.lower()},
            ),
            write=False,
        )
        found = [auth_from_row(row) for row in rows]
        return [a for a in found if a.tx_hash is not None and _same_tx(a.tx_hash, tx_id)]

    def candidates(self, wallet_id: str, since: datetime, limit: int) -> list[Authorization]:
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE wallet_id = :w "
                f"AND state IN {_CANDIDATE_STATES} AND tier <> 'unauthorized' "
                "AND created_us >= :since ORDER BY created_us, id LIMIT :limit",
                {"w": wallet_id, "since": to_us(since), "limit": limit},
            ),
            write=False,
        )
        return [auth_from_row(row) for row in rows]

    def linked(self, authorization_ids: Sequence[str]) -> set[str]:
        if not authorization_ids:
            return set()
        ids, params = _placeholders("a", list(authorization_ids))
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT DISTINCT authorization_id FROM chain_transfers "
                f"WHERE authorization_id IN ({ids}) AND status IN {_LINKING}",
                params,
            ),
            write=False,
        )
        return {row[0] for row in rows}

    def _params(self, record: TransferRecord) -> dict[str, Any]:
        transfer = record.transfer
        return {
            "network": record.network,
            "tx_id": transfer.tx_id,
            "idx": transfer.index,
            "wallet_id": record.wallet_id,
            "agent_id": record.agent_id,
            "sender": transfer.sender,
            "recipient": transfer.recipient,
            "token": transfer.token,
            "amount": amount_param(transfer.amount, self.dialect),
            "block": transfer.block,
            "initiator": transfer.initiator,
            "status": record.status.value,
            "authorization_id": record.authorization_id,
            "detail": dumps(record.detail),
            "observed_us": to_us(record.observed_at),
            "resolved_us": to_us(record.resolved_at),
        }


def _post(tx: Tx, authorization_id: str, claim: BudgetClaim, usd: int, now: datetime) -> None:
    """Post ``usd`` (and a count of one) on ``claim``'s row whatever its limit, with the line
    that ties it to the authorization and, for a rolling window, the bucket of ``now``."""
    if claim.is_rolling:
        _expire_rolling(tx, claim, now)
    over_x = 0 if claim.limit_micros is None else max(0, usd - claim.limit_micros)
    over_c = 0 if claim.max_count is None else max(0, 1 - claim.max_count)
    tx.execute(
        _POST,
        {
            "key": claim.key,
            "policy_id": claim.policy_id,
            "scope": str(claim.scope),
            "period": claim.period.key,
            "subject": claim.subject,
            "limit": claim.limit_micros,
            "max_count": claim.max_count,
            "x": usd,
            "now": to_us(now),
            "over_x": over_x,
            "over_c": over_c,
        },
    )
    bucket_s = claim.window.bucket_s if claim.is_rolling else None
    tx.execute(
        INSERT_LINE,
        {"a": authorization_id, "k": claim.key, "x": usd, "r": claim.lock_order[0], "b": bucket_s},
    )
    if bucket_s is not None:
        tx.execute(_BUCKET, {"k": claim.key, "b": int(now.timestamp()) // bucket_s, "u": usd})


def _is_hex(tx_id: str) -> bool:
    return tx_id.startswith(("0x", "0X"))


def _same_tx(stored: str, observed: str) -> bool:
    """EVM hashes compare case-insensitively; Solana signatures (base58) exactly."""
    if _is_hex(stored) and _is_hex(observed):
        return stored.lower() == observed.lower()
    return stored == observed


def _record(row: tuple[Any, ...]) -> TransferRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    amount = amount_value(values["amount"])
    assert amount is not None
    transfer = ObservedTransfer(
        tx_id=values["tx_id"],
        index=int(values["idx"]),
        sender=values["sender"],
        recipient=values["recipient"],
        amount=amount,
        token=values["token"],
        block=int(values["block"]),
        initiator=values["initiator"],
    )
    return TransferRecord(
        network=values["network"],
        transfer=transfer,
        wallet_id=values["wallet_id"],
        agent_id=values["agent_id"],
        status=TransferStatus(values["status"]),
        observed_at=from_us_required(values["observed_us"]),
        authorization_id=values["authorization_id"],
        detail=loads(values["detail"]),
        resolved_at=from_us(values["resolved_us"]),
    )


def _freeze(tx: Tx, order: FreezeOrder | None, now: datetime) -> None:
    """Freeze ``order``'s scope in the verdict's transaction (audited if it changed): a crash
    can no longer leave a breach recorded but its agent still free to spend."""
    if order is not None and set_freeze(tx, order.scope, True, order.reason, order.actor, now):
        write_audit(tx, order.audit, now)
