"""Managing webhooks: register, list, remove endpoints; read and retry their deliveries.

The signing secret is generated here, server-side, and handed back once, in the result of
:meth:`Webhooks.create` (as admin keys are). It is stored readable, not hashed: the server
needs it to sign every delivery. Every change is an audit event written in the transaction of
the change; neither the secret nor a URL's credentials ever reach the audit log.

URLs are shown redacted outside the create answer (:func:`redact_url`): a Slack-style
incoming-webhook URL *is* a credential (its path), and a query string often carries a token.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from treasurer.domain.errors import InvalidRequest, InvalidState, NotFound
from treasurer.service.notify_events import EVENT_TYPES
from treasurer.service.notify_format import FORMATS
from treasurer.service.notify_ports import Delivery, DeliveryState, Endpoint, WebhookStore
from treasurer.service.ports import AuditRecord, Clock

MAX_URL_CHARS = 2000


def new_endpoint_id() -> str:
    return f"wh_{secrets.token_hex(8)}"


def new_webhook_secret() -> str:
    return f"whsec_{secrets.token_urlsafe(32)}"


def check_url(url: str) -> str:
    """An absolute ``http``/``https`` URL with a host; anything else is refused (``url``)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        _port = parts.port  # raises on a malformed port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or len(text) > MAX_URL_CHARS
        or any(c.isspace() or not c.isprintable() for c in text)
    ):
        raise InvalidRequest(
            f"url: {url[:100]!r} is not an absolute http:// or https:// URL with a host "
            f"(at most {MAX_URL_CHARS} characters)",
            field="url",
        )
    return text


def redact_url(url: str, fmt: str) -> str:
    """The URL with what may be a credential hidden: a password, the query string, and the
    path past its first segment for Slack-style endpoints."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    path = parts.path
    if fmt == "slack":
        first = path.lstrip("/").split("/", 1)
        if len(first) > 1 and first[1]:
            path = f"/{first[0]}/***"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def check_events(events: Sequence[str]) -> tuple[str, ...]:
    """Known event types, deduplicated in the order given (empty: every type)."""
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(
            f"events: {', '.join(repr(e) for e in unknown[:5])} is not an event type; "
            f"known types are {', '.join(EVENT_TYPES)}",
            field="events",
            code="unknown_event_type",
        )
    return tuple(dict.fromkeys(events))


class Webhooks:
    """Webhook endpoints and their deliveries (what the HTTP API and the CLI call)."""

    def __init__(self, store: WebhookStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def create(
        self,
        url: str,
        *,
        format: str = "json",
        events: Sequence[str] = (),
        description: str = "",
        actor: str = "admin",
    ) -> Endpoint:
        """Register an endpoint; the result carries its secret (shown this once)."""
        if format not in FORMATS:
            raise InvalidRequest(
                f"format: {format!r} must be one of {', '.join(FORMATS)}", field="format"
            )
        if not description.isprintable():
            raise InvalidRequest(
                "description: control characters are not allowed", field="description"
            )
        endpoint = Endpoint(
            id=new_endpoint_id(),
            url=check_url(url),
            secret=new_webhook_secret(),
            format=format,
            events=check_events(events),
            description=description,
            created_at=self.clock.now(),
            created_by=actor,
        )
        audit = AuditRecord(
            "webhook.created",
            actor,
            f"webhook:{endpoint.id}",
            {
                "url": redact_url(endpoint.url, endpoint.format),
                "format": endpoint.format,
                "events": list(endpoint.events),
            },
        )
        self.store.add_endpoint(endpoint, audit)
        return endpoint

    def get(self, endpoint_id: str) -> Endpoint:
        found = self.store.endpoint(endpoint_id)
        if found is None:
            raise NotFound(f"webhook {endpoint_id!r} does not exist")
        return found

    def endpoints(
        self, limit: int, after: str | None = None, *, include_removed: bool = False
    ) -> list[Endpoint]:
        return self.store.endpoints(limit, after, include_removed)

    def remove(self, endpoint_id: str, *, actor: str = "admin") -> Endpoint:
        """Stop sending to an endpoint; its pending deliveries become dead. Idempotent."""
        self.get(endpoint_id)
        audit = AuditRecord("webhook.removed", actor, f"webhook:{endpoint_id}", {})
        self.store.disable_endpoint(endpoint_id, self.clock.now(), audit)
        return self.get(endpoint_id)

    def deliveries(
        self,
        endpoint_id: str,
        *,
        state: DeliveryState | None = None,
        before_seq: int | None = None,
        limit: int = 50,
    ) -> list[Delivery]:
        """An endpoint's deliveries, newest event first (``before_seq``: the page cursor)."""
        self.get(endpoint_id)
        return self.store.deliveries(endpoint_id, state, before_seq, limit)

    def retry(self, delivery_id: str, *, actor: str = "admin") -> Delivery:
        """Send a dead delivery again: pending, due now, with a fresh count of attempts."""
        found = self.store.delivery(delivery_id)
        if found is None:
            raise NotFound(f"delivery {delivery_id!r} does not exist")
        endpoint = self.get(found.endpoint_id)
        if not endpoint.active:
            raise InvalidState(
                f"webhook {endpoint.id} was removed; its deliveries can no longer be sent",
                code="webhook_removed",
            )
        audit = AuditRecord(
            "webhook.delivery_retried",
            actor,
            f"webhook:{endpoint.id}",
            {"delivery": delivery_id, "event": found.event, "event_seq": found.event_seq},
        )
        retried = self.store.retry(delivery_id, self.clock.now(), audit)
        if retried is None:
            current = self.store.delivery(delivery_id)
            state = current.state.value if current is not None else "gone"
            raise InvalidState(
                f"delivery {delivery_id} is {state}; only a dead delivery can be retried",
                code="delivery_not_dead",
            )
        return retried
