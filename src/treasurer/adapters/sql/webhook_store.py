"""``SqlWebhookStore``: the :class:`~treasurer.service.notify_ports.WebhookStore` over SQLite or
PostgreSQL, sharing the governance store's :class:`~treasurer.adapters.sql.db.Database`.

**Dispatch** is one transaction: lock the cursor row (``FOR UPDATE`` on PostgreSQL; SQLite's
single writer on SQLite), read the sealed events after it, insert the deliveries the service
planned, move the cursor. A second dispatcher waits on the lock, then starts from the moved
cursor, so no event is dispatched twice (and ``UNIQUE (endpoint_id, event_seq)`` would refuse
it anyway).

**Claims** lease due deliveries: PostgreSQL picks them with ``FOR UPDATE SKIP LOCKED``, so
concurrent nodes take disjoint sets without waiting on each other; the lease (a time and a
random token) keeps a claimed delivery away from other claimers until it runs out, and the
outcome is recorded only by the holder of the token.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from treasurer.adapters.sql.codec import dumps, from_us, from_us_required, to_us
from treasurer.adapters.sql.config_store import write_audit
from treasurer.adapters.sql.db import MAX_TX_ATTEMPTS, Database, Row, Tx, is_retryable
from treasurer.domain.errors import StoreUnavailable
from treasurer.service.notify_events import SourceEvent
from treasurer.service.notify_ports import (
    Attempt,
    Claim,
    Delivery,
    DeliveryState,
    Endpoint,
    NewDelivery,
    Planner,
)
from treasurer.service.ports import AuditRecord

T = TypeVar("T")

#: The payment pipeline authorizes under ``pay:<its own idempotency key>`` (service/payments.py),
#: and the payment row exists before its authorization: that is how an authorization event
#: finds its payment without racing the payment's next transition.
PAYMENT_KEY_PREFIX = "pay:"

_ENDPOINT_COLUMNS = (
    "id, url, secret, format, events, description, created_us, created_by, disabled_us"
)
_DELIVERY_COLUMNS = (
    "id, endpoint_id, event_seq, event, body, state, attempts, created_us, next_attempt_us, "
    "last_attempt_us, last_status, last_error, delivered_us"
)
_EVENT_COLUMNS = (
    "seq, id, at_us, kind, actor, subject, payload, agent_id, department_id, wallet_id, chain"
)
_INSERT_DELIVERY = (
    "INSERT INTO webhook_deliveries (id, endpoint_id, event_seq, event, body, state, attempts, "
    "created_us, next_attempt_us) VALUES (:id, :endpoint_id, :event_seq, :event, :body, "
    "'pending', 0, :now, :now) ON CONFLICT (endpoint_id, event_seq) DO NOTHING"
)
_DUE = (
    "SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id "
    "WHERE d.state = 'pending' AND d.next_attempt_us <= :now "
    "AND (d.lease_until_us IS NULL OR d.lease_until_us <= :now) AND e.disabled_us IS NULL "
    "ORDER BY d.next_attempt_us, d.event_seq, d.id LIMIT :limit"
)
_LOCK_DUE = {"postgresql": " FOR UPDATE OF d SKIP LOCKED", "sqlite": ""}


def _endpoint(row: Row) -> Endpoint:
    events = json.loads(row[4])
    return Endpoint(
        id=row[0],
        url=row[1],
        secret=row[2],
        format=row[3],
        events=tuple(str(e) for e in events) if isinstance(events, list) else (),
        description=row[5] or "",
        created_at=from_us_required(row[6]),
        created_by=row[7],
        disabled_at=from_us(row[8]),
    )


def _delivery(row: Row) -> Delivery:
    return Delivery(
        id=row[0],
        endpoint_id=row[1],
        event_seq=int(row[2]),
        event=row[3],
        body=row[4],
        state=DeliveryState(row[5]),
        attempts=int(row[6]),
        created_at=from_us_required(row[7]),
        next_attempt_at=from_us_required(row[8]),
        last_attempt_at=from_us(row[9]),
        last_status=None if row[10] is None else int(row[10]),
        last_error=row[11],
        delivered_at=from_us(row[12]),
    )


def _payload(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _in(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, Any]]:
    names = {f"{prefix}{i}": value for i, value in enumerate(values)}
    return ", ".join(f":{name}" for name in names), names


class SqlWebhookStore:
    """Webhook endpoints, deliveries and the dispatch cursor in SQL."""

    def __init__(self, database: Database) -> None:
        self.db = database
        self.dialect = database.dialect

    def _run(self, work: Callable[[Tx], T], *, write: bool = True) -> T:
        for attempt in range(MAX_TX_ATTEMPTS):
            try:
                return self.db.run(work, write=write)
            except Exception as exc:
                if not is_retryable(exc) or attempt == MAX_TX_ATTEMPTS - 1:
                    raise
        raise StoreUnavailable("transaction kept failing with retryable errors")

    # -- endpoints ------------------------------------------------------------------------------
    def add_endpoint(self, endpoint: Endpoint, audit: AuditRecord) -> None:
        params = {
            "id": endpoint.id,
            "url": endpoint.url,
            "secret": endpoint.secret,
            "format": endpoint.format,
            "events": dumps(list(endpoint.events)),
            "description": endpoint.description,
            "created_us": to_us(endpoint.created_at),
            "created_by": endpoint.created_by,
        }

        def work(tx: Tx) -> None:
            tx.execute(
                "INSERT INTO webhook_endpoints (id, url, secret, format, events, description, "
                "created_us, created_by) VALUES (:id, :url, :secret, :format, :events, "
                ":description, :created_us, :created_by)",
                params,
            )
            write_audit(tx, audit, endpoint.created_at)

        self._run(work)

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        row = self._run(
            lambda tx: tx.one(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = :id",
                {"id": endpoint_id},
            ),
            write=False,
        )
        return _endpoint(row) if row is not None else None

    def endpoints(self, limit: int, after: str | None, include_disabled: bool) -> list[Endpoint]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if not include_disabled:
            where.append("disabled_us IS NULL")
        if after is not None:
            where.append("id > :after")
            params["after"] = after
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints{clause} ORDER BY id "
                "LIMIT :limit",
                params,
            ),
            write=False,
        )
        return [_endpoint(r) for r in rows]

    def disable_endpoint(self, endpoint_id: str, now: datetime, audit: AuditRecord) -> bool:
        params = {"id": endpoint_id, "now": to_us(now)}

        def work(tx: Tx) -> bool:
            changed = tx.execute(
                "UPDATE webhook_endpoints SET disabled_us = :now "
                "WHERE id = :id AND disabled_us IS NULL",
                params,
            )
            if changed != 1:
                return False
            tx.execute(
                "UPDATE webhook_deliveries SET state = 'dead', lease_until_us = NULL, "
                "lease_token = NULL, last_error = 'endpoint_removed: the webhook was removed "
                "before this delivery succeeded' WHERE endpoint_id = :id AND state = 'pending'",
                params,
            )
            write_audit(tx, audit, now)
            return True

        return self._run(work)

    # -- dispatch -------------------------------------------------------------------------------
    def cursor(self) -> int:
        row = self._run(
            lambda tx: tx.one("SELECT seq FROM webhook_cursor WHERE name = 'dispatch'"),
            write=False,
        )
        return int(row[0]) if row is not None else 0

    def dispatch(self, kinds: frozenset[str], batch: int, plan: Planner) -> tuple[int, int]:
        if not self._behind():  # the common tick: nothing new, so no write transaction
            return 0, 0
        return self._run(lambda tx: self._dispatch(tx, kinds, batch, plan))

    def _behind(self) -> bool:
        """Whether sealed events lie past the cursor (a read; the dispatch re-checks)."""
        row = self._run(
            lambda tx: tx.one(
                "SELECT (SELECT seq FROM webhook_cursor WHERE name = 'dispatch'), "
                "(SELECT max(seq) FROM audit_events)"
            ),
            write=False,
        )
        return row is not None and row[1] is not None and int(row[1]) > int(row[0] or 0)

    def _dispatch(
        self, tx: Tx, kinds: frozenset[str], batch: int, plan: Planner
    ) -> tuple[int, int]:
        lock = " FOR UPDATE" if self.dialect == "postgresql" else ""
        row = tx.one(f"SELECT seq FROM webhook_cursor WHERE name = 'dispatch'{lock}")
        cursor = int(row[0]) if row is not None else 0
        head_row = tx.one("SELECT max(seq) FROM audit_events")
        head = int(head_row[0]) if head_row is not None and head_row[0] is not None else 0
        if head <= cursor:
            return 0, 0
        endpoints = [
            _endpoint(r)
            for r in tx.all(
                f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints "
                "WHERE disabled_us IS NULL ORDER BY id"
            )
        ]
        read = created = 0
        upto = head
        if endpoints:  # nobody listens: move past the events without reading them
            placeholders, names = _in("k", sorted(kinds))
            rows = tx.all(
                f"SELECT {_EVENT_COLUMNS} FROM audit_events WHERE seq > :cursor "
                f"AND seq <= :head AND kind IN ({placeholders}) ORDER BY seq LIMIT :batch",
                {"cursor": cursor, "head": head, "batch": batch, **names},
            )
            read = len(rows)
            if read == batch:
                upto = int(rows[-1][0])
            events = self._events(tx, rows)
            made = plan(events, endpoints)
            created = self._insert(tx, made)
        tx.execute(
            "UPDATE webhook_cursor SET seq = :seq WHERE name = 'dispatch'",
            {"seq": upto},
        )
        return read, created

    def _events(self, tx: Tx, rows: list[Row]) -> list[SourceEvent]:
        auth_ids = sorted({r[5] for r in rows if str(r[3]).startswith("authorization.")})
        payments = self._payments_of(tx, auth_ids)
        return [
            SourceEvent(
                seq=int(r[0]),
                id=int(r[1]),
                at=from_us_required(r[2]),
                kind=r[3],
                actor=r[4],
                subject=r[5],
                payload=_payload(r[6]),
                agent=r[7],
                department=r[8],
                wallet=r[9],
                chain=r[10],
                payment=payments.get(r[5]),
            )
            for r in rows
        ]

    def _payments_of(self, tx: Tx, auth_ids: list[str]) -> dict[str, str]:
        """The custodial payment behind each authorization (by the pipeline's key)."""
        if not auth_ids:
            return {}
        placeholders, names = _in("a", auth_ids)
        rows = tx.all(
            "SELECT a.id, p.id FROM authorizations a JOIN payments p "
            "ON p.agent_id = a.agent_id AND p.idempotency_key = substr(a.idempotency_key, "
            f"{len(PAYMENT_KEY_PREFIX) + 1}) WHERE a.id IN ({placeholders}) "
            "AND a.idempotency_key LIKE :prefix",
            {**names, "prefix": f"{PAYMENT_KEY_PREFIX}%"},
        )
        return {r[0]: r[1] for r in rows}

    def _insert(self, tx: Tx, made: list[NewDelivery]) -> int:
        created = 0
        for delivery in made:
            created += tx.execute(
                _INSERT_DELIVERY,
                {
                    "id": delivery.id,
                    "endpoint_id": delivery.endpoint_id,
                    "event_seq": delivery.event_seq,
                    "event": delivery.event,
                    "body": delivery.body,
                    "now": to_us(delivery.created_at),
                },
            )
        return created

    # -- delivery -------------------------------------------------------------------------------
    def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Claim]:
        token = secrets.token_hex(12)
        params = {"now": to_us(now), "lease": to_us(lease_until), "token": token, "limit": limit}
        due = self._run(lambda tx: tx.one(_DUE, {"now": params["now"], "limit": 1}), write=False)
        if due is None:  # the common tick: nothing due, so no write transaction
            return []

        def work(tx: Tx) -> list[Claim]:
            rows = tx.all(
                "UPDATE webhook_deliveries SET lease_until_us = :lease, lease_token = :token "
                f"WHERE id IN ({_DUE}{_LOCK_DUE[self.dialect]}) RETURNING {_DELIVERY_COLUMNS}",
                params,
            )
            if not rows:
                return []
            endpoint_ids = sorted({r[1] for r in rows})
            placeholders, names = _in("e", endpoint_ids)
            targets = {
                r[0]: (r[1], r[2])
                for r in tx.all(
                    f"SELECT id, url, secret FROM webhook_endpoints WHERE id IN ({placeholders})",
                    names,
                )
            }
            claims = []
            for row in sorted(rows, key=lambda r: (int(r[8]), int(r[2]), r[0])):
                url, secret = targets[row[1]]
                claims.append(Claim(_delivery(row), url, secret, token))
            return claims

        return self._run(work)

    def finish(self, claim: Claim, attempt: Attempt) -> bool:
        delivered = attempt.state is DeliveryState.DELIVERED
        params = {
            "id": claim.delivery.id,
            "token": claim.lease_token,
            "state": attempt.state.value,
            "attempts": attempt.attempts,
            "at": to_us(attempt.at),
            "next": to_us(attempt.next_attempt_at),
            "status": attempt.status,
            "error": attempt.error,
            "delivered": to_us(attempt.at) if delivered else None,
        }
        changed = self._run(
            lambda tx: tx.execute(
                "UPDATE webhook_deliveries SET state = :state, attempts = :attempts, "
                "last_attempt_us = :at, next_attempt_us = :next, last_status = :status, "
                "last_error = :error, delivered_us = :delivered, lease_until_us = NULL, "
                "lease_token = NULL "
                "WHERE id = :id AND lease_token = :token AND state = 'pending'",
                params,
            )
        )
        return changed == 1

    # -- reading and retrying -------------------------------------------------------------------
    def delivery(self, delivery_id: str) -> Delivery | None:
        row = self._run(
            lambda tx: tx.one(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = :id",
                {"id": delivery_id},
            ),
            write=False,
        )
        return _delivery(row) if row is not None else None

    def deliveries(
        self, endpoint_id: str, state: DeliveryState | None, before_seq: int | None, limit: int
    ) -> list[Delivery]:
        where = ["endpoint_id = :endpoint"]
        params: dict[str, Any] = {"endpoint": endpoint_id, "limit": limit}
        if state is not None:
            where.append("state = :state")
            params["state"] = state.value
        if before_seq is not None:
            where.append("event_seq < :before")
            params["before"] = before_seq
        rows = self._run(
            lambda tx: tx.all(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries "
                f"WHERE {' AND '.join(where)} ORDER BY event_seq DESC LIMIT :limit",
                params,
            ),
            write=False,
        )
        return [_delivery(r) for r in rows]

    def retry(self, delivery_id: str, now: datetime, audit: AuditRecord) -> Delivery | None:
        params = {"id": delivery_id, "now": to_us(now)}

        def work(tx: Tx) -> Delivery | None:
            changed = tx.execute(
                "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, "
                "next_attempt_us = :now, lease_until_us = NULL, lease_token = NULL "
                "WHERE id = :id AND state = 'dead' AND endpoint_id IN "
                "(SELECT id FROM webhook_endpoints WHERE disabled_us IS NULL)",
                params,
            )
            if changed != 1:
                return None
            write_audit(tx, audit, now)
            row = tx.one(
                f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = :id", params
            )
            return _delivery(row) if row is not None else None

        return self._run(work)
