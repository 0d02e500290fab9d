"""A thin database layer over the raw DB-API drivers (sqlite3, psycopg 3).

The drivers live in ``sqlite_db.py`` and ``pg_db.py`` and are imported only for the database
in use, so an embedded SQLite deployment never loads psycopg (start-up time).

Why not SQLAlchemy on the hot path: an authorization is a handful of short statements, and the
driver round trip is the cost that matters (raw sqlite3 ≈ 54 µs per reservation against
0.4-0.9 ms through SQLAlchemy Core on the development machines). SQLAlchemy and alembic still
own the schema and its migrations (see ``migrate.py``).

SQL is written once with ``:name`` placeholders; the PostgreSQL backend rewrites them to
``%(name)s`` (cached). Transactions are short and explicit: SQLite takes the write lock up
front (``BEGIN IMMEDIATE``) so writers queue instead of failing on upgrade; PostgreSQL runs at
READ COMMITTED and relies on conditional updates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
Params = Mapping[str, Any]
Row = tuple[Any, ...]

#: How long a writer waits for the SQLite write lock before failing (seconds).
SQLITE_BUSY_TIMEOUT_S = 30.0
#: Attempts of a transaction that failed with a retryable error (deadlock, serialization).
MAX_TX_ATTEMPTS = 5


class Tx(Protocol):
    """One open transaction."""

    def execute(self, sql: str, params: Params | None = None) -> int: ...

    def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...

    def one(self, sql: str, params: Params | None = None) -> Row | None: ...

    def all(self, sql: str, params: Params | None = None) -> list[Row]: ...

    def batch(self, statements: Sequence[tuple[str, Params]]) -> list[Row | None]:
        """Run statements in order; return each one's first row (None for no row or no
        result set)."""
        ...


class Database(Protocol):
    """A connection source with explicit transactions."""

    dialect: str

    def run(self, work: Callable[[Tx], T], *, write: bool = True, atomic: bool = True) -> T:
        """Run ``work`` in one transaction (``atomic=False``: a lone read, no BEGIN needed)."""
        ...

    def is_unique_violation(self, exc: BaseException) -> bool: ...

    def close(self) -> None: ...


#: SQLSTATEs of failures that a whole transaction may simply retry.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


def is_retryable(exc: BaseException) -> bool:
    """Deadlocks and serialization failures may be retried as a whole transaction."""
    return getattr(exc, "sqlstate", None) in RETRYABLE_SQLSTATES


def sqlite_path_from_url(url: str) -> str:
    """``sqlite:///rel/path.db`` → ``rel/path.db``; ``sqlite:////abs`` → ``/abs``."""
    rest = url.split(":///", 1)[1] if ":///" in url else ":memory:"
    return rest or ":memory:"


def postgres_conninfo_from_url(url: str) -> str:
    """Drop a SQLAlchemy driver suffix (``postgresql+psycopg://``) for libpq."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


def open_database(url: str) -> Database:
    """A :class:`Database` for a ``sqlite:///`` or ``postgresql://`` URL."""
    if url.startswith("sqlite"):
        from treasurer.adapters.sql.sqlite_db import SqliteDatabase  # noqa: PLC0415

        return SqliteDatabase(sqlite_path_from_url(url))
    if url.startswith(("postgresql", "postgres")):
        from treasurer.adapters.sql.pg_db import PostgresDatabase  # noqa: PLC0415

        return PostgresDatabase(postgres_conninfo_from_url(url))
    raise ValueError(
        f"unsupported database URL {url.split('://', maxsplit=1)[0]}://; use sqlite:/// or postgresql://"
    )
