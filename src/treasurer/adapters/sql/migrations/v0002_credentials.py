"""Credentials: admin keys, agent sessions and approvers.

Same conventions as revision 1: timestamps are BIGINT microseconds since the Unix epoch. Only
SHA-256 hashes of token secrets are stored, never the tokens. Revoked rows are kept (with
``revoked_us``) so the audit trail can still name the credential an old event refers to.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 2


def upgrade(op: Operations) -> None:
    """Create the credential tables."""
    op.create_table(
        "admin_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("department_id", sa.Text),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger),
        sa.CheckConstraint("role IN ('admin', 'finance', 'auditor')", name="admin_key_role"),
    )
    op.create_table(
        "agent_sessions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger),
        sa.Column("replaced_by", sa.Text),
    )
    op.create_index("agent_sessions_agent", "agent_sessions", ["agent_id", "id"])
    op.create_table(
        "approvers",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("group_names", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger),
        sa.CheckConstraint("kind IN ('ed25519', 'evm')", name="approver_kind"),
    )
