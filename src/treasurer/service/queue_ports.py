"""The port of the persistent payment queue (delay and approval tiers).

A queued payment is one row of the payment store in state ``queued`` whose authorization holds
its reservation. This port adds what executing the queue across several nodes needs on top of
:class:`~treasurer.service.ports.PaymentStore`: claiming rows exactly once (``queued →
created`` under a claim token), taking over the claims of a node that died, and finding the
rows the executor must finish (authorization settled while the payment waited; a cancel whose
release was interrupted). See :mod:`treasurer.service.payments_queue` for how it is used.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Protocol

from treasurer.domain.payment import Payment

#: The claim token of a payment whose transaction may be on its way: never taken over.
SENDING: Final = "sending"


class PaymentQueueStore(Protocol):
    def claim_ready(self, limit: int, now: datetime, token: str) -> list[Payment]:
        """Move up to ``limit`` queued payments whose authorization is ``pending`` (approved,
        or released after its delay) to ``created`` under ``token``, oldest first, each with a
        ``payment.claimed`` audit event, in one transaction. Concurrent callers get disjoint
        sets (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the single writer on SQLite; the update
        is guarded on ``queued`` either way)."""
        ...

    def reclaim_stale(
        self, limit: int, now: datetime, stale_before: datetime, token: str
    ) -> list[Payment]:
        """Take over claims older than ``stale_before`` that never reached the point of
        sending (``created``, no transaction id, token other than :data:`SENDING`): their
        holder died or gave up before anything could leave. Audited as ``payment.reclaimed``."""
        ...

    def mark_sending(self, payment_id: str, token: str, now: datetime) -> bool:
        """Swap the claim ``token`` for :data:`SENDING`; False when the claim is no longer
        ours (taken over after a stall), in which case nothing may be sent."""
        ...

    def settled_queued(self, limit: int) -> list[tuple[Payment, str]]:
        """Queued payments whose authorization no longer reserves anything (rejected,
        expired, voided ...), each with that authorization state."""
        ...

    def unreleased_cancelled(self, limit: int) -> list[Payment]:
        """Cancelled payments whose authorization still reserves (a cancel interrupted
        between its two steps)."""
        ...
