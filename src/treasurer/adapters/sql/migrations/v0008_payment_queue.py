"""The persistent delay/approval queue: the request a queued payment executes, its claim, and
the ``cancelled`` state.

- ``kind``, ``call_to``, ``call_data``, ``call_value``: what the caller asked beyond the decided
  asset, amount and counterparty, so a payment queued today is executed later exactly as asked
  (an ``approve``, or a raw ``call`` byte for byte). ``call_to`` rather than ``to``: ``TO`` is a
  reserved word in PostgreSQL. Existing rows are transfers (the only kind that could queue).
- ``claimed_us``, ``claim_token``: the executor's claim on a payment it moved ``queued →
  created``. A claim whose holder died is taken over after a lease; ``claim_token =
  'sending'`` marks the point after which the transaction may be on its way, so it is never
  taken over (``service/payments_queue.py``).
- ``cancelled``: a queued payment cancelled by its agent, a finance key or an admin (or by a
  decommission). The state list is a CHECK constraint; SQLite cannot alter one in place, so
  there the table is rebuilt (``batch_alter_table(recreate="always")``: copy, drop, rename,
  with its indexes and its unique idempotency constraint), and PostgreSQL swaps the constraint.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 8

TokenAmount = sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")
_STATES = "'created', 'queued', 'broadcast', 'confirmed', 'failed', 'denied', 'cancelled'"


def _columns() -> list[sa.Column[object]]:
    return [
        sa.Column("kind", sa.Text, nullable=False, server_default="transfer"),
        sa.Column("call_to", sa.Text),
        sa.Column("call_data", sa.Text),  # 0x-prefixed hex, exactly as given
        sa.Column("call_value", TokenAmount),  # native base units sent with a call
        sa.Column("claimed_us", sa.BigInteger),
        sa.Column("claim_token", sa.Text),
    ]


def upgrade(op: Operations) -> None:
    """Add the request and claim columns and allow ``cancelled``."""
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("payments", recreate="always") as batch:
            for column in _columns():
                batch.add_column(column)
            batch.drop_constraint("payment_state", type_="check")
            batch.create_check_constraint("payment_state", f"state IN ({_STATES})")
    else:
        for column in _columns():
            op.add_column("payments", column)
        op.drop_constraint("payment_state", "payments", type_="check")
        op.create_check_constraint("payment_state", "payments", f"state IN ({_STATES})")
    # The executor's stale-claim sweep: claimed payments still without a transaction.
    op.create_index(
        "payments_claimed",
        "payments",
        ["claimed_us"],
        sqlite_where=sa.text("state = 'created' AND claim_token IS NOT NULL"),
        postgresql_where=sa.text("state = 'created' AND claim_token IS NOT NULL"),
    )
