"""PostgreSQL through psycopg 3: a connection pool, autocommit single statements, and
explicit READ COMMITTED transactions for work of several statements."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from treasurer.adapters.sql.db import Params, Row, Tx, is_retryable
from treasurer.domain.errors import StoreUnavailable

T = TypeVar("T")


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
        self._reads_need_tx = self._isolation() != "read committed"

    def _isolation(self) -> str:
        try:
            with self._pool.connection() as conn:
                row = conn.execute("SHOW default_transaction_isolation").fetchone()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc
        return str(row[0]) if row else ""

    def run(self, work: Callable[[Tx], T], *, write: bool = True, atomic: bool = True) -> T:
        """``atomic=False`` is for work that is one statement: it runs in autocommit mode,
        saving the BEGIN and COMMIT round trips (a statement is atomic by itself).

        Reads (``write=False``) run in autocommit mode too at READ COMMITTED, the server
        default: there every statement takes its own snapshot even inside a transaction, so
        BEGIN and COMMIT around reads bought two round trips and no consistency. A server
        configured for a stricter default isolation keeps read transactions.
        """
        try:
            with self._pool.connection() as conn:
                if not atomic or (not write and not self._reads_need_tx):
                    return work(_PgTx(conn))
                with conn.transaction():
                    return work(_PgTx(conn))
        except psycopg.OperationalError as exc:
            if is_retryable(exc):  # deadlock or serialization failure: the caller retries
                raise
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction around the ``with`` body, for work that must hold its row locks
        while something outside the database happens (a nonce across a broadcast). The body
        runs once: unlike :meth:`run`'s work, it is not retried."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _PgTx(conn)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def is_retryable(self, exc: BaseException) -> bool:
        return is_retryable(exc)

    def close(self) -> None:
        self._pool.close()
