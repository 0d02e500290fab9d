"""A thin database layer over the raw DB-API drivers (sqlite3, psycopg 3).

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

import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Protocol, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from treasurer.domain.errors import StoreUnavailable

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


@lru_cache(maxsize=1024)
def _to_pyformat(sql: str) -> str:
    """``:name`` → ``%(name)s`` (and literal ``%`` doubled) for psycopg."""
    escaped = sql.replace("%", "%%")
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", escaped)


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._cur = conn.cursor()

    def execute(self, sql: str, params: Params | None = None) -> int:
        self._cur.execute(_to_pyformat(sql), params or {})
        return self._cur.rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._cur.executemany(_to_pyformat(sql), rows)

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        self._cur.execute(_to_pyformat(sql), params or {})
        row: Row | None = self._cur.fetchone()
        return row

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        self._cur.execute(_to_pyformat(sql), params or {})
        return list(self._cur.fetchall())

    def batch(self, statements: Sequence[tuple[str, Params]]) -> list[Row | None]:
        # Measured: psycopg's pipeline mode was no faster than sequential round trips on
        # loopback here (cursor setup per statement dominates); a server-side function is the
        # real one-round-trip path.
        rows: list[Row | None] = []
        for sql, params in statements:
            self._cur.execute(_to_pyformat(sql), params)
            rows.append(self._cur.fetchone() if self._cur.description is not None else None)
        return rows


_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


class PostgresDatabase:
    """PostgreSQL through a psycopg connection pool, READ COMMITTED.

    Connections are in autocommit mode; :meth:`run` opens an explicit transaction for work of
    several statements and none for a single statement.
    """

    dialect = "postgresql"

    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 16) -> None:
        self._pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=True,
            kwargs={"autocommit": True},
            timeout=30.0,
        )

    def run(self, work: Callable[[Tx], T], *, write: bool = True, atomic: bool = True) -> T:
        """``atomic=False`` is for work that is one statement: it runs in autocommit mode,
        saving the BEGIN and COMMIT round trips (a statement is atomic by itself)."""
        try:
            with self._pool.connection() as conn:
                if not atomic:
                    return work(_PgTx(conn))
                with conn.transaction():
                    return work(_PgTx(conn))
        except psycopg.OperationalError as exc:
            if is_retryable(exc):  # deadlock or serialization failure: the caller retries
                raise
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, _RETRYABLE)

    def close(self) -> None:
        self._pool.close()


def is_retryable(exc: BaseException) -> bool:
    """Deadlocks and serialization failures may be retried as a whole transaction."""
    return isinstance(exc, _RETRYABLE)


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
        return PostgresDatabase(postgres_conninfo_from_url(url))
    raise ValueError(
        f"unsupported database URL {url.split('://', maxsplit=1)[0]}://; use sqlite:/// or postgresql://"
    )
