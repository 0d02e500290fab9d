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
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from treasurer.domain.errors import StoreUnavailable

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

    def transaction(self, *, write: bool = True, atomic: bool = True) -> Any: ...

    def is_unique_violation(self, exc: BaseException) -> bool: ...

    def close(self) -> None: ...


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Params | None = None) -> int:
        return self._conn.execute(sql, params or {}).rowcount

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        self._conn.executemany(sql, rows)

    def one(self, sql: str, params: Params | None = None) -> Row | None:
        row: Row | None = self._conn.execute(sql, params or {}).fetchone()
        return row

    def all(self, sql: str, params: Params | None = None) -> list[Row]:
        return list(self._conn.execute(sql, params or {}).fetchall())

    def batch(self, statements: Sequence[tuple[str, Params]]) -> list[Row | None]:
        return [self._conn.execute(sql, params).fetchone() for sql, params in statements]


class SqliteDatabase:
    """SQLite in WAL mode; one connection per thread, ``BEGIN IMMEDIATE`` for writes.

    Writers of one process queue on a Python lock before taking SQLite's write lock: SQLite's
    own busy handler sleeps and retries, which turns contention between threads into
    latency spikes. Other processes still queue on SQLite's lock (busy timeout).
    """

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=SQLITE_BUSY_TIMEOUT_S,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def transaction(self, *, write: bool = True, atomic: bool = True) -> Iterator[Tx]:
        conn = self._conn()
        if not write and not atomic:  # one read statement is atomic on its own
            yield _SqliteTx(conn)
            return
        if not write:
            conn.execute("BEGIN")
            try:
                yield _SqliteTx(conn)
            finally:
                conn.execute("COMMIT")
            return
        with self._write_lock:
            yield from self._write_transaction(conn)

    def _write_transaction(self, conn: sqlite3.Connection) -> Iterator[Tx]:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                conn.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:  # database is locked beyond the timeout
                if attempt == MAX_TX_ATTEMPTS - 1:
                    raise StoreUnavailable(f"SQLite is busy: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))
        try:
            yield _SqliteTx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()


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
    """PostgreSQL through a psycopg connection pool, READ COMMITTED."""

    dialect = "postgresql"

    def __init__(self, conninfo: str, *, min_size: int = 1, max_size: int = 16) -> None:
        self._pool = ConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            open=True,
            kwargs={"autocommit": False},
            timeout=30.0,
        )

    @contextmanager
    def transaction(self, *, write: bool = True, atomic: bool = True) -> Iterator[Tx]:
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
        except psycopg.OperationalError as exc:
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
        return SqliteDatabase(sqlite_path_from_url(url))
    if url.startswith(("postgresql", "postgres")):
        return PostgresDatabase(postgres_conninfo_from_url(url))
    raise ValueError(
        f"unsupported database URL {url.split('://', maxsplit=1)[0]}://; use sqlite:/// or postgresql://"
    )
