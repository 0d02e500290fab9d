"""PostgreSQL: ``treasurer_reserve``, the whole reservation as one server-side call.

The reservation is about ten statements (the authorization, its lines, its audit event, one
conditional upsert per covering budget). Sent one by one, each costs a network round trip
while the hot budget rows are locked. As one function call they cost one, which is what keeps
contended org and department rows locked for the least time. The logic is the same as the
portable path in ``budget_store.reserve`` (inserts first, claims in the given lock order,
``posted + pending + x <= limit``); a claim that does not fit raises ``P0001`` with the message
``treasurer_claim_rejected`` and the balance key as detail, which rolls everything back.

SQLite keeps the portable path (its statements cost microseconds, not round trips).
"""

from __future__ import annotations

from alembic.operations import Operations

REVISION = 3

RESERVE_FUNCTION = """
CREATE OR REPLACE FUNCTION treasurer_reserve(
    p_auth jsonb, p_lines jsonb, p_audit jsonb, p_claims jsonb
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    c jsonb;
    r record;
    result jsonb := '[]'::jsonb;
BEGIN
    INSERT INTO authorizations
        SELECT * FROM jsonb_populate_record(NULL::authorizations, p_auth);
    INSERT INTO authorization_lines
        SELECT * FROM jsonb_populate_recordset(NULL::authorization_lines, p_lines);
    INSERT INTO audit_events (at_us, kind, actor, subject, payload)
        SELECT at_us, kind, actor, subject, payload
        FROM jsonb_populate_record(NULL::audit_events, p_audit);
    FOR c IN SELECT value FROM jsonb_array_elements(p_claims) LOOP
        INSERT INTO budget_balances AS b (key, policy_id, scope, period, subject, limit_micros,
            max_count, posted, pending, posted_count, pending_count, updated_us)
        VALUES (c->>'key', c->>'policy_id', c->>'scope', c->>'period', c->>'subject',
            (c->>'limit')::bigint, (c->>'max_count')::bigint, 0, (c->>'x')::bigint, 0, 1,
            (c->>'now')::bigint)
        ON CONFLICT (key) DO UPDATE SET
            pending = b.pending + excluded.pending,
            pending_count = b.pending_count + 1,
            limit_micros = excluded.limit_micros,
            max_count = excluded.max_count,
            updated_us = excluded.updated_us
        WHERE (excluded.limit_micros IS NULL
               OR b.posted + b.pending + excluded.pending <= excluded.limit_micros)
          AND (excluded.max_count IS NULL
               OR b.posted_count + b.pending_count + 1 <= excluded.max_count)
        RETURNING b.posted, b.pending, b.posted_count, b.pending_count INTO r;
        IF NOT FOUND THEN
            RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = 'treasurer_claim_rejected',
                DETAIL = c->>'key';
        END IF;
        result := result || jsonb_build_array(
            jsonb_build_array(r.posted, r.pending, r.posted_count, r.pending_count));
    END LOOP;
    RETURN result;
END
$$;
"""


def upgrade(op: Operations) -> None:
    """Create the function on PostgreSQL; nothing to do on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(RESERVE_FUNCTION)
