"""Custodial payments and the notification outbox.

Same conventions as revision 1: BIGINT microsecond timestamps, BIGINT USD micros, token and
native amounts as NUMERIC(78,0) on PostgreSQL and TEXT on SQLite. A payment's idempotency key is
unique per agent, so two racing first attempts cannot both create a payment. ``notifications``
is an outbox: rows are written in the transaction of the change they announce and delivered
(``delivered_us`` set) later by a separate worker.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 4

TokenAmount = sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")


def upgrade(op: Operations) -> None:
    """Create ``payments`` and ``notifications``."""
    op.create_table(
        "payments",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("authorization_id", sa.Text),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("wallet_id", sa.Text, nullable=False),
        sa.Column("chain", sa.Text, nullable=False),
        sa.Column("asset_id", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("amount", TokenAmount, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("tier", sa.Text),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("tx_id", sa.Text),
        sa.Column("raw_tx", sa.Text),
        sa.Column("fee_quote", TokenAmount),
        sa.Column("fee_quote_usd_micros", sa.BigInteger),
        sa.Column("fee_paid", TokenAmount),
        sa.Column("fee_paid_usd_micros", sa.BigInteger),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("broadcast_us", sa.BigInteger),
        sa.Column("finalized_us", sa.BigInteger),
        sa.Column("error", sa.Text),
        sa.UniqueConstraint("agent_id", "idempotency_key", name="payments_idempotency"),
        sa.CheckConstraint(
            "state IN ('created', 'queued', 'broadcast', 'confirmed', 'failed', 'denied')",
            name="payment_state",
        ),
    )
    op.create_index("payments_state_created", "payments", ["state", "created_us"])
    op.create_index("payments_authorization", "payments", ["authorization_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("delivered_us", sa.BigInteger),
    )
    op.create_index("notifications_undelivered", "notifications", ["delivered_us", "id"])
