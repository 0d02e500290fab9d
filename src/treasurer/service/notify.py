"""The notifier: audit events → deliveries → signed POSTs, crash-safe and at least once.

Two steps, each safe to run on any number of nodes at once and to stop at any instruction:

1. **Dispatch** (:meth:`Notifier.dispatch`). The audit log is the outbox: every change wrote
   its event in its own transaction, and the sealer gives each a gapless ``seq`` in
   commit-safe order. The dispatcher reads the sealed events after its persisted cursor,
   maps them to notices (:mod:`.notify_events`), renders one body per matching endpoint and,
   in **one** transaction, inserts those deliveries and advances the cursor. A crash before
   that commit redoes the batch; after it, the deliveries are durable. Following ``seq``
   (never the row id, which PostgreSQL assigns before commit) means a late commit can not be
   skipped.
2. **Delivery** (:meth:`Notifier.deliver`). Due deliveries are leased (``FOR UPDATE SKIP
   LOCKED`` on PostgreSQL), signed and POSTed; a 2xx answer marks them delivered, anything
   else schedules the next attempt with exponential backoff and jitter, until the last
   attempt marks them dead. A worker that dies mid-send leaves a lease that runs out, and
   another worker sends the delivery again: delivery is *at least once*, and receivers dedupe
   on the event id (the body's ``id``) or the ``Treasurer-Delivery`` header.

``treasurer serve`` runs :meth:`Notifier.run_once` (seal, dispatch, deliver) every half second.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from treasurer.service.notify_events import SOURCE_KINDS, SourceEvent, notice_of
from treasurer.service.notify_format import Backoff, headers, render, signature
from treasurer.service.notify_ports import (
    Attempt,
    Claim,
    DeliveryState,
    Endpoint,
    NewDelivery,
    SendResult,
    WebhookSender,
    WebhookStore,
)
from treasurer.service.ports import Clock

#: Sealed events read per dispatch transaction.
DISPATCH_BATCH = 500
#: Deliveries leased per claim. With the sender's 5 s timeout, one claim is sent within
#: 8 x 5 s = 40 s, inside the lease, so a slow receiver never makes a lease run out mid-batch.
CLAIM_BATCH = 8
LEASE_S = 60.0
#: Rounds per :meth:`Notifier.run_once` step, so one call is bounded however much is waiting.
MAX_ROUNDS = 20
#: ``last_error`` is kept to this many characters.
MAX_ERROR_CHARS = 500
#: How often ``treasurer serve`` runs a round.
NOTIFY_INTERVAL_S = 0.5

_logger = logging.getLogger("treasurer.notify")


def _never() -> bool:
    return False


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one :meth:`Notifier.run_once` did."""

    dispatched: int
    delivered: int
    failed: int


class Notifier:
    """Dispatch and delivery over one :class:`WebhookStore` and one :class:`WebhookSender`.

    ``seal`` (the audit trail's ``seal``) runs before each dispatch, since only sealed events
    are dispatched; ``rand`` draws the jitter (tests pin it).
    """

    def __init__(
        self,
        store: WebhookStore,
        sender: WebhookSender,
        clock: Clock,
        *,
        seal: Callable[[], object] | None = None,
        backoff: Backoff | None = None,
        batch: int = DISPATCH_BATCH,
        claim_batch: int = CLAIM_BATCH,
        lease_s: float = LEASE_S,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.sender = sender
        self.clock = clock
        self.seal = seal
        self.backoff = backoff or Backoff()
        self.batch = batch
        self.claim_batch = claim_batch
        self.lease_s = lease_s
        self.rand = rand

    # -- dispatch -------------------------------------------------------------------------------
    def plan(
        self, events: Sequence[SourceEvent], endpoints: Sequence[Endpoint]
    ) -> list[NewDelivery]:
        """The deliveries of a batch: each notice, rendered once per endpoint that wants it."""
        made: list[NewDelivery] = []
        now = self.clock.now()
        for event in events:
            notice = notice_of(event)
            if notice is None:
                continue
            for endpoint in endpoints:
                if endpoint.wants(notice.type, event.at):
                    body = render(notice, event.seq, event.at, endpoint.format)
                    made.append(
                        NewDelivery(
                            new_delivery_id(), endpoint.id, event.seq, notice.type, body, now
                        )
                    )
        return made

    def dispatch(self) -> int:
        """Turn every sealed event after the cursor into deliveries; returns how many."""
        created = 0
        for _ in range(MAX_ROUNDS):
            read, made = self.store.dispatch(SOURCE_KINDS, self.batch, self.plan)
            created += made
            if read < self.batch:
                break
        return created

    # -- delivery -------------------------------------------------------------------------------
    def deliver(self, should_stop: Callable[[], bool] = _never) -> tuple[int, int]:
        """Send every delivery that is due; returns (delivered, failed attempts).

        ``should_stop`` is asked before each send (the server is shutting down): what this
        worker claimed but did not send is claimable again once its lease runs out.
        """
        delivered = failed = 0
        for _ in range(MAX_ROUNDS):
            if should_stop():
                break
            now = self.clock.now()
            claims = self.store.claim(now, now + timedelta(seconds=self.lease_s), self.claim_batch)
            for claim in claims:
                if should_stop():
                    return delivered, failed
                if self.attempt(claim):
                    delivered += 1
                else:
                    failed += 1
            if len(claims) < self.claim_batch:
                break
        return delivered, failed

    def attempt(self, claim: Claim) -> bool:
        """Sign and send one claimed delivery and record the outcome; True when delivered."""
        delivery = claim.delivery
        body = delivery.body.encode()
        stamp = int(self.clock.now().timestamp())
        sent = headers(delivery.event, delivery.id, signature(claim.secret, stamp, body))
        try:
            result = self.sender.send(claim.url, body, sent)
        except Exception as exc:  # a sender bug must not stop the other deliveries
            _logger.exception("webhook sender failed on delivery %s", delivery.id)
            result = SendResult(None, f"sender_error: {type(exc).__name__}: {exc}")
        recorded = self.store.finish(claim, self._outcome(delivery.attempts + 1, result))
        if not recorded:
            _logger.warning("delivery %s: lease lost before its outcome was recorded", delivery.id)
        return result.ok

    def _outcome(self, attempts: int, result: SendResult) -> Attempt:
        now = self.clock.now()
        if result.ok:
            return Attempt(DeliveryState.DELIVERED, attempts, now, now, result.status, None)
        error = result.error or f"HTTP {result.status}: the receiver did not answer 2xx"
        error = error[:MAX_ERROR_CHARS]
        if attempts >= self.backoff.max_attempts:
            return Attempt(DeliveryState.DEAD, attempts, now, now, result.status, error)
        wait = timedelta(seconds=self.backoff.delay_s(attempts, self.rand()))
        return Attempt(DeliveryState.PENDING, attempts, now, now + wait, result.status, error)

    # -- the loop -------------------------------------------------------------------------------
    def run_once(self, should_stop: Callable[[], bool] = _never) -> RoundResult:
        """Seal, dispatch, deliver: one round of the background loop."""
        if self.seal is not None:
            self.seal()
        dispatched = self.dispatch()
        delivered, failed = self.deliver(should_stop)
        return RoundResult(dispatched, delivered, failed)

    def close(self) -> None:
        self.sender.close()


def new_delivery_id() -> str:
    return f"whd_{secrets.token_hex(10)}"
