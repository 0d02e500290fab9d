"""Budget reservations, captures and releases: the concurrency-critical SQL.

``reserve`` is one short transaction (ARCHITECTURE.md, "Budgets under concurrency"): for each
claim, in the global lock order (narrow scopes first, org last), a single conditional upsert

    INSERT … ON CONFLICT (key) DO UPDATE SET pending = pending + x … WHERE posted + pending + x
    <= limit RETURNING …

If any row does not match, the whole transaction rolls back and the failing key is reported;
otherwise the authorization, its lines and its audit event are inserted and committed. On
PostgreSQL, reservations without a rolling window go through :mod:`.reserve_batch` (many per
call and per commit, each still all or nothing: the hot-budget path). The
``CHECK (posted + pending <= limit)`` constraint is the last line of defence. Capture and
release guard on the authorization's state, so each happens exactly once under racing calls.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from treasurer.adapters.sql.codec import AUTH_COLUMNS, auth_from_row, auth_params, dumps, to_us
from treasurer.adapters.sql.config_store import INSERT_AUDIT, audit_params
from treasurer.adapters.sql.db import Row, Tx
from treasurer.adapters.sql.reserve_batch import BatchItem, ClaimRejected
from treasurer.domain.authorization import RESERVING_STATES, Authorization
from treasurer.domain.budgets import BudgetBalance, BudgetClaim
from treasurer.domain.org import wallet_handle
from treasurer.domain.windows import rolling_cutoff
from treasurer.service.ports import AuditRecord

_RESERVING = "('" + "','".join(sorted(s.value for s in RESERVING_STATES)) + "')"
__all__ = ["BatchItem", "ClaimRejected", "batch_item", "reserve"]


def _reserve_sql(has_limit: bool, has_count: bool) -> str:
    conditions = []
    if has_limit:
        conditions.append(
            "budget_balances.posted + budget_balances.pending + excluded.pending "
            "<= excluded.limit_micros"
        )
    if has_count:
        conditions.append(
            "budget_balances.posted_count + budget_balances.pending_count + 1 <= excluded.max_count"
        )
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return (
        "INSERT INTO budget_balances (key, policy_id, scope, period, subject, limit_micros, "
        "max_count, posted, pending, posted_count, pending_count, updated_us) VALUES "
        "(:key, :policy_id, :scope, :period, :subject, :limit, :max_count, 0, :x, 0, 1, :now) "
        "ON CONFLICT (key) DO UPDATE SET pending = budget_balances.pending + excluded.pending, "
        "pending_count = budget_balances.pending_count + 1, "
        "limit_micros = excluded.limit_micros, max_count = excluded.max_count, "
        f"updated_us = excluded.updated_us{where} "
        "RETURNING posted, pending, posted_count, pending_count"
    )


_RESERVE_SQL = {
    (lim, cnt): _reserve_sql(lim, cnt) for lim in (True, False) for cnt in (True, False)
}

INSERT_AUTH = (
    f"INSERT INTO authorizations ({AUTH_COLUMNS}) VALUES ("
    + ", ".join(f":{c.strip()}" for c in AUTH_COLUMNS.split(","))
    + ")"
)
INSERT_LINE = (
    "INSERT INTO authorization_lines (authorization_id, balance_key, amount_micros, lock_rank, "
    "bucket_s) VALUES (:a, :k, :x, :r, :b)"
)


def _expire_rolling(tx: Tx, claim: BudgetClaim, now: datetime) -> None:
    """Drop rolling buckets that lie wholly outside the window (deny early, never over)."""
    expired = tx.all(
        "DELETE FROM budget_buckets WHERE key = :k AND bucket < :c RETURNING amount, count",
        {"k": claim.key, "c": rolling_cutoff(claim.window, now)},
    )
    if expired:
        tx.execute(
            "UPDATE budget_balances SET posted = posted - :a, posted_count = posted_count - :c "
            "WHERE key = :k",
            {
                "a": sum(int(r[0]) for r in expired),
                "c": sum(int(r[1]) for r in expired),
                "k": claim.key,
            },
        )


def reserve(
    tx: Tx,
    auth: Authorization,
    claims: Sequence[BudgetClaim],
    audit: AuditRecord,
    now: datetime,
    dialect: str,
) -> dict[str, BudgetBalance]:
    """Insert the authorization and reserve every claim, or raise :class:`ClaimRejected`.

    The inserts go first and the conditional upserts last, in the global lock order (org
    last), so the hottest rows stay locked only from their update to the commit. On
    PostgreSQL it is one call of ``treasurer_reserve`` (migration v0003): one round trip
    instead of one per statement. (``SqlStore`` sends PostgreSQL reservations without a
    rolling window through :func:`batch_item` and the batcher instead.)
    """
    ordered = sorted(claims, key=lambda c: c.lock_order)
    for claim in ordered:
        if claim.is_rolling:
            _expire_rolling(tx, claim, now)
    _refuse_oversized(ordered)
    claim_params = [_claim_params(claim, now) for claim in ordered]
    if dialect == "postgresql":
        rows = _reserve_server_side(tx, auth, ordered, audit, now, claim_params)
    else:
        statements = _one_lines_insert(_insert_statements(auth, ordered, audit, now, dialect))
        first_claim = len(statements)
        statements.extend(
            (_RESERVE_SQL[(c.limit_micros is not None, c.max_count is not None)], params)
            for c, params in zip(ordered, claim_params, strict=True)
        )
        rows = tx.batch(statements)[first_claim:]
    return balances_after(ordered, rows)


def balances_after(
    ordered: Sequence[BudgetClaim], rows: Sequence[Row | None]
) -> dict[str, BudgetBalance]:
    """The balance rows a reservation returned, by key; a missing one did not fit."""
    after: dict[str, BudgetBalance] = {}
    for claim, row in zip(ordered, rows, strict=True):
        if row is None:
            raise ClaimRejected(claim.key)
        after[claim.key] = BudgetBalance(int(row[0]), int(row[1]), int(row[2]), int(row[3]))
    return after


def _refuse_oversized(ordered: Sequence[BudgetClaim]) -> None:
    """A claim larger than its limit on its own never fits; refused before any write, because
    a brand-new row is inserted without the condition."""
    for claim in ordered:
        over_limit = claim.limit_micros is not None and claim.amount_micros > claim.limit_micros
        if over_limit or claim.max_count == 0:
            raise ClaimRejected(claim.key)


def batch_item(
    auth: Authorization, claims: Sequence[BudgetClaim], audit: AuditRecord, now: datetime
) -> tuple[list[BudgetClaim], BatchItem]:
    """The claims in lock order and the reservation as ``treasurer_reserve_batch`` takes it
    (PostgreSQL, no rolling window); raises :class:`ClaimRejected` for an oversized claim."""
    ordered = sorted(claims, key=lambda c: c.lock_order)
    _refuse_oversized(ordered)
    statements = _insert_statements(auth, ordered, audit, now, "postgresql")
    item = BatchItem(
        auth=statements[0][1],
        lines=_line_rows(statements),
        audit=statements[-1][1],
        claims=[_claim_params(claim, now) for claim in ordered],
        lock_order=[claim.lock_order for claim in ordered],
    )
    return ordered, item


def _line_rows(statements: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {
            "authorization_id": p["a"],
            "balance_key": p["k"],
            "amount_micros": p["x"],
            "lock_rank": p["r"],
            "bucket_s": p["b"],
        }
        for _sql, p in statements[1:-1]
    ]


def _claim_params(claim: BudgetClaim, now: datetime) -> dict[str, Any]:
    return {
        "key": claim.key,
        "policy_id": claim.policy_id,
        "scope": str(claim.scope),
        "period": claim.period.key,
        "subject": claim.subject,
        "limit": claim.limit_micros,
        "max_count": claim.max_count,
        "x": claim.amount_micros,
        "now": to_us(now),
    }


def _reserve_server_side(
    tx: Tx,
    auth: Authorization,
    claims: Sequence[BudgetClaim],
    audit: AuditRecord,
    now: datetime,
    claim_params: list[dict[str, Any]],
) -> list[Row | None]:
    """One call of ``treasurer_reserve`` (migration v0003) instead of ~10 round trips."""
    statements = _insert_statements(auth, claims, audit, now, "postgresql")
    line_rows = _line_rows(statements)
    try:
        row = tx.one(
            "SELECT treasurer_reserve(CAST(:auth AS jsonb), CAST(:lines AS jsonb), "
            "CAST(:audit AS jsonb), CAST(:claims AS jsonb))",
            {
                "auth": dumps(statements[0][1]),
                "lines": dumps(line_rows),
                "audit": dumps(statements[-1][1]),
                "claims": dumps(claim_params),
            },
        )
    except Exception as exc:  # psycopg's RaiseException; psycopg is not imported for SQLite
        diag = getattr(exc, "diag", None)
        if diag is not None and diag.message_primary == "treasurer_claim_rejected":
            raise ClaimRejected(diag.message_detail or "") from None
        raise
    assert row is not None
    return [tuple(values) for values in row[0]]


def _insert_statements(
    auth: Authorization,
    claims: Sequence[BudgetClaim],
    audit: AuditRecord,
    now: datetime,
    dialect: str,
) -> list[tuple[str, dict[str, Any]]]:
    statements: list[tuple[str, dict[str, Any]]] = [(INSERT_AUTH, auth_params(auth, dialect))]
    for claim in claims:
        statements.append(
            (
                INSERT_LINE,
                {
                    "a": auth.id,
                    "k": claim.key,
                    "x": claim.amount_micros,
                    "r": claim.lock_order[0],
                    "b": claim.window.bucket_s if claim.is_rolling else None,
                },
            )
        )
    statements.append((INSERT_AUDIT, audit_params(audit, now)))
    return statements


def _one_lines_insert(
    statements: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """The line inserts folded into one multi-row INSERT (one statement instead of four)."""
    lines = [params for sql, params in statements if sql is INSERT_LINE]
    if len(lines) < 2:
        return statements
    values = ", ".join(f"(:a{i}, :k{i}, :x{i}, :r{i}, :b{i})" for i in range(len(lines)))
    merged = {f"{name}{i}": value for i, p in enumerate(lines) for name, value in p.items()}
    head, _, _ = INSERT_LINE.partition(" VALUES ")
    rest = [(sql, params) for sql, params in statements if sql is not INSERT_LINE]
    return [rest[0], (f"{head} VALUES {values}", merged), *rest[1:]]


def insert_authorization(
    tx: Tx, auth: Authorization, audit: AuditRecord, now: datetime, dialect: str
) -> None:
    """Record an authorization that reserves nothing (a denial)."""
    tx.batch(_insert_statements(auth, (), audit, now, dialect))


def get_authorization(tx: Tx, authorization_id: str) -> Authorization | None:
    row = tx.one(
        f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE id = :id", {"id": authorization_id}
    )
    return auth_from_row(row) if row else None


def find_by_key(tx: Tx, agent_id: str, key: str) -> Authorization | None:
    row = tx.one(
        f"SELECT {AUTH_COLUMNS} FROM authorizations WHERE agent_id = :a AND idempotency_key = :k",
        {"a": agent_id, "k": key},
    )
    return auth_from_row(row) if row else None


def lines_of(tx: Tx, authorization_id: str) -> list[tuple[str, int, int, int | None]]:
    rows = tx.all(
        "SELECT balance_key, amount_micros, lock_rank, bucket_s FROM authorization_lines "
        "WHERE authorization_id = :a ORDER BY lock_rank, balance_key",
        {"a": authorization_id},
    )
    return [(r[0], int(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in rows]


def capture(
    tx: Tx,
    authorization_id: str,
    amount: int,
    usd_micros: int,
    now: datetime,
    tx_hash: str | None,
    dialect: str,
) -> Authorization | None:
    """Post the final amount; ``None`` when the authorization is not pending (guarded)."""
    now_us = to_us(now)
    changed = tx.execute(
        "UPDATE authorizations SET state = 'captured', captured_amount = :amount, "
        "captured_usd_micros = :usd, finalized_us = :now, tx_hash = :tx "
        "WHERE id = :id AND state = 'pending' AND value_usd_micros >= :usd",
        {
            "amount": str(amount) if dialect == "sqlite" else amount,
            "usd": usd_micros,
            "now": now_us,
            "tx": tx_hash,
            "id": authorization_id,
        },
    )
    if changed != 1:
        return None
    for key, reserved, _rank, bucket_s in lines_of(tx, authorization_id):
        tx.execute(
            "UPDATE budget_balances SET pending = pending - :r, posted = posted + :u, "
            "pending_count = pending_count - 1, posted_count = posted_count + 1, "
            "updated_us = :now WHERE key = :k",
            {"r": reserved, "u": usd_micros, "now": now_us, "k": key},
        )
        if bucket_s is not None:
            tx.execute(
                "INSERT INTO budget_buckets (key, bucket, amount, count) VALUES (:k, :b, :u, 1) "
                "ON CONFLICT (key, bucket) DO UPDATE SET amount = budget_buckets.amount + "
                "excluded.amount, count = budget_buckets.count + 1",
                {"k": key, "b": int(now.timestamp()) // bucket_s, "u": usd_micros},
            )
    return get_authorization(tx, authorization_id)


def release(tx: Tx, authorization_id: str, new_state: str, now: datetime) -> Authorization | None:
    """Release a reservation (void, expiry, rejection); ``None`` if it holds none."""
    now_us = to_us(now)
    changed = tx.execute(
        f"UPDATE authorizations SET state = :s, finalized_us = :now "
        f"WHERE id = :id AND state IN {_RESERVING}",
        {"s": new_state, "now": now_us, "id": authorization_id},
    )
    if changed != 1:
        return None
    for key, reserved, _rank, _bucket in lines_of(tx, authorization_id):
        tx.execute(
            "UPDATE budget_balances SET pending = pending - :r, pending_count = pending_count - 1, "
            "updated_us = :now WHERE key = :k",
            {"r": reserved, "now": now_us, "k": key},
        )
    return get_authorization(tx, authorization_id)


def balances(
    tx: Tx, keys: Sequence[str], rolling_cutoffs: Mapping[str, int] | None = None
) -> dict[str, BudgetBalance]:
    """Balance rows; for rolling keys, without the buckets that have left the window (they
    are dropped from the row only by the next reservation)."""
    if not keys:
        return {}
    params = {f"k{i}": key for i, key in enumerate(keys)}
    placeholders = ", ".join(f":{name}" for name in params)
    rows = tx.all(
        "SELECT key, posted, pending, posted_count, pending_count FROM budget_balances "
        f"WHERE key IN ({placeholders})",
        params,
    )
    out = {r[0]: BudgetBalance(int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}
    for key, cutoff in (rolling_cutoffs or {}).items():
        if key not in out:
            continue
        row = tx.one(
            "SELECT COALESCE(SUM(amount), 0), COALESCE(SUM(count), 0) FROM budget_buckets "
            "WHERE key = :k AND bucket < :c",
            {"k": key, "c": cutoff},
        )
        assert row is not None
        old = out[key]
        out[key] = BudgetBalance(
            old.posted_micros - int(row[0]),
            old.pending_micros,
            old.posted_count - int(row[1]),
            old.pending_count,
        )
    return out


def spent_by_wallet(tx: Tx, keys: Sequence[str]) -> dict[str, tuple[tuple[str, int], ...]]:
    """Per balance key, how much each wallet has captured or reserved in it."""
    if not keys:
        return {}
    params: dict[str, Any] = {f"k{i}": key for i, key in enumerate(keys)}
    placeholders = ", ".join(f":k{i}" for i in range(len(keys)))
    rows = tx.all(
        "SELECT l.balance_key, a.chain, w.address, a.wallet_id, "
        "SUM(CASE WHEN a.state = 'captured' THEN a.captured_usd_micros ELSE l.amount_micros END) "
        "FROM authorization_lines l JOIN authorizations a ON a.id = l.authorization_id "
        "LEFT JOIN wallets w ON w.id = a.wallet_id "
        f"WHERE l.balance_key IN ({placeholders}) AND a.state IN {_RESERVING[:-1]},'captured') "
        "GROUP BY l.balance_key, a.chain, w.address, a.wallet_id ORDER BY 5 DESC",
        params,
    )
    out: dict[str, list[tuple[str, int]]] = {}
    for key, chain, address, wallet_id, total in rows:
        handle = wallet_handle(chain, address) if address else wallet_id
        out.setdefault(key, []).append((handle, int(total)))
    return {key: tuple(items) for key, items in out.items()}


def hold(tx: Tx, authorization_id: str, until: datetime, now: datetime) -> Authorization | None:
    """Keep a pending authorization until ``until`` (never shortens); None unless pending."""
    tx.execute(
        "UPDATE authorizations SET expires_us = :until WHERE id = :id AND state = 'pending' "
        "AND expires_us > :now AND expires_us < :until",
        {"until": to_us(until), "id": authorization_id, "now": to_us(now)},
    )
    auth = get_authorization(tx, authorization_id)
    if auth is None or auth.state.value != "pending":
        return None
    if auth.expires_at is not None and auth.expires_at <= now:
        return None
    return auth


def promote(
    tx: Tx, authorization_id: str, from_state: str, expires_at: datetime, now: datetime
) -> Authorization | None:
    """``delayed``/``pending_approval`` → ``pending``, unless it expired first; the reservation
    stays as it is."""
    changed = tx.execute(
        "UPDATE authorizations SET state = 'pending', expires_us = :exp "
        "WHERE id = :id AND state = :from AND (expires_us IS NULL OR expires_us > :now)",
        {"exp": to_us(expires_at), "id": authorization_id, "from": from_state, "now": to_us(now)},
    )
    return get_authorization(tx, authorization_id) if changed == 1 else None


def stale_authorizations(tx: Tx, now: datetime, limit: int) -> list[str]:
    rows = tx.all(
        f"SELECT id FROM authorizations WHERE state IN {_RESERVING} AND expires_us IS NOT NULL "
        "AND expires_us <= :now ORDER BY expires_us LIMIT :limit",
        {"now": to_us(now), "limit": limit},
    )
    return [r[0] for r in rows]


def due_delayed(tx: Tx, now: datetime, limit: int) -> list[str]:
    rows = tx.all(
        "SELECT id FROM authorizations WHERE state = 'delayed' AND release_after_us <= :now "
        "ORDER BY release_after_us LIMIT :limit",
        {"now": to_us(now), "limit": limit},
    )
    return [r[0] for r in rows]
