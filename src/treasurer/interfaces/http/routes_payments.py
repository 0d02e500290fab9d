"""``/v1/payments``: custodial payments — pay (or dry-run), read one, list.

Only an agent session pays, and only from its own wallets: Treasurer signs with the agent's
custodial key, so an admin key paying "for" an agent would be a way around every control the
agent is under (403). Another agent's wallet is reported as not found, as on the
authorization routes. A denial is a successful call (201, state ``denied``): decisions are
values, not errors.

Idempotency follows ``POST /v1/authorizations``: a retry with the same ``Idempotency-Key``
answers 201 with the first payment, ``replayed: true`` and ``Idempotent-Replayed: true``; the
same key with another body is 409 ``idempotency_key_reused``. Unlike an authorization, a
payment *requires* the key (400 ``idempotency_key_required``): it moves money on a chain, and
a retried request without one could pay twice. A dry run needs none.

Reading a ``broadcast`` payment first asks the chain for its receipt, so a caller polling
``GET /v1/payments/{id}`` sees ``confirmed`` (or ``failed``) as soon as the chain has decided,
without waiting for a background confirmer.

``POST /v1/payments/{id}/cancel`` cancels a ``queued`` payment (delay or approval tier) and
releases its reservation: by the agent itself (its own payments only), a finance key or an
admin key (within their view). Idempotent; anything but a queued payment is 409
``payment_not_cancellable``. Votes on payments live in :mod:`.routes_approvals`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse

from treasurer.domain.credentials import Principal, PrincipalKind
from treasurer.domain.errors import Forbidden, InvalidRequest, NotFound, TreasurerError
from treasurer.domain.payment import Payment, PaymentState
from treasurer.interfaces.http.deps import (
    Ctx,
    HttpContext,
    P,
    Pages,
    ReaderOrAgent,
    caller,
    needs,
    stored_page,
    visible_or_404,
)
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views_payments import payment_out, preview_out
from treasurer.interfaces.http.wallet_access import require_own_wallet
from treasurer.service.payments_input import PaymentInput
from treasurer.service.payments_results import PaymentPreview
from treasurer.wire import Page, PaymentIn, PaymentOut, PaymentPreviewOut

router = APIRouter(prefix="/v1/payments", tags=["payments"], responses=COMMON)
log = logging.getLogger("treasurer.http")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=200,
        description="required (except for a dry run); a retry with the same key returns the "
        "first payment",
    ),
]


async def _paying_agent(who: Annotated[Principal, Depends(caller)]) -> Principal:
    """Agent sessions only, with a message that says why an admin key may not pay."""
    if who.kind is not PrincipalKind.AGENT or who.agent_id is None:
        raise Forbidden(
            "payments are made by an agent from its own wallets: send the agent's session "
            "token (tss_…), not an admin key; to see what a payment would decide, use "
            "POST /v1/authorizations/check"
        )
    return who


PayingAgent = Annotated[Principal, Depends(_paying_agent)]


def _request(body: PaymentIn, agent: str) -> PaymentInput:
    return PaymentInput(
        agent=agent,
        wallet=body.wallet,
        kind=body.kind,
        recipient=body.recipient,
        amount=body.amount,
        asset=body.asset,
        to=body.to,
        data=body.data,
        value=body.value,
        max_fee_usd=body.max_fee_usd,
    )


@router.post(
    "",
    status_code=201,
    response_model=PaymentOut,
    responses={
        **responses(400, 404, 409, 413, 503),
        200: {"model": PaymentPreviewOut, "description": "A dry run: nothing was reserved"},
    },
)
def pay(
    body: PaymentIn,
    ctx: Ctx,
    who: PayingAgent,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> PaymentOut | Response:
    """Decide, reserve, sign and broadcast a payment from one of the agent's wallets.

    instant and notify tiers are sent at once (``broadcast``, then ``confirmed``); delay and
    approval tiers are ``queued`` with their reservation; a denial is ``denied`` with its
    reasons. ``dry_run: true`` answers 200 with the decision, the fee and a simulation.
    """
    payments = ctx.require_payments()
    assert who.agent_id is not None
    require_own_wallet(ctx, who, who.agent_id, body.wallet)
    if not body.dry_run and not idempotency_key:
        raise InvalidRequest(
            "Idempotency-Key: this header is required to make a payment (any unique string, "
            "e.g. a UUID); a retry with the same key then returns the first payment instead of "
            "paying twice",
            field="Idempotency-Key",
            code="idempotency_key_required",
        )
    result = payments.submit(
        _request(body, who.agent_id),
        # A dry run records nothing, so its key is never looked up; any value will do.
        idempotency_key=idempotency_key or "dry-run",
        dry_run=body.dry_run,
    )
    if isinstance(result, PaymentPreview):
        preview = preview_out(result)
        return JSONResponse(preview.model_dump(mode="json"), status_code=200)
    if result.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return payment_out(result.payment, ctx.config, result.decision, replayed=result.replayed)


def _visible(ctx: HttpContext, who: Principal, payment_id: str) -> Payment:
    found = ctx.require_payments().payments.get(payment_id)
    if found is None or not ctx.view(who).agent(found.agent_id):
        raise NotFound(f"payment {payment_id!r} does not exist")
    return found


def _decision_of(ctx: HttpContext, payment: Payment) -> dict[str, object] | None:
    if payment.authorization_id is None:
        return None
    auth = ctx.governance.store.get_authorization(payment.authorization_id)
    return None if auth is None else auth.decision


@router.get("/{payment_id}", responses=responses(404, 503))
def get_payment(payment_id: str, ctx: Ctx, who: ReaderOrAgent) -> PaymentOut:
    """One payment with its decision; a ``broadcast`` one is first checked against the chain.

    An agent reads its own payments; keys read those of the agents they may see.
    """
    payment = _visible(ctx, who, payment_id)
    if payment.state is PaymentState.BROADCAST:
        try:
            payment = ctx.require_payments().confirm(payment.id)
        except TreasurerError as exc:
            # The stored state is still the truth; the confirmer will retry later.
            log.info("receipt of %s not read: %s: %s", payment.id, exc.code, exc.message)
    return payment_out(payment, ctx.config, _decision_of(ctx, payment))


StateFilter = Literal[
    "created", "queued", "broadcast", "confirmed", "failed", "denied", "cancelled"
]
#: Agents (their own payments), finance and admin keys.
Canceller = Annotated[Principal, Depends(needs(P.SPEND, P.APPROVE))]


@router.post("/{payment_id}/cancel", responses=responses(404, 409, 503))
def cancel(payment_id: str, ctx: Ctx, who: Canceller) -> PaymentOut:
    """Cancel a queued payment and release its reservation (budget headroom comes back at
    once). Idempotent: cancelling a cancelled payment returns it."""
    _visible(ctx, who, payment_id)
    done = ctx.require_payments().cancel(payment_id, actor=who.actor)
    return payment_out(done, ctx.config, _decision_of(ctx, done))


def _cursor(payment: Payment) -> str:
    """``<created µs>:<id>``: the page order is newest first, ties broken by id."""
    return f"{(payment.created_at - _EPOCH) // _MICRO}:{payment.id}"


def _parse_cursor(text: str | None) -> tuple[datetime, str] | None:
    if text is None:
        return None
    micros, sep, payment_id = text.partition(":")
    if not sep or not micros.isdigit() or not payment_id:
        raise InvalidRequest(
            "after: pass the previous page's next as it was (e.g. 1781524800000000:pay_…)",
            field="after",
        )
    return _EPOCH + int(micros) * _MICRO, payment_id


@router.get("", responses=responses(400, 404, 503))
def list_payments(
    ctx: Ctx,
    who: ReaderOrAgent,
    pages: Pages,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    wallet: Annotated[str | None, Query(max_length=200)] = None,
    state: StateFilter | None = None,
) -> Page[PaymentOut]:
    """Payments the caller may see, newest first (decisions omitted: read one for it).

    An agent session sees its own; a department-scoped key those of its department's agents.
    """
    payments = ctx.require_payments()
    config, view = ctx.config, ctx.view(who)
    if agent is not None:
        visible_or_404(view.agent(agent), f"agent {agent!r}")
    if wallet is not None:
        visible_or_404(view.wallet(wallet), f"wallet {wallet!r}")
    agents: list[str] | None
    if agent is not None:
        agents = [agent]
    elif view.unrestricted:
        agents = None
    else:
        agents = [a for a in config.agents if view.agent(a)]
    rows = payments.payments.list_page(
        pages.limit + 1,
        agents=agents,
        wallet=wallet,
        state=None if state is None else PaymentState(state),
        before=_parse_cursor(pages.after),
    )
    items, nxt = stored_page(rows, _cursor, pages.limit)
    return Page[PaymentOut](items=[payment_out(p, config) for p in items], next=nxt)
