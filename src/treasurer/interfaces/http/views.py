"""Domain values to wire models: amounts back to decimal strings, ids to plain names.

Only this module knows both shapes, so a change of the JSON is one edit here and in
:mod:`treasurer.wire`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from treasurer.domain.authorization import Authorization
from treasurer.domain.config import OrgConfig
from treasurer.domain.credentials import AdminKey, AgentSession, Approver
from treasurer.domain.facts import PriceQuote
from treasurer.domain.money import MAX_DECIMALS, format_amount, format_price, usd_decimal_text
from treasurer.domain.org import Agent, Department, Scope, ScopeKind, Wallet
from treasurer.domain.outcome import Decision
from treasurer.domain.policies import Policy
from treasurer.service.admin import ApplyResult
from treasurer.service.orgfile import render_plan
from treasurer.service.ports import SpendRow
from treasurer.wire import (
    AdminKeyCreated,
    AdminKeyOut,
    AgentOut,
    ApproverOut,
    AuditEventOut,
    AuthorizationOut,
    DecisionOut,
    DepartmentOut,
    PlanChangeOut,
    PlanOut,
    PolicyOut,
    PolicyVersionOut,
    PriceOut,
    SessionCreated,
    SessionOut,
    SpendRowOut,
    WalletOut,
)


def decision_out(decision: Decision | dict[str, object]) -> DecisionOut:
    data = decision.as_dict() if isinstance(decision, Decision) else decision
    return DecisionOut.model_validate(data)


def authorization_out(
    auth: Authorization, decision: dict[str, object] | None = None, *, replayed: bool = False
) -> AuthorizationOut:
    decimals = MAX_DECIMALS if auth.decimals is None else auth.decimals
    captured = auth.captured_amount
    return AuthorizationOut(
        id=auth.id,
        agent=auth.agent_id,
        wallet=auth.wallet_id,
        state=auth.state.value,
        tier=auth.tier,
        amount=format_amount(auth.amount, decimals),
        asset=auth.asset_id,
        value_usd=usd_decimal_text(auth.value_usd_micros),
        created_at=auth.created_at,
        expires_at=auth.expires_at,
        decision=decision_out(decision if decision is not None else auth.decision),
        replayed=replayed,
        captured_amount=None if captured is None else format_amount(captured, decimals),
        captured_usd=None
        if auth.captured_usd_micros is None
        else usd_decimal_text(auth.captured_usd_micros),
        tx_hash=auth.tx_hash,
        chain=auth.chain,
    )


def department_out(department: Department) -> DepartmentOut:
    return DepartmentOut(id=department.id, name=department.name, parent=department.parent_id)


def agent_out(agent: Agent) -> AgentOut:
    return AgentOut(
        id=agent.id, name=agent.name, department=agent.department_id, status=agent.status.value
    )


def wallet_out(wallet: Wallet, config: OrgConfig) -> WalletOut:
    return WalletOut(
        id=wallet.id,
        agent=wallet.agent_id,
        chain=wallet.chain,
        address=wallet.address,
        custody=wallet.custody.value,
        vendor=wallet.vendor,
        status=wallet.status.value,
        frozen=Scope(ScopeKind.WALLET, wallet.id) in config.frozen,
    )


def policy_out(policy: Policy) -> PolicyOut:
    return PolicyOut(
        id=policy.id,
        type=policy.type,
        scope=str(policy.scope),
        mode=policy.mode.value,
        version=policy.version,
        params=policy.params_dict(),
        description=policy.description,
    )


def policy_version_out(row: dict[str, Any]) -> PolicyVersionOut:
    return PolicyVersionOut.model_validate(row)


def plan_out(result: ApplyResult, *, dry_run: bool) -> PlanOut:
    changes = [
        PlanChangeOut(
            action=c.action,
            kind=c.kind,
            id=c.id,
            fields=c.changed_fields(),
            before=c.before,
            after=c.after,
        )
        for c in result.plan.changes
    ]
    return PlanOut(
        applied=result.applied,
        dry_run=dry_run,
        config_version=result.config_version,
        counts=result.plan.counts(),
        changes=changes,
        summary=render_plan(result.plan),
    )


def key_out(key: AdminKey) -> AdminKeyOut:
    return AdminKeyOut(
        id=key.id,
        name=key.name,
        role=key.role.value,
        department=key.department_id,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def key_created(key: AdminKey, token: str) -> AdminKeyCreated:
    return AdminKeyCreated(**key_out(key).model_dump(), token=token)


def session_out(session: AgentSession, now: datetime) -> SessionOut:
    return SessionOut(
        id=session.id,
        agent=session.agent_id,
        name=session.name,
        created_at=session.created_at,
        expires_at=session.expires_at,
        revoked_at=session.revoked_at,
        replaced_by=session.replaced_by,
        active=session.valid_at(now),
    )


def session_created(session: AgentSession, token: str, now: datetime) -> SessionCreated:
    return SessionCreated(**session_out(session, now).model_dump(), token=token)


def approver_out(approver: Approver) -> ApproverOut:
    return ApproverOut(
        id=approver.id,
        name=approver.name,
        kind=approver.kind.value,
        public_key=approver.public_key,
        groups=list(approver.groups),
        created_at=approver.created_at,
        revoked_at=approver.revoked_at,
    )


def price_out(asset_id: str, quote: PriceQuote) -> PriceOut:
    return PriceOut(
        asset=asset_id,
        price_usd=format_price(quote.price_atto),
        as_of=quote.as_of,
        source=quote.source,
    )


def spend_row_out(row: SpendRow) -> SpendRowOut:
    return SpendRowOut(
        group=row.group,
        captured_usd=usd_decimal_text(row.captured_usd_micros),
        pending_usd=usd_decimal_text(row.pending_usd_micros),
        captured_count=row.captured_count,
        pending_count=row.pending_count,
        amounts={
            asset: _token_text(units, MAX_DECIMALS if decimals is None else decimals)
            for asset, units, decimals in row.captured_amounts
        },
    )


def _token_text(units: int, decimals: int) -> str:
    """Base units as token units with every decimal of the asset ("1234.500000" USDC), so a
    column of them lines up and reads as the exact amount it is."""
    whole, frac = divmod(units, 10**decimals)
    return f"{whole}.{frac:0{decimals}d}" if decimals else str(whole)


def audit_event_out(event: dict[str, object]) -> AuditEventOut:
    return AuditEventOut.model_validate(event)
