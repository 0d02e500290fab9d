"""The audit hash chain: chain columns on ``audit_events`` and ``audit_checkpoints``.

Every new column has a default (or is NULL), so every existing insert statement, including
the one inside ``treasurer_reserve``, keeps working unchanged. The sealer fills ``seq``,
``prev_hash``, ``hash`` and the five index terms later (``adapters/sql/audit_store.py``).

``xact`` is the inserting transaction's id on PostgreSQL (``pg_current_xact_id()``), which
tells the sealer when no open transaction can still add an event that sorts before a given
one; on SQLite, where one writer commits at a time, it is always 0. Existing rows get the
migration's own transaction id (PostgreSQL) and are sealed in id order.

The chain and filter indexes are partial, over sealed events only, so the insert on the hot
path touches none of them (only ``audit_events_unsealed``, the sealer's queue); the sealer's
update does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 5

#: Columns the sealer derives for filtering (not hashed: an index, not evidence).
TERM_COLUMNS = ("agent_id", "department_id", "wallet_id", "chain", "outcome")
#: Columns written with the event that filters may use once the event is sealed.
EVENT_FILTER_COLUMNS = ("kind", "actor", "subject")


def _partial(op: Operations, name: str, columns: list[str], where: str) -> None:
    op.create_index(
        name,
        "audit_events",
        columns,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade(op: Operations) -> None:
    """Add the chain columns and indexes, and the checkpoint table."""
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("audit_events", sa.Column("seq", sa.BigInteger))
    op.add_column("audit_events", sa.Column("prev_hash", sa.Text))
    op.add_column("audit_events", sa.Column("hash", sa.Text))
    for column in TERM_COLUMNS:
        op.add_column("audit_events", sa.Column(column, sa.Text))
    if postgres:
        op.execute(
            "ALTER TABLE audit_events ADD COLUMN xact xid8 NOT NULL DEFAULT pg_current_xact_id()"
        )
    else:
        op.add_column(
            "audit_events",
            sa.Column("xact", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        )
    op.create_index(
        "audit_events_seq",
        "audit_events",
        ["seq"],
        unique=True,
        sqlite_where=sa.text("seq IS NOT NULL"),
        postgresql_where=sa.text("seq IS NOT NULL"),
    )
    _partial(op, "audit_events_unsealed", ["xact", "id"], "seq IS NULL")
    for column in EVENT_FILTER_COLUMNS:
        _partial(op, f"audit_events_{column}", [column, "id"], "seq IS NOT NULL")
    for column in TERM_COLUMNS:
        _partial(op, f"audit_events_{column}", [column, "id"], f"{column} IS NOT NULL")
    op.create_table(
        "audit_checkpoints",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("signature", sa.Text, nullable=False),
    )
