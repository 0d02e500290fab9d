"""Reconciliation: the transfers seen on chain, each watcher's progress, and budget overdrafts.

- ``chain_transfers``: one row per value movement seen leaving a registered wallet, keyed by
  ``(network, tx_id, idx)`` (``idx`` = log index, ``-1`` for a transaction's native value,
  the instruction position on Solana). The key is what makes the watcher idempotent: a block
  read twice (after a restart, or by two nodes while a lease changed hands) inserts nothing
  twice. ``status`` says how it was reconciled and ``authorization_id`` with what.
- ``chain_watch``: per network, the last block (slot) fully read (``last_block``; NULL until the
  first run) and the lease that lets one node at a time watch that network.
- ``budget_balances.overdraft_micros`` / ``overdraft_count``: an unauthorized spend has left
  the wallet whatever the budget says, so it is posted to every covering budget row even past
  the limit. The CHECK constraints used to forbid ``posted + pending > limit``; they now allow
  exactly the overdraft recorded beside it (``posted + pending <= limit + overdraft``), which
  only an unauthorized spend raises. Reservations keep their own condition (``posted + pending
  + x <= limit``), so a budget in overdraft denies every further spend until its period ends.
  SQLite cannot alter a CHECK in place: there the table is rebuilt (batch mode), PostgreSQL
  swaps the constraints.
- ``authorizations_wallet_state``: the watcher's candidate lookup (one wallet's open and
  captured authorizations).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 9

TokenAmount = sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")
_WITHIN_LIMIT = "limit_micros IS NULL OR posted + pending <= limit_micros + overdraft_micros"
_WITHIN_COUNT = "max_count IS NULL OR posted_count + pending_count <= max_count + overdraft_count"
_OVERDRAFT_NON_NEGATIVE = "overdraft_micros >= 0 AND overdraft_count >= 0"


def _overdraft_columns() -> list[sa.Column[int]]:
    return [
        sa.Column("overdraft_micros", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("overdraft_count", sa.BigInteger, nullable=False, server_default=sa.text("0")),
    ]


def _budget_overdrafts(op: Operations) -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("budget_balances", recreate="always") as batch:
            for column in _overdraft_columns():
                batch.add_column(column)
            batch.drop_constraint("within_limit", type_="check")
            batch.drop_constraint("within_count", type_="check")
            batch.create_check_constraint("within_limit", _WITHIN_LIMIT)
            batch.create_check_constraint("within_count", _WITHIN_COUNT)
            batch.create_check_constraint("overdraft_non_negative", _OVERDRAFT_NON_NEGATIVE)
        return
    for column in _overdraft_columns():
        op.add_column("budget_balances", column)
    op.drop_constraint("within_limit", "budget_balances", type_="check")
    op.drop_constraint("within_count", "budget_balances", type_="check")
    op.create_check_constraint("within_limit", "budget_balances", _WITHIN_LIMIT)
    op.create_check_constraint("within_count", "budget_balances", _WITHIN_COUNT)
    op.create_check_constraint("overdraft_non_negative", "budget_balances", _OVERDRAFT_NON_NEGATIVE)


def upgrade(op: Operations) -> None:
    """Create ``chain_transfers`` and ``chain_watch``; allow recorded budget overdrafts."""
    op.create_table(
        "chain_transfers",
        sa.Column("network", sa.Text, primary_key=True),
        sa.Column("tx_id", sa.Text, primary_key=True),
        sa.Column("idx", sa.Integer, primary_key=True),
        sa.Column("wallet_id", sa.Text, nullable=False),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("sender", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("token", sa.Text),  # NULL: the native coin
        sa.Column("amount", TokenAmount, nullable=False),
        sa.Column("block", sa.BigInteger, nullable=False),
        sa.Column("initiator", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("authorization_id", sa.Text),
        sa.Column("detail", sa.Text, nullable=False),  # JSON
        sa.Column("observed_us", sa.BigInteger, nullable=False),
        sa.Column("resolved_us", sa.BigInteger),
        sa.CheckConstraint(
            "status IN ('matched', 'payment', 'allowance', 'awaiting_capture', "
            "'unauthorized', 'mismatch')",
            name="chain_transfer_status",
        ),
    )
    op.create_index("chain_transfers_status", "chain_transfers", ["network", "status"])
    op.create_index("chain_transfers_authorization", "chain_transfers", ["authorization_id"])
    op.create_table(
        "chain_watch",
        sa.Column("network", sa.Text, primary_key=True),
        sa.Column("last_block", sa.BigInteger),  # NULL: not read yet
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_until_us", sa.BigInteger),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "authorizations_wallet_state", "authorizations", ["wallet_id", "state", "created_us"]
    )
    _budget_overdrafts(op)
