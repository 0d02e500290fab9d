"""``evm_nonces``: the next nonce of each custodial EVM address, shared by every node.

Why: each node used to count an address's nonces in its own memory, so two nodes sending from
one wallet at the same instant could sign the same nonce, and one payment failed. On
PostgreSQL the nodes now take the nonce from this table under the row's lock, held from
allocation to broadcast (``adapters/sql/nonce_ledger.py``). ``next_nonce`` is NULL when the
last send's outcome is unknown: the next sender reads the chain's pending count instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 12


def upgrade(op: Operations) -> None:
    op.create_table(
        "evm_nonces",
        sa.Column("network", sa.Text, primary_key=True),
        sa.Column("address", sa.Text, primary_key=True),
        sa.Column("next_nonce", sa.BigInteger, nullable=True),
        sa.CheckConstraint("next_nonce >= 0", name="evm_nonces_next_nonce_not_negative"),
    )
