"""PostgreSQL: ``treasurer_reserve_batch``, many reservations in one call and one commit.

Why: on PostgreSQL the org (and department) balance row that every spend claims stays locked
from its conditional update to the commit, and the commit waits for the WAL flush. One
reservation per transaction therefore caps the whole deployment, all nodes together, at about
one reservation per flush on that row. A node gathers the reservations that arrive while its
previous call runs and sends them as one batch (``adapters/sql/reserve_batch.py``); the
function holds the hot rows only for what must happen under their lock:

1. every balance row of the batch is created empty if missing, locked and read once, in the
   global lock order (narrow scopes first, the org last, then by key), so batches of several
   nodes queue on the rows instead of deadlocking. ``ON CONFLICT DO UPDATE … WHERE false``
   locks an existing row without changing it;
2. each item, in order, is checked against the running balances with the very condition of
   ``treasurer_reserve`` (``posted + pending + x <= limit``, and the count) on every claim: it
   is taken whole or refused whole (``rejected``, with the first key that does not fit). An
   idempotency key already stored, or taken by an earlier item of the batch, is answered
   ``duplicate`` and reserves nothing;
3. each changed row is written once (the CHECK constraints still hold every row);
4. the accepted authorizations, their lines and their audit events are inserted in bulk, in
   item order.

A batch is one statement: it commits or fails whole. The caller retries a failed batch item
by item, so a request that fails on its own (a concurrent duplicate key, bad data) fails
alone. Rolling windows (bucket expiry first) keep the one-by-one path.

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
    b record;
    row_state jsonb := '{}'::jsonb;
    keys_seen jsonb := '{}'::jsonb;
    trial jsonb;
    state jsonb;
    rows_after jsonb;
    accepted jsonb := '[]'::jsonb;
    result jsonb := '[]'::jsonb;
    failed text;
    ikey text;
BEGIN
    -- 1. Every balance row of the batch, in the global lock order: created empty if missing,
    --    locked, and read once.
    FOR c IN SELECT value FROM jsonb_array_elements(p_locks) LOOP
        INSERT INTO budget_balances AS bb (key, policy_id, scope, period, subject,
            limit_micros, max_count, posted, pending, posted_count, pending_count, updated_us)
        VALUES (c->>'key', c->>'policy_id', c->>'scope', c->>'period', c->>'subject',
            (c->>'limit')::bigint, (c->>'max_count')::bigint, 0, 0, 0, 0, (c->>'now')::bigint)
        ON CONFLICT (key) DO UPDATE SET updated_us = bb.updated_us WHERE false;
        SELECT posted, pending, posted_count, pending_count INTO b
            FROM budget_balances WHERE key = c->>'key';
        row_state := row_state || jsonb_build_object(c->>'key', jsonb_build_object(
            'posted', b.posted, 'pending', b.pending, 'posted_count', b.posted_count,
            'pending_count', b.pending_count, 'changed', false));
    END LOOP;
    -- 2. Each item in order, against the running balances: the same condition as
    --    treasurer_reserve, posted + pending + x <= limit (and the count), for every claim.
    FOR it IN SELECT value FROM jsonb_array_elements(p_items) LOOP
        ikey := it->'auth'->>'idempotency_key';
        IF ikey IS NOT NULL THEN
            IF keys_seen ? ((it->'auth'->>'agent_id') || '|' || ikey) OR EXISTS (
                SELECT 1 FROM authorizations
                WHERE agent_id = it->'auth'->>'agent_id' AND idempotency_key = ikey
            ) THEN
                result := result || jsonb_build_array(jsonb_build_object('duplicate', ikey));
                CONTINUE;
            END IF;
        END IF;
        trial := row_state;
        rows_after := '[]'::jsonb;
        failed := NULL;
        FOR c IN SELECT value FROM jsonb_array_elements(it->'claims') LOOP
            state := trial->(c->>'key');
            IF ((c->>'limit') IS NOT NULL AND (state->>'posted')::bigint
                    + (state->>'pending')::bigint + (c->>'x')::bigint > (c->>'limit')::bigint)
               OR ((c->>'max_count') IS NOT NULL AND (state->>'posted_count')::bigint
                    + (state->>'pending_count')::bigint + 1 > (c->>'max_count')::bigint) THEN
                failed := c->>'key';
                EXIT;
            END IF;
            state := state || jsonb_build_object(
                'pending', (state->>'pending')::bigint + (c->>'x')::bigint,
                'pending_count', (state->>'pending_count')::bigint + 1,
                'limit', c->'limit', 'max_count', c->'max_count', 'now', c->'now',
                'changed', true);
            trial := trial || jsonb_build_object(c->>'key', state);
            rows_after := rows_after || jsonb_build_array(jsonb_build_array(
                state->'posted', state->'pending', state->'posted_count',
                state->'pending_count'));
        END LOOP;
        IF failed IS NOT NULL THEN
            result := result || jsonb_build_array(jsonb_build_object('rejected', failed));
            CONTINUE;
        END IF;
        row_state := trial;
        accepted := accepted || jsonb_build_array(it);
        IF ikey IS NOT NULL THEN
            keys_seen := keys_seen || jsonb_build_object(
                (it->'auth'->>'agent_id') || '|' || ikey, true);
        END IF;
        result := result || jsonb_build_array(jsonb_build_object('rows', rows_after));
    END LOOP;
    -- 3. Each changed row written once; the CHECK constraints still guard every one.
    FOR c IN SELECT value FROM jsonb_array_elements(p_locks) LOOP
        state := row_state->(c->>'key');
        IF (state->>'changed')::boolean THEN
            UPDATE budget_balances SET pending = (state->>'pending')::bigint,
                pending_count = (state->>'pending_count')::bigint,
                limit_micros = (state->>'limit')::bigint,
                max_count = (state->>'max_count')::bigint,
                updated_us = (state->>'now')::bigint
            WHERE key = c->>'key';
        END IF;
    END LOOP;
    -- 4. What was accepted, inserted in bulk, in order (audit ids follow the items).
    INSERT INTO authorizations SELECT r.* FROM jsonb_array_elements(accepted)
        WITH ORDINALITY AS a(item, n),
        LATERAL jsonb_populate_record(NULL::authorizations, a.item->'auth') r ORDER BY a.n;
    INSERT INTO authorization_lines SELECT r.* FROM jsonb_array_elements(accepted) AS a(item),
        LATERAL jsonb_populate_recordset(NULL::authorization_lines, a.item->'lines') r;
    INSERT INTO audit_events (at_us, kind, actor, subject, payload)
        SELECT r.at_us, r.kind, r.actor, r.subject, r.payload
        FROM jsonb_array_elements(accepted) WITH ORDINALITY AS a(item, n),
        LATERAL jsonb_populate_record(NULL::audit_events, a.item->'audit') r ORDER BY a.n;
    RETURN result;
END
$$;
"""


def upgrade(op: Operations) -> None:
    """Create the function on PostgreSQL; nothing to do on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE_BATCH_FUNCTION)
