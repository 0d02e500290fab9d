"""``/v1/webhooks``: endpoints that receive signed notifications, and their deliveries.

Webhooks are org-wide (they carry events of every department), so every route needs an
unscoped key: an admin registers, removes and retries; admin, finance and auditor keys read.
The signing secret is in the creation answer only. Deliveries are listed newest event first;
``state=dead`` is the dead-letter queue, and ``POST /v1/webhooks/deliveries/{id}/retry`` sends
a dead delivery again.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.http.deps import Ctx, Manager, Pages, Reader, stored_page
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.service.auth_access import require_org_wide
from treasurer.service.notify_admin import redact_url
from treasurer.service.notify_format import event_id
from treasurer.service.notify_ports import Delivery, DeliveryState, Endpoint
from treasurer.wire import Page, WebhookCreated, WebhookDeliveryOut, WebhookIn, WebhookOut

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=COMMON)
WHAT = "webhooks"
#: Cursors of the delivery list are event sequence numbers (BIGINT).
MAX_SEQ = 2**63 - 1


def webhook_out(endpoint: Endpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id,
        url=redact_url(endpoint.url, endpoint.format),
        format=endpoint.format,
        events=list(endpoint.events),
        description=endpoint.description,
        created_at=endpoint.created_at,
        created_by=endpoint.created_by,
        removed_at=endpoint.disabled_at,
        active=endpoint.active,
    )


def delivery_out(delivery: Delivery) -> WebhookDeliveryOut:
    try:
        body: Any = json.loads(delivery.body)
    except ValueError:
        body = {"raw": delivery.body}
    pending = delivery.state is DeliveryState.PENDING
    return WebhookDeliveryOut(
        id=delivery.id,
        webhook=delivery.endpoint_id,
        event_id=event_id(delivery.event_seq),
        event=delivery.event,
        event_seq=delivery.event_seq,
        state=delivery.state.value,
        attempts=delivery.attempts,
        created_at=delivery.created_at,
        next_attempt_at=delivery.next_attempt_at if pending else None,
        last_attempt_at=delivery.last_attempt_at,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        delivered_at=delivery.delivered_at,
        body=body if isinstance(body, dict) else {"raw": body},
    )


@router.post("", status_code=201, responses=responses(400, 422))
def create_webhook(body: WebhookIn, ctx: Ctx, who: Manager) -> WebhookCreated:
    """Register an endpoint. The answer holds its signing secret, shown this once."""
    require_org_wide(who, WHAT)
    endpoint = ctx.require_webhooks().create(
        body.url,
        format=body.format,
        events=body.events,
        description=body.description,
        actor=who.actor,
    )
    shown = webhook_out(endpoint).model_dump()
    return WebhookCreated(**{**shown, "url": endpoint.url}, secret=endpoint.secret)


@router.get("")
def list_webhooks(
    ctx: Ctx,
    who: Reader,
    pages: Pages,
    include_removed: Annotated[bool, Query(description="also list removed endpoints")] = False,
) -> Page[WebhookOut]:
    """Endpoints in id order (secrets are never listed)."""
    require_org_wide(who, WHAT)
    rows = ctx.require_webhooks().endpoints(
        pages.limit + 1, pages.after, include_removed=include_removed
    )
    items, nxt = stored_page(rows, lambda e: e.id, pages.limit)
    return Page[WebhookOut](items=[webhook_out(e) for e in items], next=nxt)


@router.get("/{webhook_id}", responses=responses(404))
def get_webhook(webhook_id: str, ctx: Ctx, who: Reader) -> WebhookOut:
    require_org_wide(who, WHAT)
    return webhook_out(ctx.require_webhooks().get(webhook_id))


@router.delete("/{webhook_id}", responses=responses(404))
def remove_webhook(webhook_id: str, ctx: Ctx, who: Manager) -> WebhookOut:
    """Stop sending to an endpoint; its pending deliveries become dead. Idempotent."""
    require_org_wide(who, WHAT)
    return webhook_out(ctx.require_webhooks().remove(webhook_id, actor=who.actor))


@router.get("/{webhook_id}/deliveries", responses=responses(400, 404))
def list_deliveries(
    webhook_id: str,
    ctx: Ctx,
    who: Reader,
    pages: Pages,
    state: Literal["pending", "delivered", "dead"] | None = None,
) -> Page[WebhookDeliveryOut]:
    """An endpoint's deliveries, newest event first; ``state=dead`` lists the dead letters."""
    require_org_wide(who, WHAT)
    before = _seq_cursor(pages.after)
    rows = ctx.require_webhooks().deliveries(
        webhook_id,
        state=None if state is None else DeliveryState(state),
        before_seq=before,
        limit=pages.limit + 1,
    )
    items, nxt = stored_page(rows, lambda d: str(d.event_seq), pages.limit)
    return Page[WebhookDeliveryOut](items=[delivery_out(d) for d in items], next=nxt)


@router.post("/deliveries/{delivery_id}/retry", responses=responses(404, 409))
def retry_delivery(delivery_id: str, ctx: Ctx, who: Manager) -> WebhookDeliveryOut:
    """Send a dead delivery again (due now, with a fresh count of attempts)."""
    require_org_wide(who, WHAT)
    return delivery_out(ctx.require_webhooks().retry(delivery_id, actor=who.actor))


def _seq_cursor(after: str | None) -> int | None:
    if after is None:
        return None
    if not after.isdigit() or int(after) > MAX_SEQ:
        raise InvalidRequest(
            "after: the delivery cursor is an event sequence number", field="after"
        )
    return int(after)
