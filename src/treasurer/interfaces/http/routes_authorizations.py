"""``/v1/authorizations``: decide and reserve, dry-run, read, capture and void.

The agent is always the session's agent: a body naming another agent is refused (403), and a
wallet of another agent is reported as not found (and the attempt is audited). A denial is a
successful call (201, state ``denied``) because decisions are values, not errors.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from treasurer.domain.authorization import Authorization
from treasurer.domain.credentials import Principal, PrincipalKind
from treasurer.domain.errors import Forbidden, InvalidRequest, NotFound
from treasurer.domain.facts import TypedDataDomain
from treasurer.interfaces.http.deps import (
    AgentCaller,
    AgentOrManager,
    AgentOrReporter,
    Ctx,
    HttpContext,
    ReaderOrAgent,
    visible_or_404,
)
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import authorization_out, decision_out
from treasurer.interfaces.http.wallet_access import require_own_wallet
from treasurer.service.auth_access import View
from treasurer.service.requests import SpendInput
from treasurer.wire import AuthorizationOut, CaptureBody, DecisionOut, SpendBody, VoidBody

router = APIRouter(prefix="/v1/authorizations", tags=["authorizations"], responses=COMMON)
IDEMPOTENCY_KEY_MAX = 200
IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=IDEMPOTENCY_KEY_MAX,
        description="a retry with the same key returns the first result",
    ),
]


def agent_of(ctx: HttpContext, who: Principal, body: SpendBody) -> str:
    """The acting agent: the session's own; for an admin key (dry run only), the body's."""
    config = ctx.config
    if who.kind is PrincipalKind.AGENT:
        if body.agent not in (None, who.agent_id):
            raise Forbidden("agent: a session may only spend for its own agent", field="agent")
        assert who.agent_id is not None
        agent = who.agent_id
    elif body.agent is None:
        raise InvalidRequest("agent: name the agent to check a spend for", field="agent")
    else:
        agent = body.agent
        visible_or_404(View(who, config).agent(agent), f"agent {agent!r}")
    require_own_wallet(ctx, who, agent, body.wallet)
    return agent


def spend_input(body: SpendBody, agent: str) -> SpendInput:
    """The use case's input for ``body``, spent by ``agent``."""
    typed = body.typed_data
    return SpendInput(
        agent=agent,
        wallet=body.wallet,
        amount=body.amount,
        asset=body.asset,
        recipient=body.recipient,
        chain=body.chain,
        kind=body.kind,
        contract=body.contract,
        method=body.method,
        spender=body.spender,
        typed_data=None
        if typed is None
        else TypedDataDomain(
            typed.primary_type, typed.name, typed.verifying_contract, typed.chain_id
        ),
        fee_usd=body.fee_usd,
        gas_price_gwei=body.gas_price_gwei,
        to=body.to,
        data=body.data,
        value=body.value,
    )


@router.post("", status_code=201, responses=responses(400, 404, 409))
def authorize(
    body: SpendBody,
    ctx: Ctx,
    who: AgentCaller,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> AuthorizationOut:
    """Decide and, if allowed, reserve the spend on every covering budget at once."""
    out, replayed = authorize_out(ctx, who, body, idempotency_key)
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return out


def authorize_out(
    ctx: HttpContext, who: Principal, body: SpendBody, idempotency_key: str | None
) -> tuple[AuthorizationOut, bool]:
    """The authorization ``who`` gets for ``body``, and whether it is an idempotent replay.

    The one implementation behind this route and the decision lane
    (:mod:`treasurer.interfaces.http.decision_lane`), so both answer alike.
    """
    agent = agent_of(ctx, who, body)
    result = ctx.governance.authorize_spend(
        spend_input(body, agent), idempotency_key=idempotency_key, actor=who.actor
    )
    out = authorization_out(result.authorization, result.decision, replayed=result.replayed)
    return out, result.replayed


@router.post("/check", responses=responses(400, 404))
def check(body: SpendBody, ctx: Ctx, who: AgentOrReporter) -> DecisionOut:
    """Dry run: the full decision and remaining budgets; nothing is reserved or recorded."""
    agent = agent_of(ctx, who, body)
    return decision_out(ctx.governance.check_spend(spend_input(body, agent)))


def _visible(ctx: HttpContext, who: Principal, authorization_id: str) -> Authorization:
    auth = ctx.governance.store.get_authorization(authorization_id)
    if auth is None or not ctx.view(who).agent(auth.agent_id):
        raise NotFound(f"authorization {authorization_id!r} does not exist")
    return auth


@router.get("/{authorization_id}", responses=responses(404))
def get_authorization(authorization_id: str, ctx: Ctx, who: ReaderOrAgent) -> AuthorizationOut:
    """One authorization with the decision that created it."""
    return authorization_out(_visible(ctx, who, authorization_id))


@router.post("/{authorization_id}/capture", responses=responses(400, 404, 409))
def capture(
    authorization_id: str, ctx: Ctx, who: AgentOrManager, body: CaptureBody | None = None
) -> AuthorizationOut:
    """Post the final amount (at most the authorized one); a same-amount retry returns it."""
    _visible(ctx, who, authorization_id)
    body = body or CaptureBody()
    done = ctx.governance.capture(
        authorization_id, body.amount, tx_hash=body.tx_hash, actor=who.actor
    )
    return authorization_out(done)


@router.post("/{authorization_id}/void", responses=responses(404, 409))
def void(
    authorization_id: str, ctx: Ctx, who: AgentOrManager, body: VoidBody | None = None
) -> AuthorizationOut:
    """Release the reservation; voiding a voided authorization returns it."""
    _visible(ctx, who, authorization_id)
    reason = (body or VoidBody()).reason
    return authorization_out(ctx.governance.void(authorization_id, reason=reason, actor=who.actor))
