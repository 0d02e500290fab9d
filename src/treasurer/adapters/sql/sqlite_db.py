"""SQLite (WAL) with group commit: concurrent writers share one transaction.

A commit is the expensive part of a short write on SQLite (every touched page goes to the WAL),
and SQLite has one writer at a time anyway. So writers of one process combine: each queues its
work; whoever holds the write lock runs every queued piece of work inside one ``BEGIN
IMMEDIATE`` … ``COMMIT``, each under its own ``SAVEPOINT`` so one failing piece (a budget that
does not fit) rolls back alone. A lone writer pays nothing extra; under load one commit serves
many authorizations. Other processes still queue on SQLite's own lock (busy timeout).

Reads use one connection per thread and never wait for the writer (WAL snapshot isolation).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, SQLITE_BUSY_TIMEOUT_S, Params, Row, Tx
from treasurer.domain.errors import StoreUnavailable

T = TypeVar("T")
#: Most pieces of work one commit carries (bounds the latency of the first in a batch).
MAX_GROUP = 64


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


@dataclass(eq=False)
class _Job:
    work: Callable[[Tx], Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class SqliteDatabase:
    """SQLite in WAL mode: per-thread read connections, one group-committing writer."""

    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Job] = []
        self._writer: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=SQLITE_BUSY_TIMEOUT_S
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._all.append(conn)
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def run(self, work: Callable[[Tx], T], *, write: bool = True, atomic: bool = True) -> T:
        if write:
            return self._run_write(work)
        conn = self._reader()
        if not atomic:  # one read statement is atomic on its own
            return work(_SqliteTx(conn))
        conn.execute("BEGIN")
        try:
            return work(_SqliteTx(conn))
        finally:
            conn.execute("COMMIT")

    def _run_write(self, work: Callable[[Tx], T]) -> T:
        job = _Job(work)
        with self._queue_lock:
            self._queue.append(job)
        with self._write_lock:
            if not job.done:  # nobody committed it for us while we waited: lead a group
                with self._queue_lock:
                    group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
                self._commit_group(group)
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def _commit_group(self, group: list[_Job]) -> None:
        if self._writer is None:
            self._writer = self._connect()
        conn = self._writer
        try:
            self._begin(conn)
        except StoreUnavailable as exc:
            for job in group:
                job.error, job.done = exc, True
            return
        tx = _SqliteTx(conn)
        if len(group) == 1:  # alone: a failure rolls back the transaction, no savepoint needed
            job = group[0]
            try:
                job.result = job.work(tx)
            except BaseException as exc:
                conn.execute("ROLLBACK")
                job.error, job.done = exc, True
                return
        else:
            for job in group:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.work(tx)
                except BaseException as exc:  # isolated: only this job's writes are undone
                    conn.execute("ROLLBACK TO job")
                    job.error = exc
                conn.execute("RELEASE job")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"SQLite commit failed: {exc}")
            for job in group:
                job.error = job.error or failure
        for job in group:
            job.done = True

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:  # locked by another process past the timeout
                if attempt == MAX_TX_ATTEMPTS - 1:
                    raise StoreUnavailable(f"SQLite is busy: {exc}") from exc
                time.sleep(0.01 * (attempt + 1))

    def is_unique_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def close(self) -> None:
        with self._write_lock, self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
            self._writer = None
        self._local = threading.local()
