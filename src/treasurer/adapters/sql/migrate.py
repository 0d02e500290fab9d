"""Run the versioned migrations in ``migrations/`` against a database URL.

alembic's operations give one migration text for SQLite and PostgreSQL; the list of revisions
is the ordered modules of the package (simpler than alembic's script directory, and nothing to
configure). Applied revisions are recorded in ``schema_version``. On PostgreSQL an advisory
lock makes concurrent starts of several nodes safe: one migrates, the others wait.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations

from treasurer.adapters.sql import migrations
from treasurer.adapters.sql.db import postgres_conninfo_from_url

_MIGRATION_LOCK_ID = 7_420_001


def _revisions() -> list[ModuleType]:
    names = sorted(
        m.name for m in pkgutil.iter_modules(migrations.__path__) if m.name.startswith("v")
    )
    modules = [importlib.import_module(f"{migrations.__name__}.{name}") for name in names]
    return sorted(modules, key=lambda m: int(m.REVISION))


def _engine_url(url: str) -> str:
    if url.startswith(("postgresql", "postgres")):
        return "postgresql+psycopg://" + postgres_conninfo_from_url(url).split("://", 1)[1]
    return url


def current_revision(conn: sa.Connection) -> int:
    inspector = sa.inspect(conn)
    if not inspector.has_table("schema_version"):
        return 0
    value = conn.execute(sa.text("SELECT max(revision) FROM schema_version")).scalar()
    return int(value or 0)


def migrate(url: str) -> int:
    """Apply every pending revision; return the schema revision now in force."""
    engine = sa.create_engine(_engine_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_ID})"))
            conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS schema_version "
                    "(revision INTEGER PRIMARY KEY, applied_us BIGINT NOT NULL)"
                )
            )
            done = current_revision(conn)
            op = Operations(MigrationContext.configure(conn))
            for module in _revisions():
                revision = int(module.REVISION)
                if revision <= done:
                    continue
                module.upgrade(op)
                conn.execute(
                    sa.text(
                        "INSERT INTO schema_version (revision, applied_us) "
                        "VALUES (:r, CAST(strftime('%s','now') AS INTEGER) * 1000000)"
                        if conn.dialect.name == "sqlite"
                        else "INSERT INTO schema_version (revision, applied_us) "
                        "VALUES (:r, (extract(epoch from now()) * 1000000)::bigint)"
                    ),
                    {"r": revision},
                )
                done = revision
            return done
    finally:
        engine.dispose()
