"""Batched reservations on PostgreSQL: the hot-budget path.

Every spend claims the org's budget row (and its department's). On PostgreSQL that row stays
locked from a reservation's conditional update until its commit has flushed the WAL, so one
reservation per transaction lets the whole deployment, all nodes together, reserve on one org
budget about once per WAL flush. :class:`ReserveBatcher` is a **batching leader** per process,
the same group commit the SQLite adapter uses: a reservation joins a queue; whoever holds the
process's batch lock sends what is queued, oldest first, in batches of up to :data:`MAX_BATCH`,
each as one ``treasurer_reserve_batch`` call (migration v0010): one round trip, one lock of the
hot rows, one commit for the lot, until its own is sent; then it hands the lead to the oldest
waiting reservation. The others wait on their own reservation's event, not on the lock (which
would wake them in no particular order). A lone reservation goes at once.

Exactness is unchanged: each item is checked with the same condition as a lone reservation,
against the balances as the items before it in the batch left them, and taken whole or not at
all; the CHECK constraints still hold every row. What the batch changes is how long the hot
rows are held: one lock, four row writes and one commit per batch instead of per reservation.
Trade-offs, against escrow slices of the budget held per node: nothing is ever set aside, so no
headroom is stranded on a node (a spend that fits is never denied because another node holds a
slice) and a dead node holds nothing that must be reclaimed after a lease (its open
transaction dies with its connection); the price is that the hot row is still taken by one
node's batch at a time, so nodes take turns per batch rather than per reservation.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treasurer.adapters.sql.codec import dumps
from treasurer.adapters.sql.db import Database, Row, Tx, is_retryable

#: Most reservations in one call. Each is a subtransaction; PostgreSQL tracks up to 64 per
#: transaction cheaply (beyond that, every other session's snapshots get slower).
MAX_BATCH = 32
#: How often a waiting reservation checks that some thread is still leading (seconds).
LEADER_RECHECK_S = 0.005


class ClaimRejected(Exception):
    """A conditional update matched no row: the claim does not fit (rolls the item back)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class DuplicateKey(Exception):
    """The authorization's idempotency key is taken: the item was rolled back, the first
    result stands (the caller reads it)."""


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One reservation, as ``treasurer_reserve`` takes it (JSON-ready parts)."""

    auth: dict[str, Any]
    lines: list[dict[str, Any]]
    audit: dict[str, Any]
    claims: list[dict[str, Any]]
    #: (lock rank, key) of each claim, for the batch-wide lock order.
    lock_order: list[tuple[int, str]]


@dataclass(eq=False)
class _Job:
    item: BatchItem
    done: bool = False
    rows: list[Row] = field(default_factory=list)
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def finish(self, error: BaseException | None = None) -> None:
        self.error, self.done = error, True
        self.finished.set()


class ReserveBatcher:
    """Groups the concurrent reservations of one process into ``treasurer_reserve_batch``."""

    def __init__(self, db: Database, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max = max_batch
        self._queue: list[_Job] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()

    def reserve(self, item: BatchItem) -> list[Row]:
        """The balance rows after the reservation (claim order); raises
        :class:`ClaimRejected`, :class:`DuplicateKey`, or the batch's database error."""
        job = _Job(item)
        with self._queue_lock:
            self._queue.append(job)
        while not job.done:
            if self._leader.acquire(blocking=False):
                try:
                    self._lead_until(job)
                finally:
                    self._leader.release()
                self._wake_next()
            else:
                # A leader is sending; it sends ours or hands the lead on by waking us. The
                # timeout only covers a leader that left just before our job was queued.
                job.finished.wait(LEADER_RECHECK_S)
                if not job.done:
                    job.finished.clear()
        if job.error is not None:
            raise job.error
        return job.rows

    def _lead_until(self, job: _Job) -> None:
        """Send batches, oldest first, until ``job`` is sent (so a leader's own wait is
        bounded by the queue ahead of it, never by the load behind it)."""
        while not job.done:
            with self._queue_lock:
                group, self._queue = self._queue[: self._max], self._queue[self._max :]
            if not group:  # cannot happen: ``job`` is queued until sent
                return
            self._send(group)

    def _wake_next(self) -> None:
        """Hand the lead to the oldest waiting reservation, if any."""
        with self._queue_lock:
            waiting = self._queue[0] if self._queue else None
        if waiting is not None:
            waiting.finished.set()

    def _send(self, group: list[_Job]) -> None:
        try:
            answers = self._db.run(lambda tx: _call(tx, [j.item for j in group]), atomic=False)
        except Exception as exc:  # the batch is one statement: nothing of it was committed
            if len(group) > 1 and not is_retryable(exc):
                # One request's own failure (bad data, a duplicate key committed meanwhile by
                # another node) must not fail the others: each again, alone.
                for job in group:
                    self._send([job])
                return
            error: BaseException = exc
            if self._db.is_unique_violation(exc):
                error = DuplicateKey(str(exc))
            for job in group:
                job.finish(error)
            return
        except BaseException as exc:
            for job in group:
                job.finish(exc)
            raise
        if len(answers) != len(group):  # cannot happen: one answer per item, in order
            failure = RuntimeError(f"{len(answers)} answers for {len(group)} reservations")
            for job in group:
                job.finish(failure)
            return
        for job, answer in zip(group, answers, strict=True):
            if "rows" in answer:
                job.rows = [tuple(values) for values in answer["rows"]]
                job.finish()
            elif "rejected" in answer:
                job.finish(ClaimRejected(str(answer["rejected"])))
            else:
                job.finish(DuplicateKey(str(answer.get("duplicate", ""))))


def _call(tx: Tx, items: Sequence[BatchItem]) -> list[dict[str, Any]]:
    locks: dict[tuple[int, str], dict[str, Any]] = {}
    for item in items:
        for order, claim in zip(item.lock_order, item.claims, strict=True):
            locks.setdefault(order, claim)
    row = tx.one(
        "SELECT treasurer_reserve_batch(CAST(:items AS jsonb), CAST(:locks AS jsonb))",
        {
            "items": dumps(
                [
                    {"auth": i.auth, "lines": i.lines, "audit": i.audit, "claims": i.claims}
                    for i in items
                ]
            ),
            "locks": dumps([locks[order] for order in sorted(locks)]),
        },
    )
    assert row is not None
    answers: list[dict[str, Any]] = row[0]
    return answers
