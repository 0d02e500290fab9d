"""The audit trail becomes append-only in the database itself, and purges are recorded.

Why: the hash chain makes tampering *evident*; these triggers make the casual kind
*impossible*. Anyone with plain write access (a leaked application credential, a mistaken
``UPDATE`` in a console) can no longer change or delete a sealed event or a checkpoint; only
someone who can also change the schema (``DROP TRIGGER``) can, and the chain still names what
they did.

- ``audit_events``: an UPDATE is allowed only on an unsealed row (``seq`` and ``hash`` still
  NULL) and only if it leaves the event's content (id, at_us, kind, actor, subject, payload,
  xact) as it was: that is the sealer setting ``seq``, ``prev_hash``, ``hash`` and the index
  terms (``adapters/sql/audit_store.py``). A DELETE is allowed only for a sealed row whose
  ``seq`` is at or below the highest ``upto_seq`` in ``audit_purges``: the purge job inserts
  its record first, in the same transaction as the delete.
- ``audit_checkpoints``: never updated; a row is deleted only below the highest purge's
  ``upto_seq`` (the checkpoint *at* it is the purge's signed anchor and stays).
- ``audit_purges`` (new): the record of every purge (who, when, up to which seq and hash,
  how many events, which checkpoint anchors it); never updated or deleted.
- PostgreSQL also refuses ``TRUNCATE`` of the three tables.

A later migration that must rewrite these tables drops and recreates the triggers itself
(:data:`GUARDS` names them). On SQLite, a table rebuild (alembic's batch mode) drops a
table's triggers with it, so such a migration must recreate them too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.operations import Operations

REVISION = 11

_EVENTS_MSG = "audit_events are append-only"
_CHECKPOINTS_MSG = "audit_checkpoints are append-only"
_PURGES_MSG = "audit_purges are append-only"
_MAX_PURGED = "(SELECT coalesce(max(upto_seq), 0) FROM audit_purges)"
_CONTENT = ("id", "at_us", "kind", "actor", "subject", "payload", "xact")

#: (trigger, table) of every guard, per dialect: what a test (or an attacker with DDL rights)
#: must drop to tamper with the tables.
GUARDS: dict[str, tuple[tuple[str, str], ...]] = {
    "sqlite": (
        ("audit_events_sealed_immutable", "audit_events"),
        ("audit_events_content_immutable", "audit_events"),
        ("audit_events_no_delete", "audit_events"),
        ("audit_checkpoints_no_update", "audit_checkpoints"),
        ("audit_checkpoints_no_delete", "audit_checkpoints"),
        ("audit_purges_no_update", "audit_purges"),
        ("audit_purges_no_delete", "audit_purges"),
    ),
    "postgresql": (
        ("audit_events_append_only", "audit_events"),
        ("audit_events_no_truncate", "audit_events"),
        ("audit_checkpoints_append_only", "audit_checkpoints"),
        ("audit_checkpoints_no_truncate", "audit_checkpoints"),
        ("audit_purges_append_only", "audit_purges"),
        ("audit_purges_no_truncate", "audit_purges"),
    ),
}


def _raise(message: str) -> str:
    return f"BEGIN SELECT RAISE(ABORT, '{message}'); END"


_CHANGED = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _CONTENT)
SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_events_sealed_immutable BEFORE UPDATE ON audit_events "
    f"WHEN OLD.seq IS NOT NULL OR OLD.hash IS NOT NULL {_raise(_EVENTS_MSG)}",
    f"CREATE TRIGGER audit_events_content_immutable BEFORE UPDATE ON audit_events "
    f"WHEN {_CHANGED} {_raise(_EVENTS_MSG)}",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    f"WHEN OLD.seq IS NULL OR OLD.seq > {_MAX_PURGED} {_raise(_EVENTS_MSG)}",
    f"CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints "
    f"{_raise(_CHECKPOINTS_MSG)}",
    "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints "
    f"WHEN OLD.seq >= {_MAX_PURGED} {_raise(_CHECKPOINTS_MSG)}",
    f"CREATE TRIGGER audit_purges_no_update BEFORE UPDATE ON audit_purges {_raise(_PURGES_MSG)}",
    f"CREATE TRIGGER audit_purges_no_delete BEFORE DELETE ON audit_purges {_raise(_PURGES_MSG)}",
)

_PG_SAME = (
    "("
    + ", ".join(f"NEW.{c}" for c in _CONTENT)
    + ") IS NOT DISTINCT FROM ("
    + ", ".join(f"OLD.{c}" for c in _CONTENT)
    + ")"
)
POSTGRES_FUNCTIONS = (
    f"""
CREATE OR REPLACE FUNCTION treasurer_audit_events_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.seq IS NULL AND OLD.hash IS NULL AND {_PG_SAME} THEN
            RETURN NEW;  -- the sealer linking an unsealed event
        END IF;
        RAISE EXCEPTION '{_EVENTS_MSG}: event % cannot be changed', OLD.id;
    END IF;
    IF OLD.seq IS NOT NULL AND OLD.seq <= {_MAX_PURGED} THEN
        RETURN OLD;  -- a recorded purge
    END IF;
    RAISE EXCEPTION '{_EVENTS_MSG}: event % cannot be deleted', OLD.id;
END
$$
""",
    f"""
CREATE OR REPLACE FUNCTION treasurer_audit_checkpoints_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.seq < {_MAX_PURGED} THEN
        RETURN OLD;  -- a checkpoint of purged events (the purge's anchor stays)
    END IF;
    RAISE EXCEPTION '{_CHECKPOINTS_MSG}: checkpoint % cannot be changed', OLD.seq;
END
$$
""",
    """
CREATE OR REPLACE FUNCTION treasurer_audit_refuse() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END
$$
""",
)
POSTGRES_TRIGGERS = (
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION treasurer_audit_events_guard()",
    "CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints "
    "FOR EACH ROW EXECUTE FUNCTION treasurer_audit_checkpoints_guard()",
    "CREATE TRIGGER audit_purges_append_only BEFORE UPDATE OR DELETE ON audit_purges "
    "FOR EACH ROW EXECUTE FUNCTION treasurer_audit_refuse()",
    *(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION treasurer_audit_refuse()"
        for table in ("audit_events", "audit_checkpoints", "audit_purges")
    ),
)


def drop_guards(dialect: str) -> list[str]:
    """The statements that remove every guard (tests simulating an attacker with DDL rights)."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER {name} ON {table}" for name, table in GUARDS[dialect]]
    return [f"DROP TRIGGER {name}" for name, _table in GUARDS[dialect]]


def upgrade(op: Operations) -> None:
    """Create ``audit_purges`` and the guards."""
    op.create_table(
        "audit_purges",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("upto_seq", sa.BigInteger, nullable=False, unique=True),
        sa.Column("upto_hash", sa.Text, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.Column("cutoff_us", sa.BigInteger, nullable=False),
        sa.Column("checkpoint_seq", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*POSTGRES_FUNCTIONS, *POSTGRES_TRIGGERS):
            op.execute(statement)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)
