"""The ports of notifications: where endpoints and deliveries live, and how a POST goes out.

Kept apart from :mod:`treasurer.service.ports` so the hot path's port does not grow. The
store shares the governance database (deliveries are derived from its audit events); the
sender is the only code that reaches the network (``adapters/webhook_sender.py``, httpx).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from treasurer.service.notify_events import SourceEvent
from treasurer.service.ports import AuditRecord


class DeliveryState(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # every attempt failed, or the endpoint was removed; an admin may retry


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A webhook receiver. ``events`` empty means every event type. ``secret`` signs the
    deliveries; it leaves the server once, in the answer that created the endpoint."""

    id: str
    url: str
    secret: str
    format: str
    events: tuple[str, ...]
    description: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    def wants(self, event_type: str, at: datetime) -> bool:
        """Whether an event of ``event_type`` that happened at ``at`` goes to this endpoint:
        a matching type, and not before the endpoint existed (no replay of history)."""
        return (
            self.active and at >= self.created_at and (not self.events or event_type in self.events)
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event on its way to one endpoint, with the story of its attempts."""

    id: str
    endpoint_id: str
    event_seq: int
    event: str
    body: str
    state: DeliveryState
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery the dispatcher decided to create."""

    id: str
    endpoint_id: str
    event_seq: int
    event: str
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery this worker holds the lease of, with what it needs to send it."""

    delivery: Delivery
    url: str
    secret: str
    lease_token: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one attempt, as it is recorded."""

    state: DeliveryState
    attempts: int
    at: datetime
    next_attempt_at: datetime
    status: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the receiver answered: an HTTP status, or ``error`` when there was no answer
    (refused, timed out, TLS failure ...)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


#: The dispatcher's decision for one batch: sealed events and the active endpoints in,
#: deliveries to create out. Runs inside the store's dispatch transaction.
Planner = Callable[[Sequence[SourceEvent], Sequence[Endpoint]], list[NewDelivery]]


class WebhookStore(Protocol):
    """Endpoints, deliveries and the dispatch cursor, in the governance database."""

    # -- endpoints --------------------------------------------------------------------------
    def add_endpoint(self, endpoint: Endpoint, audit: AuditRecord) -> None: ...

    def endpoint(self, endpoint_id: str) -> Endpoint | None: ...

    def endpoints(self, limit: int, after: str | None, include_disabled: bool) -> list[Endpoint]:
        """Endpoints in id order after the cursor ``after``."""
        ...

    def disable_endpoint(self, endpoint_id: str, now: datetime, audit: AuditRecord) -> bool:
        """Disable an active endpoint and mark its pending deliveries dead, in one
        transaction; False when it was disabled already."""
        ...

    # -- dispatch ---------------------------------------------------------------------------
    def dispatch(self, kinds: frozenset[str], batch: int, plan: Planner) -> tuple[int, int]:
        """One transaction: lock the cursor, read up to ``batch`` sealed events after it whose
        kind is in ``kinds``, insert the deliveries ``plan`` makes of them, and move the cursor
        past them (to the head of the chain when fewer than ``batch`` were left). Returns the
        events read and the deliveries created. Concurrent dispatchers take turns."""
        ...

    # -- delivery ---------------------------------------------------------------------------
    def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Claim]:
        """Lease up to ``limit`` pending deliveries due at ``now`` whose lease (if any) has
        run out, oldest due first; a delivery is leased to one claimer at a time."""
        ...

    def finish(self, claim: Claim, attempt: Attempt) -> bool:
        """Record an attempt if the lease is still this claim's; False when it was lost."""
        ...

    # -- reading and retrying ---------------------------------------------------------------
    def delivery(self, delivery_id: str) -> Delivery | None: ...

    def deliveries(
        self, endpoint_id: str, state: DeliveryState | None, before_seq: int | None, limit: int
    ) -> list[Delivery]:
        """One endpoint's deliveries, newest event first, before the cursor ``before_seq``."""
        ...

    def retry(self, delivery_id: str, now: datetime, audit: AuditRecord) -> Delivery | None:
        """A dead delivery of an active endpoint back to pending, due now, with a fresh count
        of attempts; None when it is not dead (or its endpoint was removed)."""
        ...

    def cursor(self) -> int:
        """The ``seq`` of the last audit event dispatched."""
        ...


class WebhookSender(Protocol):
    """POSTs one delivery; never raises for what the receiver does (that is a result)."""

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult: ...

    def close(self) -> None: ...
