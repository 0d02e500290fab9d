"""Every endpoint the clients use, as a :class:`~treasurer.sdk_common.Call`: path, body, parsing
and whether it is safe to send twice.

Retried (idempotent) calls: every GET; ``authorize`` and ``pay`` (each always carries an
``Idempotency-Key``: one is generated per call when the caller gives none, and every retry of
that call sends the same one, so a lost answer never reserves or pays twice); ``check`` and a
dry-run ``pay``; ``capture`` and ``void`` (the server does each once per authorization and
answers a same-request retry with the first result); ``apply`` (declarative: applying the same
file twice is a no-op); ``set_price`` (PUT); ``freeze``/``unfreeze``, ``decommission`` and
``revoke_session`` (idempotent by design). Never retried: ``create_session``,
``rotate_session`` (each mints a new token), ``add_approver`` and ``create_wallet`` (a
custodial one creates a vault key).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

from treasurer.domain.errors import AmountError
from treasurer.sdk_common import AuthorizationResult, Call, Decision, PaymentPreview, PaymentResult
from treasurer.wire import (
    AgentOut,
    ApprovalChallengeOut,
    ApprovalStatusOut,
    ApproverOut,
    AuthorizationOut,
    BacktestOut,
    DecommissionOut,
    FreezeOut,
    Health,
    PlanOut,
    PolicyOut,
    PolicyVersionOut,
    PriceOut,
    SessionCreated,
    SessionOut,
    ShadowReportOut,
    SpendReport,
    SpendRowOut,
    WalletBalanceOut,
    WalletOut,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookOut,
)
from treasurer.wire_audit import AuditPurgeOut, AuditVerificationOut

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
#: One page of a list and the cursor of the next page (None on the last one).
PageOf = tuple[list[T], str | None]


def _seg(value: str) -> str:
    """One path segment, escaped (``agent:bot`` and ``ethereum:ETH`` are valid ids)."""
    return quote(value, safe="")


def _model(cls: type[M]) -> Callable[[Any], M]:
    return cls.model_validate


def _models(cls: type[M]) -> Callable[[Any], list[M]]:
    return lambda data: [cls.model_validate(item) for item in data]


def _page(cls: type[M]) -> Callable[[Any], PageOf[M]]:
    return lambda data: ([cls.model_validate(i) for i in data["items"]], data.get("next"))


def _amount(value: object, field: str = "amount") -> object:
    """Refuse what the server would refuse, before serializing it: amounts are strings."""
    if value is None or isinstance(value, str):
        return value
    kind = "a float" if isinstance(value, float) else type(value).__name__
    raise AmountError(
        f'{field}: got {kind}; amounts must be JSON strings like "12.50" so no precision is lost',
        field=field,
        code="amount_not_a_string",
    )


def spend_body(
    agent: str | None,
    wallet: object,
    amount: object,
    asset: str | None,
    recipient: str | None,
    chain: str | None,
    kind: str,
    extra: Mapping[str, object],
) -> dict[str, Any]:
    """The JSON of a spend; ``wallet`` may be an id, ``chain:address`` or an object with ``id``.
    Unknown ``extra`` fields are sent as they are, so the server names them (unknown_field)."""
    given = {
        "agent": agent,
        "wallet": str(getattr(wallet, "id", wallet)),
        "amount": _amount(amount),
        "asset": asset,
        "recipient": recipient,
        "chain": chain,
        "kind": kind,
        **extra,
    }
    for name in ("fee_usd", "value"):  # amounts, like ``amount`` itself
        if name in given:
            given[name] = _amount(given[name], name)
    return {k: v for k, v in given.items() if v is not None}


# -- spends ------------------------------------------------------------------------------
def check(body: dict[str, Any]) -> Call[Decision]:
    return Call("POST", "/v1/authorizations/check", _model(Decision), body=body, idempotent=True)


def authorize(body: dict[str, Any], idempotency_key: str | None) -> Call[AuthorizationResult]:
    key = idempotency_key or f"sdk-{uuid.uuid4().hex}"
    return Call(
        "POST",
        "/v1/authorizations",
        _model(AuthorizationResult),
        body=body,
        headers={"Idempotency-Key": key},
        idempotent=True,
    )


def capture(
    authorization_id: str, amount: object, tx_hash: str | None
) -> Call[AuthorizationResult]:
    body = {"amount": _amount(amount), "tx_hash": tx_hash}
    return Call(
        "POST",
        f"/v1/authorizations/{_seg(authorization_id)}/capture",
        _model(AuthorizationResult),
        body={k: v for k, v in body.items() if v is not None},
        idempotent=True,
    )


def void(authorization_id: str, reason: str) -> Call[AuthorizationResult]:
    return Call(
        "POST",
        f"/v1/authorizations/{_seg(authorization_id)}/void",
        _model(AuthorizationResult),
        body={"reason": reason},
        idempotent=True,
    )


def get_authorization(authorization_id: str) -> Call[AuthorizationResult]:
    path = f"/v1/authorizations/{_seg(authorization_id)}"
    return Call("GET", path, _model(AuthorizationResult), idempotent=True)


# -- custodial payments ------------------------------------------------------------------
def payment_body(
    wallet: object,
    kind: str,
    recipient: str | None,
    amount: object,
    asset: str | None,
    to: str | None,
    data: str | None,
    value: object,
    max_fee_usd: object,
    dry_run: bool,
) -> dict[str, Any]:
    """The JSON of a payment; amounts must be strings (refused here, as the server would)."""
    given = {
        "wallet": str(getattr(wallet, "id", wallet)),
        "kind": kind,
        "recipient": recipient,
        "amount": _amount(amount),
        "asset": asset,
        "to": to,
        "data": data,
        "value": _amount(value, "value"),
        "max_fee_usd": _amount(max_fee_usd, "max_fee_usd"),
        "dry_run": dry_run or None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _payment_or_preview(data: Any) -> PaymentResult | PaymentPreview:
    if isinstance(data, dict) and data.get("dry_run") is True:
        return PaymentPreview.model_validate(data)
    return PaymentResult.model_validate(data)


def pay(body: dict[str, Any], idempotency_key: str | None) -> Call[PaymentResult | PaymentPreview]:
    """A payment (or a dry run, which needs no key). The key is fixed here, once per call, so
    every retry of the call sends the same one."""
    headers = {}
    if not body.get("dry_run"):
        headers["Idempotency-Key"] = idempotency_key or f"sdk-{uuid.uuid4().hex}"
    elif idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return Call(
        "POST", "/v1/payments", _payment_or_preview, body=body, headers=headers, idempotent=True
    )


def get_payment(payment_id: str) -> Call[PaymentResult]:
    path = f"/v1/payments/{_seg(payment_id)}"
    return Call("GET", path, _model(PaymentResult), idempotent=True)


def list_payments(
    agent: str | None, wallet: str | None, state: str | None
) -> Call[PageOf[PaymentResult]]:
    given = {"agent": agent, "wallet": wallet, "state": state}
    params = {k: v for k, v in given.items() if v is not None}
    return Call("GET", "/v1/payments", _page(PaymentResult), params=params, idempotent=True)


def wallet_balance(wallet_id: str) -> Call[WalletBalanceOut]:
    path = f"/v1/wallets/{_seg(wallet_id)}/balance"
    return Call("GET", path, _model(WalletBalanceOut), idempotent=True)


# -- org, prices, freezes, reports -------------------------------------------------------
def apply(org_file: Mapping[str, Any], dry_run: bool) -> Call[PlanOut]:
    params = {"dry_run": "true" if dry_run else "false"}
    return Call(
        "POST", "/v1/org", _model(PlanOut), params=params, body=dict(org_file), idempotent=True
    )


def export() -> Call[dict[str, Any]]:
    return Call("GET", "/v1/org", dict, idempotent=True)


def spend(
    by: str, since: datetime | None, until: datetime | None, filters: Mapping[str, str]
) -> Call[list[SpendRowOut]]:
    params = {"group_by": by, **filters}
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            params[name] = moment.isoformat()
    return Call(
        "GET",
        "/v1/spend",
        lambda data: SpendReport.model_validate(data).rows,
        params=params,
        idempotent=True,
    )


def spend_items(
    since: datetime | None,
    until: datetime | None,
    filters: Mapping[str, str],
    limit: int,
    after: str | None,
) -> Call[PageOf[AuthorizationOut]]:
    """One page of ``/v1/spend/items``: the authorizations the spend totals sum."""
    params = {**filters, "limit": str(limit)}
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            params[name] = moment.isoformat()
    if after is not None:
        params["after"] = after
    return Call("GET", "/v1/spend/items", _page(AuthorizationOut), params=params, idempotent=True)


def _range_params(
    since: datetime | None, until: datetime | None, quarter: str | None
) -> dict[str, str]:
    params = {} if quarter is None else {"quarter": quarter}
    for name, moment in (("since", since), ("until", until)):
        if moment is not None:
            params[name] = moment.isoformat()
    return params


def backtest(
    org_file: Mapping[str, Any],
    since: datetime | None,
    until: datetime | None,
    quarter: str | None,
) -> Call[BacktestOut]:
    """Safe to retry: a backtest writes nothing."""
    body: dict[str, Any] = {"org": dict(org_file), **_range_params(since, until, quarter)}
    return Call("POST", "/v1/backtests", _model(BacktestOut), body=body, idempotent=True)


def shadow_report(
    since: datetime | None, until: datetime | None, quarter: str | None
) -> Call[ShadowReportOut]:
    params = _range_params(since, until, quarter)
    return Call("GET", "/v1/shadow-report", _model(ShadowReportOut), params=params, idempotent=True)


def get_price(asset: str) -> Call[PriceOut]:
    return Call("GET", f"/v1/prices/{_seg(asset)}", _model(PriceOut), idempotent=True)


def set_price(asset: str, price_usd: object) -> Call[PriceOut]:
    body = {"price_usd": _amount(price_usd, "price_usd")}
    path = f"/v1/prices/{_seg(asset)}"
    return Call("PUT", path, _model(PriceOut), body=body, idempotent=True)


def freeze(scope: str, reason: str) -> Call[FreezeOut]:
    body = {"scope": scope, "reason": reason}
    return Call("POST", "/v1/freezes", _model(FreezeOut), body=body, idempotent=True)


def unfreeze(scope: str) -> Call[FreezeOut]:
    return Call("DELETE", f"/v1/freezes/{_seg(scope)}", _model(FreezeOut), idempotent=True)


def list_freezes() -> Call[PageOf[str]]:
    return Call(
        "GET",
        "/v1/freezes",
        lambda data: ([item["scope"] for item in data["items"]], data.get("next")),
        idempotent=True,
    )


def health() -> Call[Health]:
    return Call("GET", "/health", _model(Health), idempotent=True)


# -- agents, sessions, wallets, policies, approvers --------------------------------------
def list_agents() -> Call[PageOf[AgentOut]]:
    return Call("GET", "/v1/agents", _page(AgentOut), idempotent=True)


def get_agent(agent_id: str) -> Call[AgentOut]:
    return Call("GET", f"/v1/agents/{_seg(agent_id)}", _model(AgentOut), idempotent=True)


def decommission(agent_id: str) -> Call[DecommissionOut]:
    path = f"/v1/agents/{_seg(agent_id)}/decommission"
    return Call("POST", path, _model(DecommissionOut), idempotent=True)


def create_session(agent_id: str, name: str, ttl_s: int | None) -> Call[SessionCreated]:
    body: dict[str, Any] = {"name": name, **({"ttl_s": ttl_s} if ttl_s is not None else {})}
    path = f"/v1/agents/{_seg(agent_id)}/sessions"
    return Call("POST", path, _model(SessionCreated), body=body)


def list_sessions(agent_id: str) -> Call[PageOf[SessionOut]]:
    path = f"/v1/agents/{_seg(agent_id)}/sessions"
    return Call("GET", path, _page(SessionOut), idempotent=True)


def rotate_session(agent_id: str, session_id: str, ttl_s: int | None) -> Call[SessionCreated]:
    body = {"ttl_s": ttl_s} if ttl_s is not None else {}
    path = f"/v1/agents/{_seg(agent_id)}/sessions/{_seg(session_id)}/rotate"
    return Call("POST", path, _model(SessionCreated), body=body)


def revoke_session(agent_id: str, session_id: str) -> Call[SessionOut]:
    path = f"/v1/agents/{_seg(agent_id)}/sessions/{_seg(session_id)}"
    return Call("DELETE", path, _model(SessionOut), idempotent=True)


def list_wallets() -> Call[PageOf[WalletOut]]:
    return Call("GET", "/v1/wallets", _page(WalletOut), idempotent=True)


def get_wallet(wallet_id: str) -> Call[WalletOut]:
    return Call("GET", f"/v1/wallets/{_seg(wallet_id)}", _model(WalletOut), idempotent=True)


def list_policies(scope: str | None) -> Call[PageOf[PolicyOut]]:
    params = {"scope": scope} if scope is not None else {}
    return Call("GET", "/v1/policies", _page(PolicyOut), params=params, idempotent=True)


def get_policy(policy_id: str) -> Call[PolicyOut]:
    return Call("GET", f"/v1/policies/{_seg(policy_id)}", _model(PolicyOut), idempotent=True)


def policy_history(policy_id: str) -> Call[list[PolicyVersionOut]]:
    path = f"/v1/policies/{_seg(policy_id)}/history"
    return Call("GET", path, _models(PolicyVersionOut), idempotent=True)


def list_approvers() -> Call[PageOf[ApproverOut]]:
    return Call("GET", "/v1/approvers", _page(ApproverOut), idempotent=True)


def add_approver(
    approver_id: str, name: str, kind: str, public_key: str, groups: list[str]
) -> Call[ApproverOut]:
    body = {"id": approver_id, "name": name, "kind": kind, "public_key": public_key}
    return Call("POST", "/v1/approvers", _model(ApproverOut), body={**body, "groups": groups})


def create_wallet(
    wallet_id: str,
    agent: str,
    chain: str,
    address: str | None,
    custody: str,
    vendor: str | None,
) -> Call[WalletOut]:
    given = {
        "id": wallet_id,
        "agent": agent,
        "chain": chain,
        "address": address,
        "custody": custody,
        "vendor": vendor,
    }
    body = {k: v for k, v in given.items() if v is not None}
    return Call("POST", "/v1/wallets", _model(WalletOut), body=body)


# -- webhooks ----------------------------------------------------------------------------
# ``create_webhook`` mints a secret and ``retry_delivery`` of a retried delivery is a conflict,
# so neither is retried; removing is idempotent.
def create_webhook(url: str, fmt: str, events: list[str], description: str) -> Call[WebhookCreated]:
    body = {"url": url, "format": fmt, "events": events, "description": description}
    return Call("POST", "/v1/webhooks", _model(WebhookCreated), body=body)


def list_webhooks(include_removed: bool) -> Call[PageOf[WebhookOut]]:
    params = {"include_removed": "true"} if include_removed else {}
    return Call("GET", "/v1/webhooks", _page(WebhookOut), params=params, idempotent=True)


def get_webhook(webhook_id: str) -> Call[WebhookOut]:
    return Call("GET", f"/v1/webhooks/{_seg(webhook_id)}", _model(WebhookOut), idempotent=True)


def remove_webhook(webhook_id: str) -> Call[WebhookOut]:
    path = f"/v1/webhooks/{_seg(webhook_id)}"
    return Call("DELETE", path, _model(WebhookOut), idempotent=True)


def webhook_deliveries(
    webhook_id: str, state: str | None, limit: int, after: str | None
) -> Call[PageOf[WebhookDeliveryOut]]:
    given = {"state": state, "limit": str(limit), "after": after}
    params = {k: v for k, v in given.items() if v is not None}
    path = f"/v1/webhooks/{_seg(webhook_id)}/deliveries"
    return Call("GET", path, _page(WebhookDeliveryOut), params=params, idempotent=True)


def retry_delivery(delivery_id: str) -> Call[WebhookDeliveryOut]:
    path = f"/v1/webhooks/deliveries/{_seg(delivery_id)}/retry"
    return Call("POST", path, _model(WebhookDeliveryOut))


# -- audit retention ---------------------------------------------------------------------
def purge_audit(before: datetime | None, dry_run: bool) -> Call[AuditPurgeOut]:
    """A dry run is safe to retry; a purge is not retried (a lost answer: run it again, it
    purges only what is still older than the cutoff)."""
    body: dict[str, Any] = {"dry_run": dry_run}
    if before is not None:
        body["before"] = before.isoformat()
    return Call("POST", "/v1/audit/purge", _model(AuditPurgeOut), body=body, idempotent=dry_run)


def verify_audit(public_key: str | None) -> Call[AuditVerificationOut]:
    """The verdict on the live chain (it seals first, which changes no event)."""
    params = {} if public_key is None else {"public_key": public_key}
    path = "/v1/audit/verify"
    return Call("GET", path, _model(AuditVerificationOut), params=params, idempotent=True)


# -- approvals and cancel ------------------------------------------------------------------
def approvals_path(subject_id: str) -> str:
    """``/v1/payments/<id>/approvals`` or ``/v1/authorizations/<id>/approvals``: payment ids
    start with ``pay_``, so one method serves both kinds of subject."""
    kind = "payments" if subject_id.startswith("pay_") else "authorizations"
    return f"/v1/{kind}/{_seg(subject_id)}/approvals"


def approval_status(subject_id: str) -> Call[ApprovalStatusOut]:
    return Call("GET", approvals_path(subject_id), _model(ApprovalStatusOut), idempotent=True)


def approval_challenge(subject_id: str, approver: str) -> Call[ApprovalChallengeOut]:
    """Retried: a second challenge only issues a second single-use nonce."""
    path = f"{approvals_path(subject_id)}/challenge"
    body = {"approver": approver}
    return Call("POST", path, _model(ApprovalChallengeOut), body=body, idempotent=True)


def vote(
    subject_id: str,
    vote: str,
    approver: str | None,
    nonce: str | None,
    expires_at: datetime | None,
    signature: str | None,
) -> Call[ApprovalStatusOut]:
    """Never retried: a vote that got through answers a retry with ``nonce_used`` or
    ``already_voted``, which would hide that the first one counted."""
    given = {
        "vote": vote,
        "approver": approver,
        "nonce": nonce,
        "expires_at": None if expires_at is None else expires_at.isoformat(),
        "signature": signature,
    }
    body = {k: v for k, v in given.items() if v is not None}
    return Call("POST", approvals_path(subject_id), _model(ApprovalStatusOut), body=body)


def cancel_payment(payment_id: str) -> Call[PaymentResult]:
    """Idempotent by design: cancelling a cancelled payment returns it."""
    path = f"/v1/payments/{_seg(payment_id)}/cancel"
    return Call("POST", path, _model(PaymentResult), idempotent=True)
