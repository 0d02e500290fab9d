"""PostgreSQL: ``treasurer_reserve_batch``, many reservations in one call and one commit.

Why: on PostgreSQL the org (and department) balance row that every spend claims stays locked
from its conditional update to the commit, and the commit waits for the WAL flush. One
reservation per transaction therefore caps the whole deployment, all nodes together, at one
commit's worth of reservations per flush on that row. A node that gathers the reservations
arriving while its previous call runs and sends them as one batch pays that lock and that
flush once per batch (``adapters/sql/reserve_batch.py``).

Each item is still all or nothing, and still exact: it runs ``treasurer_reserve`` (migration
v0003) in its own subtransaction, so a claim that does not fit (``treasurer_claim_rejected``),
an idempotency key already taken, or any other error of that item (a wallet deleted meanwhile:
a foreign key) undoes that item alone and is reported in its slot; the others are unaffected.

No deadlocks between batches: before any item runs, every balance row of the whole batch is
locked in the global lock order (narrow scopes first, the org last, then by key), creating a
missing row empty. ``ON CONFLICT DO UPDATE … WHERE false`` locks an existing row without
changing it (PostgreSQL locks every conflicting row the action considers, updated or not), so
the limit and the CHECK constraints are untouched. The items then never wait for a balance row.

SQLite keeps its group commit (``sqlite_db.py``): one writer at a time already batches there.
"""

from __future__ import annotations

from alembic.operations import Operations

REVISION = 10

RESERVE_BATCH_FUNCTION = """
CREATE OR REPLACE FUNCTION treasurer_reserve_batch(p_items jsonb, p_locks jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    it jsonb;
    detail text;
    result jsonb := '[]'::jsonb;
BEGIN
    FOR c IN SELECT value FROM jsonb_array_elements(p_locks) LOOP
        INSERT INTO budget_balances AS b (key, policy_id, scope, period, subject, limit_micros,
            max_count, posted, pending, posted_count, pending_count, updated_us)
        VALUES (c->>'key', c->>'policy_id', c->>'scope', c->>'period', c->>'subject',
            (c->>'limit')::bigint, (c->>'max_count')::bigint, 0, 0, 0, 0, (c->>'now')::bigint)
        ON CONFLICT (key) DO UPDATE SET updated_us = b.updated_us WHERE false;
    END LOOP;
    FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        BEGIN
            result := result || jsonb_build_array(jsonb_build_object('rows',
                treasurer_reserve(it->'auth', it->'lines', it->'audit', it->'claims')));
        EXCEPTION
            WHEN unique_violation THEN
                result := result || jsonb_build_array(jsonb_build_object('duplicate', SQLERRM));
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
                IF SQLSTATE = 'P0001' AND SQLERRM = 'treasurer_claim_rejected' THEN
                    result := result || jsonb_build_array(jsonb_build_object('rejected', detail));
                ELSE
                    result := result || jsonb_build_array(jsonb_build_object(
                        'error', SQLERRM, 'sqlstate', SQLSTATE));
                END IF;
        END;
    END LOOP;
    RETURN result;
END
$$;
"""


def upgrade(op: Operations) -> None:
    """Create the function on PostgreSQL; nothing to do on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE_BATCH_FUNCTION)
