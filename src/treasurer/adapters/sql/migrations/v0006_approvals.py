"""Approval votes and the single-use nonces approvers sign.

``approval_nonces`` holds every challenge issued (one approver, one authorization, an expiry);
``used_us`` is set once, in the transaction that records the vote, so a nonce cannot be spent
twice. ``approval_ballots`` has one row per voter per authorization (the primary key), so a
voter cannot vote twice even with two nonces.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 6


def upgrade(op: Operations) -> None:
    """Create ``approval_nonces`` and ``approval_ballots``."""
    op.create_table(
        "approval_nonces",
        sa.Column("nonce", sa.Text, primary_key=True),
        sa.Column("authorization_id", sa.Text, nullable=False),
        sa.Column("approver_id", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("used_us", sa.BigInteger),
    )
    op.create_table(
        "approval_ballots",
        sa.Column("authorization_id", sa.Text, primary_key=True),
        sa.Column("voter", sa.Text, primary_key=True),
        sa.Column("voter_kind", sa.Text, nullable=False),
        sa.Column("voter_id", sa.Text, nullable=False),
        sa.Column("groups", sa.Text, nullable=False),
        sa.Column("vote", sa.Text, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint("vote IN ('approve', 'reject')", name="ballot_vote"),
    )
