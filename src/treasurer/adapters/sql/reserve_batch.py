"""Batched reservations on PostgreSQL: the hot-budget path.

Every spend claims the org's budget row (and its department's). On PostgreSQL that row stays
locked from a reservation's conditional update until its commit has flushed the WAL, so one
reservation per transaction lets the whole deployment, all nodes together, reserve on one org
budget about once per WAL flush. :class:`ReserveBatcher` is a **batching leader** per process,
the same group commit the SQLite adapter uses: a reservation joins a queue; whoever holds the
process's batch lock takes everything queued (up to :data:`MAX_BATCH`) and sends it as one
``treasurer_reserve_batch`` call (migration v0010): one round trip, one lock of the hot rows,
one commit for the lot. A lone reservation goes at once and waits for nobody.

Exactness is unchanged: each item is the same conditional reservation, all or nothing, in its
own subtransaction; the CHECK constraints still hold every row. What the batch changes is only
who pays the lock and the flush. Trade-offs, against escrow slices of the budget held per
node: nothing is ever set aside, so no headroom is stranded on a node (a spend that fits is
never denied because another node holds a slice) and a dead node holds nothing that must be
reclaimed after a lease (its open transaction dies with its connection); the price is that the
hot row is still taken by one node's batch at a time, so nodes take turns per batch rather
than per reservation.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treasurer.adapters.sql.codec import dumps
from treasurer.adapters.sql.db import Database, Row, Tx

#: Most reservations in one call. Each is a subtransaction; PostgreSQL tracks up to 64 per
#: transaction cheaply (beyond that, every other session's snapshots get slower).
MAX_BATCH = 32


class ClaimRejected(Exception):
    """A conditional update matched no row: the claim does not fit (rolls the item back)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class DuplicateKey(Exception):
    """The authorization's idempotency key is taken: the item was rolled back, the first
    result stands (the caller reads it)."""


class ItemFailed(Exception):
    """This reservation failed on its own (the others of its batch did not) and was rolled
    back; ``sqlstate`` says why, so deadlocks and serialization failures can be retried."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(f"the reservation failed: {message} (SQLSTATE {sqlstate})")
        self.sqlstate = sqlstate


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
        with self._leader:
            # Nobody sent it while we waited: lead batches, oldest first, until ours is sent
            # (more than MAX_BATCH may be queued ahead of it).
            while not job.done:
                with self._queue_lock:
                    group, self._queue = self._queue[: self._max], self._queue[self._max :]
                self._send(group)
        if job.error is not None:
            raise job.error
        return job.rows

    def _send(self, group: list[_Job]) -> None:
        try:
            answers = self._db.run(lambda tx: _call(tx, [j.item for j in group]), atomic=False)
        except BaseException as exc:  # the whole call failed: nothing of it was committed
            for job in group:
                job.error, job.done = exc, True
            return
        if len(answers) != len(group):  # cannot happen: one answer per item, in order
            failure = RuntimeError(f"{len(answers)} answers for {len(group)} reservations")
            for job in group:
                job.error, job.done = failure, True
            return
        for job, answer in zip(group, answers, strict=True):
            if "rows" in answer:
                job.rows = [tuple(values) for values in answer["rows"]]
            elif "rejected" in answer:
                job.error = ClaimRejected(str(answer["rejected"]))
            elif "duplicate" in answer:
                job.error = DuplicateKey(str(answer["duplicate"]))
            else:
                job.error = ItemFailed(str(answer.get("error")), str(answer.get("sqlstate")))
            job.done = True


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
