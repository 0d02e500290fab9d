"""Webhook notifications: endpoints, one delivery row per (event, endpoint), the dispatch cursor.

The outbox is the audit log itself (every change already writes its event in its own
transaction, and the sealer numbers them with a gapless ``seq``). The dispatcher follows the
sealed events by ``seq`` from ``webhook_cursor`` and, in one transaction, inserts the
deliveries of a batch and advances the cursor, so a crash either redoes the batch or finds
its deliveries durable. ``UNIQUE (endpoint_id, event_seq)`` is the last line of defence
against delivering one event twice to one endpoint.

``secret`` is stored as given (not hashed): the server must read it to sign every delivery.
``lease_until_us``/``lease_token`` let one node at a time send a delivery (the claim takes
``FOR UPDATE SKIP LOCKED`` on PostgreSQL); an expired lease makes the delivery claimable again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 7


def upgrade(op: Operations) -> None:
    """Create ``webhook_endpoints``, ``webhook_deliveries`` and ``webhook_cursor``."""
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("events", sa.Text, nullable=False),  # JSON list; [] = every event
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("disabled_us", sa.BigInteger),
        sa.CheckConstraint("format IN ('json', 'slack')", name="webhook_format"),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("endpoint_id", sa.Text, sa.ForeignKey("webhook_endpoints.id"), nullable=False),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("last_attempt_us", sa.BigInteger),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_us", sa.BigInteger),
        sa.Column("lease_until_us", sa.BigInteger),
        sa.Column("lease_token", sa.Text),
        sa.UniqueConstraint("endpoint_id", "event_seq", name="webhook_delivery_once"),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'dead')", name="webhook_delivery_state"
        ),
        sa.CheckConstraint("attempts >= 0", name="webhook_delivery_attempts"),
    )
    # The claim: due pending deliveries, oldest due first.
    op.create_index(
        "webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_us"],
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    # The list of one endpoint's deliveries, newest event first, optionally by state.
    op.create_index(
        "webhook_deliveries_endpoint", "webhook_deliveries", ["endpoint_id", "state", "event_seq"]
    )
    op.create_table(
        "webhook_cursor",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO webhook_cursor (name, seq) VALUES ('dispatch', 0)")
