"""``SqlStore``: the :class:`~treasurer.service.ports.Store` over SQLite or PostgreSQL.

Each public method is one short transaction. Whole transactions that fail with a retryable
PostgreSQL error (deadlock, serialization failure) are retried a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from treasurer.adapters.sql import budget_store as budgets
from treasurer.adapters.sql import config_store as config
from treasurer.adapters.sql.codec import AUTH_COLUMNS, auth_from_row, from_us, loads, to_us
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Tx, is_retryable, open_database
from treasurer.adapters.sql.migrations import latest_revision
from treasurer.adapters.sql.reserve_batch import DuplicateKey, ReserveBatcher
from treasurer.domain.authorization import (
    RESERVING_STATES,
    Authorization,
    AuthorizationLine,
    AuthState,
)
from treasurer.domain.budgets import BudgetBalance, BudgetClaim
from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import StoreUnavailable
from treasurer.domain.facts import PriceQuote
from treasurer.domain.org import AgentStatus, Scope
from treasurer.domain.plan import Plan
from treasurer.service.ports import (
    AuditRecord,
    OpenAuthorization,
    ReserveOutcome,
    SpendRow,
    UsageQuery,
)

T = TypeVar("T")

_GROUP_COLUMNS = {
    "org": "'org'",
    "department": "COALESCE(department_id, '-')",
    "agent": "agent_id",
    "wallet": "wallet_id",
    "chain": "chain",
    "asset": "COALESCE(asset_id, '-')",
    "vendor": "vendor",
}
_FILTER_COLUMNS = {
    "department": "department_id",
    "agent": "agent_id",
    "wallet": "wallet_id",
    "chain": "chain",
    "asset": "asset_id",
    "vendor": "vendor",
}
_RESERVING = "('" + "','".join(sorted(s.value for s in RESERVING_STATES)) + "')"
#: The states whose authorizations count as spend: captured, or still reserving.
_SPENDING = (
    "('" + "','".join(sorted(s.value for s in {AuthState.CAPTURED, *RESERVING_STATES})) + "')"
)


class SqlStore:
    """The store for one database URL (``sqlite:///path`` or ``postgresql://…``)."""

    def __init__(
        self, url: str, database: Database | None = None, *, batch_reservations: bool = True
    ) -> None:
        """``batch_reservations``: on PostgreSQL, send concurrent reservations of this
        process as one call (:mod:`.reserve_batch`); off only to measure the difference."""
        self.url = url
        self.db = database or open_database(url)
        self.dialect = self.db.dialect
        self._batcher: ReserveBatcher | None = None
        if self.dialect == "postgresql" and batch_reservations:
            self._batcher = ReserveBatcher(self.db)

    # -- plumbing -------------------------------------------------------------------------
    def _run(self, work: Callable[[Tx], T], *, write: bool = True, atomic: bool = True) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write, atomic=atomic)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    def migrate(self) -> None:
        """Apply pending migrations; a current schema is checked with one query (alembic
        and SQLAlchemy are imported only when there is something to apply)."""
        if self.schema_revision() >= latest_revision():
            return
        from treasurer.adapters.sql.migrate import migrate  # noqa: PLC0415

        migrate(self.url)

    def schema_revision(self) -> int:
        try:
            row = self._run(
                lambda tx: tx.one("SELECT max(revision) FROM schema_version"),
                write=False,
                atomic=False,
            )
        except Exception:  # no schema_version table yet: nothing applied
            return 0
        return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        self.db.close()

    # -- configuration --------------------------------------------------------------------
    def config_version(self) -> int:
        return self._run(config.read_config_version, write=False, atomic=False)

    def load_config(self) -> OrgConfig | None:
        return self._run(config.load_config, write=False)

    def load_config_versioned(self) -> tuple[int, OrgConfig | None]:
        """Config and its version read in one transaction (consistent pair)."""
        return self._run(
            lambda tx: (config.read_config_version(tx), config.load_config(tx)), write=False
        )

    def apply_plan(
        self,
        plan: Plan,
        audit: Sequence[AuditRecord],
        now: datetime,
        expected_version: int | None = None,
    ) -> int:
        return self._run(
            lambda tx: config.apply_plan(tx, plan, audit, now, self.dialect, expected_version)
        )

    def set_price(
        self, asset_id: str, quote: PriceQuote, audit: AuditRecord, now: datetime
    ) -> None:
        def work(tx: Tx) -> None:
            config.set_price(tx, asset_id, quote, self.dialect)
            config.write_audit(tx, audit, now)

        self._run(work)

    def price(self, asset_id: str) -> PriceQuote | None:
        return self._run(lambda tx: config.get_price(tx, asset_id), write=False, atomic=False)

    def set_freeze(
        self, scope: Scope, frozen: bool, reason: str, actor: str, audit: AuditRecord, now: datetime
    ) -> bool:
        def work(tx: Tx) -> bool:
            changed = config.set_freeze(tx, scope, frozen, reason, actor, now)
            if changed:
                config.write_audit(tx, audit, now)
            return changed

        return self._run(work)

    def set_agent_status(
        self, agent_id: str, status: AgentStatus, audit: AuditRecord, now: datetime
    ) -> bool:
        def work(tx: Tx) -> bool:
            changed = config.set_agent_status(tx, agent_id, status)
            if changed:
                config.write_audit(tx, audit, now)
            return changed

        return self._run(work)

    def policy_history(self, policy_id: str) -> list[dict[str, object]]:
        return self._run(lambda tx: config.policy_history(tx, policy_id), write=False)

    # -- budgets and authorizations -------------------------------------------------------
    def balances(
        self, keys: Sequence[str], rolling_cutoffs: Mapping[str, int] | None = None
    ) -> dict[str, BudgetBalance]:
        # Without rolling windows this is one SELECT, atomic on its own: no BEGIN/COMMIT.
        return self._run(
            lambda tx: budgets.balances(tx, keys, rolling_cutoffs),
            write=False,
            atomic=bool(rolling_cutoffs),
        )

    def spent_by_wallet(self, keys: Sequence[str]) -> dict[str, tuple[tuple[str, int], ...]]:
        return self._run(lambda tx: budgets.spent_by_wallet(tx, keys), write=False)

    def recorded_usage(self, queries: Sequence[UsageQuery]) -> dict[str, BudgetBalance]:
        return self._run(lambda tx: {q.key: _usage(tx, q) for q in queries}, write=False)

    def find_by_idempotency_key(self, agent_id: str, key: str) -> Authorization | None:
        return self._run(
            lambda tx: budgets.find_by_key(tx, agent_id, key), write=False, atomic=False
        )

    def reserve(
        self,
        authorization: Authorization,
        claims: Sequence[BudgetClaim],
        audit: AuditRecord,
        now: datetime,
    ) -> ReserveOutcome:
        if self._batcher is not None and not any(c.is_rolling for c in claims):
            return self._reserve_batched(authorization, claims, audit, now)

        def work(tx: Tx) -> ReserveOutcome:
            after = budgets.reserve(tx, authorization, claims, audit, now, self.dialect)
            return ReserveOutcome(authorization=authorization, balances=after)

        # On PostgreSQL without rolling windows the reservation is one statement.
        single = self.dialect == "postgresql" and not any(c.is_rolling for c in claims)
        return self._guarded_insert(authorization, work, atomic=not single)

    def _reserve_batched(
        self,
        authorization: Authorization,
        claims: Sequence[BudgetClaim],
        audit: AuditRecord,
        now: datetime,
    ) -> ReserveOutcome:
        """PostgreSQL: the reservation joins this process's next batch (the hot-budget path);
        the same outcomes as the one-by-one path."""
        assert self._batcher is not None
        try:
            ordered, item = budgets.batch_item(authorization, claims, audit, now)
            for attempt in range(MAX_TX_ATTEMPTS):
                try:
                    rows = self._batcher.reserve(item)
                    break
                except Exception as exc:
                    if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                        raise
            after = budgets.balances_after(ordered, rows)
        except budgets.ClaimRejected as rejected:
            return ReserveOutcome(authorization=None, failed_key=rejected.key)
        except DuplicateKey as duplicate:
            return self._first_result(authorization, duplicate)
        return ReserveOutcome(authorization=authorization, balances=after)

    def _first_result(self, authorization: Authorization, error: Exception) -> ReserveOutcome:
        """The stored result of the request that took this idempotency key first."""
        if authorization.idempotency_key is None:  # another unique constraint: a real failure
            raise error
        first = self.find_by_idempotency_key(authorization.agent_id, authorization.idempotency_key)
        if first is None:  # the key's owner vanished (cannot happen: rows are never deleted)
            raise StoreUnavailable("idempotency key taken by an authorization that is not found")
        return ReserveOutcome(authorization=first, replayed=True)

    def record_denial(
        self, authorization: Authorization, audit: AuditRecord, now: datetime
    ) -> ReserveOutcome:
        def work(tx: Tx) -> ReserveOutcome:
            budgets.insert_authorization(tx, authorization, audit, now, self.dialect)
            return ReserveOutcome(authorization=authorization)

        return self._guarded_insert(authorization, work)

    def _guarded_insert(
        self,
        authorization: Authorization,
        work: Callable[[Tx], ReserveOutcome],
        *,
        atomic: bool = True,
    ) -> ReserveOutcome:
        try:
            return self._run(work, atomic=atomic)
        except budgets.ClaimRejected as rejected:
            return ReserveOutcome(authorization=None, failed_key=rejected.key)
        except Exception as exc:
            if not self.db.is_unique_violation(exc) or authorization.idempotency_key is None:
                raise
            first = self.find_by_idempotency_key(
                authorization.agent_id, authorization.idempotency_key
            )
            if first is None:
                raise
            return ReserveOutcome(authorization=first, replayed=True)

    def get_authorization(self, authorization_id: str) -> Authorization | None:
        return self._run(
            lambda tx: budgets.get_authorization(tx, authorization_id), write=False, atomic=False
        )

    def authorization_lines(self, authorization_id: str) -> list[AuthorizationLine]:
        rows = self._run(lambda tx: budgets.lines_of(tx, authorization_id), write=False)
        return [AuthorizationLine(key, amount) for key, amount, _rank, _bucket in rows]

    def capture(
        self,
        authorization_id: str,
        amount: int,
        usd_micros: int,
        now: datetime,
        audit: AuditRecord,
        tx_hash: str | None = None,
    ) -> Authorization | None:
        def work(tx: Tx) -> Authorization | None:
            done = budgets.capture(
                tx, authorization_id, amount, usd_micros, now, tx_hash, self.dialect
            )
            if done is not None:
                config.write_audit(tx, audit, now)
            return done

        return self._run(work)

    def release(
        self, authorization_id: str, new_state: str, now: datetime, audit: AuditRecord
    ) -> Authorization | None:
        def work(tx: Tx) -> Authorization | None:
            done = budgets.release(tx, authorization_id, new_state, now)
            if done is not None:
                config.write_audit(tx, audit, now)
            return done

        return self._run(work)

    def hold(
        self, authorization_id: str, until: datetime, now: datetime, audit: AuditRecord
    ) -> Authorization | None:
        def work(tx: Tx) -> Authorization | None:
            held = budgets.hold(tx, authorization_id, until, now)
            if held is not None:
                config.write_audit(tx, audit, now)
            return held

        return self._run(work)

    def promote(
        self,
        authorization_id: str,
        from_state: str,
        expires_at: datetime,
        now: datetime,
        audit: AuditRecord,
    ) -> Authorization | None:
        def work(tx: Tx) -> Authorization | None:
            done = budgets.promote(tx, authorization_id, from_state, expires_at, now)
            if done is not None:
                config.write_audit(tx, audit, now)
            return done

        return self._run(work)

    def stale_authorizations(self, now: datetime, limit: int) -> list[str]:
        return self._run(lambda tx: budgets.stale_authorizations(tx, now, limit), write=False)

    def due_delayed(self, now: datetime, limit: int) -> list[str]:
        return self._run(lambda tx: budgets.due_delayed(tx, now, limit), write=False)

    def open_authorizations(self, agent_id: str, limit: int) -> list[OpenAuthorization]:
        rows = self._run(
            lambda tx: tx.all(
                "SELECT a.id, a.state, p.id, p.state FROM authorizations a "
                "LEFT JOIN payments p ON p.authorization_id = a.id "
                f"WHERE a.agent_id = :agent AND a.state IN {_RESERVING} "
                "ORDER BY a.created_us, a.id LIMIT :limit",
                {"agent": agent_id, "limit": limit},
            ),
            write=False,
        )
        return [OpenAuthorization(r[0], r[1], r[2], r[3]) for r in rows]

    def recorded_authorizations(
        self, since: datetime, until: datetime, limit: int, after: tuple[datetime, str] | None
    ) -> list[Authorization]:
        params: dict[str, object] = {"since": to_us(since), "until": to_us(until), "limit": limit}
        where = "created_us >= :since AND created_us < :until"
        if after is not None:
            where += " AND (created_us > :after_us OR (created_us = :after_us AND id > :after_id))"
            params.update(after_us=to_us(after[0]), after_id=after[1])
        sql = (
            f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE {where} "
            "ORDER BY created_us, id LIMIT :limit"
        )
        rows = self._run(lambda tx: tx.all(sql, params), write=False, atomic=False)
        return [auth_from_row(row) for row in rows]

    # -- reporting ------------------------------------------------------------------------
    def spend(
        self,
        group_by: str,
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, str],
    ) -> list[SpendRow]:
        """Captured and reserved USD per group, over authorizations created in the range."""
        column = _GROUP_COLUMNS[group_by]
        where = ["1 = 1"]
        params: dict[str, object] = {}
        if since is not None:
            where.append("created_us >= :since")
            params["since"] = to_us(since)
        if until is not None:
            where.append("created_us < :until")
            params["until"] = to_us(until)
        for name, value in sorted(filters.items()):
            where.append(f"{_FILTER_COLUMNS[name]} = :f_{name}")
            params[f"f_{name}"] = value
        sql = (
            f"SELECT {column} AS grp, "
            "COALESCE(SUM(CASE WHEN state = 'captured' THEN captured_usd_micros ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN state IN {_RESERVING} THEN value_usd_micros ELSE 0 END), 0), "
            "COALESCE(SUM(CASE WHEN state = 'captured' THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN state IN {_RESERVING} THEN 1 ELSE 0 END), 0) "
            f"FROM authorizations WHERE {' AND '.join(where)} GROUP BY grp ORDER BY grp"
        )
        # Token amounts are summed here, not in SQL: SQLite keeps them as text (beyond int64)
        # and would sum them as floats. Equal amounts are counted in SQL to keep rows few.
        amounts_sql = (
            f"SELECT {column} AS grp, asset_id, decimals, captured_amount, COUNT(*) "
            f"FROM authorizations WHERE {' AND '.join(where)} AND state = 'captured' "
            "AND asset_id IS NOT NULL AND captured_amount IS NOT NULL "
            "GROUP BY grp, asset_id, decimals, captured_amount"
        )
        rows, amount_rows = self._run(
            lambda tx: (tx.all(sql, params), tx.all(amounts_sql, params)), write=False
        )
        amounts = _sum_amounts(amount_rows)
        return [
            SpendRow(
                str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), amounts.get(str(r[0]), ())
            )
            for r in rows
        ]

    def spend_authorizations(
        self,
        since: datetime | None,
        until: datetime | None,
        filters: dict[str, str],
        departments: Sequence[str] | None,
        limit: int,
        after: tuple[datetime, str] | None,
    ) -> list[Authorization]:
        """The rows :meth:`spend` sums (captured or still reserving, created in the range),
        one by one in (created_at, id) order: the itemized report pages through them."""
        where = [f"state IN {_SPENDING}"]
        params: dict[str, object] = {"limit": limit}
        if since is not None:
            where.append("created_us >= :since")
            params["since"] = to_us(since)
        if until is not None:
            where.append("created_us < :until")
            params["until"] = to_us(until)
        for name, value in sorted(filters.items()):
            where.append(f"{_FILTER_COLUMNS[name]} = :f_{name}")
            params[f"f_{name}"] = value
        if departments is not None:
            names = [f"d{i}" for i in range(len(departments))]
            params.update(zip(names, departments, strict=True))
            where.append(
                f"department_id IN ({', '.join(':' + n for n in names)})" if names else "1 = 0"
            )
        if after is not None:
            where.append("(created_us > :after_us OR (created_us = :after_us AND id > :after_id))")
            params.update(after_us=to_us(after[0]), after_id=after[1])
        sql = (
            f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE {' AND '.join(where)} "
            "ORDER BY created_us, id LIMIT :limit"
        )
        rows = self._run(lambda tx: tx.all(sql, params), write=False, atomic=False)
        return [auth_from_row(row) for row in rows]

    def audit_events(self, limit: int, after_id: int = 0) -> list[dict[str, object]]:
        """Events in id order, with their chain position (None until sealed)."""
        rows = self._run(
            lambda tx: tx.all(
                "SELECT id, at_us, kind, actor, subject, payload, seq, hash, prev_hash "
                "FROM audit_events WHERE id > :after ORDER BY id LIMIT :limit",
                {"after": after_id, "limit": limit},
            ),
            write=False,
        )
        return [
            {
                "id": int(r[0]),
                "at": from_us(r[1]),
                "kind": r[2],
                "actor": r[3],
                "subject": r[4],
                "payload": loads(r[5]),
                "seq": None if r[6] is None else int(r[6]),
                "hash": r[7],
                "prev_hash": r[8],
            }
            for r in rows
        ]


def _sum_amounts(
    rows: Sequence[Sequence[object]],
) -> dict[str, tuple[tuple[str, int, int | None], ...]]:
    """(group, asset, decimals, amount, count) rows as exact sums per group and asset."""
    sums: dict[str, dict[str, list[int | None]]] = {}
    for grp, asset, decimals, amount, count in rows:
        entry = sums.setdefault(str(grp), {}).setdefault(str(asset), [0, None])
        entry[0] = (entry[0] or 0) + int(str(amount)) * int(str(count))
        entry[1] = None if decimals is None else int(str(decimals))
    return {
        grp: tuple((asset, int(total or 0), dec) for asset, (total, dec) in sorted(assets.items()))
        for grp, assets in sums.items()
    }


_USAGE_COLUMNS = frozenset({"wallet_id", "agent_id", "department_id"})


def _usage(tx: Tx, query: UsageQuery) -> BudgetBalance:
    where = [f"state IN {_RESERVING[:-1]},'captured')"]
    params: dict[str, object] = {}
    if query.since is not None:
        where.append("created_us >= :since")
        params["since"] = to_us(query.since)
    if query.until is not None:
        where.append("created_us < :until")
        params["until"] = to_us(query.until)
    if query.column is not None:
        assert query.column in _USAGE_COLUMNS
        names = [f"id{i}" for i in range(len(query.ids))]
        params.update(zip(names, query.ids, strict=True))
        where.append(f"{query.column} IN ({', '.join(':' + n for n in names)})")
    if query.subject:
        where.append("lower(recipient) = :subject")
        params["subject"] = query.subject.lower()
    row = tx.one(
        "SELECT "
        "COALESCE(SUM(CASE WHEN state = 'captured' THEN captured_usd_micros ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN state = 'captured' THEN 0 ELSE value_usd_micros END), 0), "
        "COALESCE(SUM(CASE WHEN state = 'captured' THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(CASE WHEN state = 'captured' THEN 0 ELSE 1 END), 0) "
        f"FROM authorizations WHERE {' AND '.join(where)}",
        params,
    )
    assert row is not None
    return BudgetBalance(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
