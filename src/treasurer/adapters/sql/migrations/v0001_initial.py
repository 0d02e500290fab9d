"""Initial schema: org config, policies with history, balances, authorizations, audit events.

Conventions: timestamps are BIGINT microseconds since the Unix epoch (exact, sortable and the
same on both databases); USD is BIGINT micro-dollars; token amounts are NUMERIC(78,0) on
PostgreSQL (all of uint256) and TEXT on SQLite (decimal digits, converted at the edge).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 1

TokenAmount = sa.Numeric(78, 0).with_variant(sa.Text(), "sqlite")


def _config_tables(op: Operations) -> None:
    op.create_table(
        "meta", sa.Column("key", sa.Text, primary_key=True), sa.Column("value", sa.Text)
    )
    op.create_table(
        "orgs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("timezone", sa.Text, nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
    )
    op.create_table(
        "departments",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("parent_id", sa.Text),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("department_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
    )
    op.create_table(
        "wallets",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("chain", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("custody", sa.Text, nullable=False),
        sa.Column("vendor", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.UniqueConstraint("chain", "address", name="wallets_chain_address"),
    )
    op.create_table(
        "assets",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("chain", sa.Text, nullable=False),
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("decimals", sa.Integer, nullable=False),
        sa.Column("address", sa.Text),
        sa.Column("price_source", sa.Text, nullable=False),
        sa.Column("fixed_price_atto", TokenAmount),
        sa.Column("max_price_age_s", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "prices",
        sa.Column("asset_id", sa.Text, primary_key=True),
        sa.Column("price_atto", TokenAmount, nullable=False),
        sa.Column("as_of_us", sa.BigInteger, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
    )
    op.create_table(
        "freezes",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )


def _policy_columns() -> list[sa.Column[str]]:
    return [
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("mode", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
    ]


def _policy_tables(op: Operations) -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        *_policy_columns(),
    )
    op.create_table(
        "policy_versions",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        *_policy_columns(),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("retired_us", sa.BigInteger),
    )


def _budget_tables(op: Operations) -> None:
    op.create_table(
        "budget_balances",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("policy_id", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("period", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("limit_micros", sa.BigInteger),
        sa.Column("max_count", sa.BigInteger),
        sa.Column("posted", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.BigInteger, nullable=False),
        sa.Column("posted_count", sa.BigInteger, nullable=False),
        sa.Column("pending_count", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.CheckConstraint(
            "limit_micros IS NULL OR posted + pending <= limit_micros", name="within_limit"
        ),
        sa.CheckConstraint(
            "max_count IS NULL OR posted_count + pending_count <= max_count", name="within_count"
        ),
        sa.CheckConstraint(
            "posted >= 0 AND pending >= 0 AND posted_count >= 0 AND pending_count >= 0",
            name="non_negative",
        ),
    )
    op.create_table(
        "budget_buckets",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("bucket", sa.BigInteger, primary_key=True),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


def _authorization_tables(op: Operations) -> None:
    op.create_table(
        "authorizations",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("agent_id", sa.Text, nullable=False),
        sa.Column("wallet_id", sa.Text, nullable=False),
        sa.Column("department_id", sa.Text),
        sa.Column("chain", sa.Text, nullable=False),
        sa.Column("vendor", sa.Text, nullable=False),
        sa.Column("asset_id", sa.Text),
        sa.Column("amount", TokenAmount, nullable=False),
        sa.Column("value_usd_micros", sa.BigInteger, nullable=False),
        sa.Column("price_atto", TokenAmount),
        sa.Column("decimals", sa.Integer),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("expires_us", sa.BigInteger),
        sa.Column("release_after_us", sa.BigInteger),
        sa.Column("finalized_us", sa.BigInteger),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("request_hash", sa.Text, nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("captured_amount", TokenAmount),
        sa.Column("captured_usd_micros", sa.BigInteger),
        sa.Column("tx_hash", sa.Text),
        sa.UniqueConstraint("agent_id", "idempotency_key", name="authorizations_idempotency"),
    )
    op.create_index("authorizations_state_expiry", "authorizations", ["state", "expires_us"])
    op.create_index("authorizations_created", "authorizations", ["created_us"])
    op.create_index("authorizations_agent_created", "authorizations", ["agent_id", "created_us"])
    op.create_table(
        "authorization_lines",
        sa.Column("authorization_id", sa.Text, primary_key=True),
        sa.Column("balance_key", sa.Text, primary_key=True),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("lock_rank", sa.Integer, nullable=False),
        sa.Column("bucket_s", sa.BigInteger),
    )
    op.create_index("authorization_lines_key", "authorization_lines", ["balance_key"])


def _audit_tables(op: Operations) -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("audit_events_at", "audit_events", ["at_us"])


def upgrade(op: Operations) -> None:
    """Create every table of the first release."""
    _config_tables(op)
    _policy_tables(op)
    _budget_tables(op)
    _authorization_tables(op)
    _audit_tables(op)
