"""One evaluator per policy type: ``(policy, facts, value) -> RuleResult``.

Each evaluator looks only at its own policy and the facts; the decision combines results
(deny overrides, strictest tier wins), so order never matters. An evaluator never skips: when a
fact it needs is missing, it denies with its own code (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from treasurer.domain.budgets import BudgetClaim, claim_key
from treasurer.domain.facts import Facts, SpendKind, normalize_address
from treasurer.domain.money import MAX_UINT256, format_usd, parse_amount
from treasurer.domain.outcome import ApprovalRequirement, Reason, RuleResult, Tier
from treasurer.domain.policies import (
    AllowedAssetsParams,
    AllowedChainsParams,
    ApprovalParams,
    BudgetParams,
    ContractsParams,
    CounterpartyLimitParams,
    FeeLimitParams,
    MessageSigningParams,
    Policy,
    RateLimitParams,
    RecipientsParams,
    ScheduleParams,
    SpendingTiersParams,
    TokenApprovalsParams,
    schedule_day_name,
)
from treasurer.domain.windows import Window, period_of

Evaluator = Callable[[Policy, Facts, int], RuleResult]


def _deny(policy: Policy, code: str, message: str) -> RuleResult:
    return RuleResult(reasons=(Reason(code, message, policy.id, policy.version),), tier=Tier.DENY)


def _claim(
    policy: Policy,
    facts: Facts,
    window: Window,
    *,
    limit: int | None,
    max_count: int | None,
    amount: int,
    subject: str = "",
) -> BudgetClaim:
    period = period_of(window, facts.now, facts.org.timezone)
    return BudgetClaim(
        key=claim_key(policy.id, period, subject),
        policy_id=policy.id,
        policy_version=policy.version,
        policy_type=policy.type,
        scope=policy.scope,
        window=window,
        period=period,
        limit_micros=limit,
        max_count=max_count,
        amount_micros=amount,
        subject=subject,
    )


def budget(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, BudgetParams)
    window = params.as_window() if params.window != "per_transaction" else None
    if window is None:
        assert params.limit_usd is not None
        if value > params.limit_usd:
            scope = policy.scope
            return _deny(
                policy,
                f"{scope.kind.value}_per_transaction_limit_exceeded",
                f"{scope.kind.value} {scope.id} may spend at most {format_usd(params.limit_usd)} "
                f"per transaction; this one is {format_usd(value)}",
            )
        return RuleResult(grants=True)
    claim = _claim(
        policy, facts, window, limit=params.limit_usd, max_count=params.max_count, amount=value
    )
    return RuleResult(claims=(claim,), grants=True)


def spending_tiers(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, SpendingTiersParams)
    if params.max_per_tx_usd is not None and value > params.max_per_tx_usd:
        return _deny(
            policy,
            "per_transaction_max_exceeded",
            f"{format_usd(value)} is above the per-transaction maximum of "
            f"{format_usd(params.max_per_tx_usd)} set at {policy.scope}",
        )
    if value <= params.instant_max_usd:
        return RuleResult(tier=Tier.INSTANT, grants=True)
    if params.notify_max_usd is not None and value <= params.notify_max_usd:
        return RuleResult(tier=Tier.NOTIFY, grants=True)
    if params.delay_max_usd is not None and value <= params.delay_max_usd:
        return RuleResult(tier=Tier.DELAY, grants=True, delay_s=params.delay_seconds or 0)
    return RuleResult(
        tier=Tier.APPROVAL,
        grants=True,
        reasons=(
            Reason(
                "approval_required",
                f"{format_usd(value)} is above the tiers without approval at {policy.scope}",
                policy.id,
                policy.version,
            ),
        ),
        approval=ApprovalRequirement(policy_id=policy.id),
    )


def allowed_chains(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, AllowedChainsParams)
    chain = facts.wallet.chain if facts.wallet else facts.request.chain
    if chain not in params.chains:
        return _deny(
            policy,
            "chain_not_allowed",
            f"chain {chain} is not allowed at {policy.scope} (allowed: {', '.join(params.chains)})",
        )
    return RuleResult()


def allowed_assets(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, AllowedAssetsParams)
    asset = facts.asset
    names = {name.lower() for name in params.assets}
    if asset is None or (asset.id.lower() not in names and asset.symbol.lower() not in names):
        label = asset.id if asset else facts.request.asset_id
        return _deny(
            policy,
            "asset_not_allowed",
            f"asset {label} is not allowed at {policy.scope} (allowed: {', '.join(params.assets)})",
        )
    return RuleResult()


def recipients(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, RecipientsParams)
    target = facts.request.spender if facts.request.kind is SpendKind.APPROVE else None
    target = target or facts.request.recipient
    if target is None:
        return _deny(policy, "recipient_unknown", "the spend names no recipient to check")
    address = normalize_address(target)
    for entry in params.deny or []:
        if normalize_address(entry.address) == address:
            label = f" ({entry.label})" if entry.label else ""
            return _deny(
                policy, "recipient_denied", f"recipient {target}{label} is on the deny list"
            )
    if params.allow is not None and all(
        normalize_address(entry.address) != address for entry in params.allow
    ):
        return _deny(
            policy,
            "recipient_not_allowed",
            f"recipient {target} is not in the address book of {policy.scope}",
        )
    return RuleResult()


def contracts(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, ContractsParams)
    request = facts.request
    if request.kind is not SpendKind.CONTRACT_CALL:
        return RuleResult()
    contract = normalize_address(request.contract or "")
    entry = next((e for e in params.allow if normalize_address(e.address) == contract), None)
    if entry is None:
        return _deny(
            policy, "contract_not_allowed", f"contract {request.contract} is not on the allowlist"
        )
    if entry.methods is not None and (request.method or "").lower() not in {
        method.lower() for method in entry.methods
    }:
        return _deny(
            policy,
            "contract_method_not_allowed",
            f"method {request.method} of contract {request.contract} is not allowed",
        )
    if entry.max_usd_per_call is not None and value > entry.max_usd_per_call:
        return _deny(
            policy,
            "contract_call_cap_exceeded",
            f"{format_usd(value)} is above the {format_usd(entry.max_usd_per_call)} cap per call "
            f"of contract {request.contract}",
        )
    return RuleResult()


def token_approvals(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, TokenApprovalsParams)
    request = facts.request
    if request.kind is not SpendKind.APPROVE:
        return RuleResult()
    spender = normalize_address(request.spender or "")
    unlimited = request.amount >= 2**255  # MAX_UINT256 and the near-max values wallets use
    for entry in params.allow:
        if normalize_address(entry.spender) != spender:
            continue
        if (
            entry.asset
            and facts.asset
            and entry.asset.lower()
            not in {
                facts.asset.id.lower(),
                facts.asset.symbol.lower(),
            }
        ):
            continue
        if unlimited:
            if entry.allow_unlimited:
                return RuleResult()
            continue
        if entry.max_amount is None or facts.asset is None:
            return RuleResult()
        limit = parse_amount(entry.max_amount, facts.asset.decimals, field="max_amount")
        if request.amount <= limit:
            return RuleResult()
    what = "an unlimited approval" if unlimited else "this approval amount"
    return _deny(
        policy,
        "token_approval_unlimited" if unlimited else "token_approval_not_allowed",
        f"{what} for spender {request.spender} is not allowed by {policy.scope}"
        + (f" (amount {request.amount} of max {MAX_UINT256})" if unlimited else ""),
    )


def message_signing(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, MessageSigningParams)
    typed = facts.request.typed_data
    if facts.request.kind is not SpendKind.SIGN_MESSAGE:
        return RuleResult()
    for entry in params.allow:
        if typed is None or entry.primary_type != typed.primary_type:
            continue
        if entry.domain_name is not None and entry.domain_name != typed.name:
            continue
        if entry.chain_id is not None and entry.chain_id != typed.chain_id:
            continue
        if entry.verifying_contract is not None and normalize_address(
            entry.verifying_contract
        ) != normalize_address(typed.verifying_contract or ""):
            continue
        return RuleResult()
    kind = typed.primary_type if typed else "untyped"
    return _deny(policy, "message_signing_not_allowed", f"signing {kind} data is not allowed")


def schedule(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, ScheduleParams)
    local = facts.now.astimezone(ZoneInfo(facts.org.timezone))
    day = schedule_day_name(local.weekday())
    hhmm = local.strftime("%H:%M")
    if day not in params.days or not (params.start <= hhmm < params.end):
        return _deny(
            policy,
            "outside_schedule",
            f"spending is allowed {','.join(params.days)} {params.start}-{params.end} "
            f"({facts.org.timezone}); it is {day} {hhmm}",
        )
    return RuleResult()


def rate_limit(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, RateLimitParams)
    claim = _claim(
        policy, facts, params.as_window(), limit=None, max_count=params.max_count, amount=value
    )
    return RuleResult(claims=(claim,))


def counterparty_limit(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, CounterpartyLimitParams)
    request = facts.request
    recipient = request.spender if request.kind is SpendKind.APPROVE else request.recipient
    if recipient is None:
        return _deny(policy, "recipient_unknown", "a counterparty limit needs a recipient")
    claim = _claim(
        policy,
        facts,
        params.as_window(),
        limit=params.limit_usd,
        max_count=None,
        amount=value,
        subject=normalize_address(recipient),
    )
    return RuleResult(claims=(claim,))


def fee_limit(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, FeeLimitParams)
    request = facts.request
    if params.max_fee_usd is not None:
        if request.fee_usd_micros is None:
            return _deny(policy, "fee_unknown", "a fee limit applies but no fee estimate was given")
        if request.fee_usd_micros > params.max_fee_usd:
            return _deny(
                policy,
                "fee_limit_exceeded",
                f"network fee {format_usd(request.fee_usd_micros)} is above the "
                f"{format_usd(params.max_fee_usd)} limit",
            )
    if params.max_gwei is not None:
        if request.gas_price_gwei is None:
            return _deny(policy, "fee_unknown", "a gas price limit applies but none was given")
        if request.gas_price_gwei > params.max_gwei:
            return _deny(
                policy,
                "fee_limit_exceeded",
                f"gas price {request.gas_price_gwei} gwei is above the "
                f"{params.max_gwei} gwei limit",
            )
    return RuleResult()


def approval(policy: Policy, facts: Facts, value: int) -> RuleResult:
    params = policy.params
    assert isinstance(params, ApprovalParams)
    if value <= params.threshold_usd:
        return RuleResult()
    who = "a second agent" if params.second_agent else f"{params.required} approver(s)"
    return RuleResult(
        tier=Tier.APPROVAL,
        reasons=(
            Reason(
                "approval_required",
                f"{format_usd(value)} is above the {format_usd(params.threshold_usd)} approval "
                f"threshold at {policy.scope}; needs {who}",
                policy.id,
                policy.version,
            ),
        ),
        approval=ApprovalRequirement(
            policy_id=policy.id,
            required=params.required,
            approvers=tuple(params.approvers or ()),
            group=params.group,
            second_agent=params.second_agent,
            expiry_s=params.expiry_seconds,
        ),
    )


EVALUATORS: dict[str, Evaluator] = {
    "budget": budget,
    "spending_tiers": spending_tiers,
    "allowed_chains": allowed_chains,
    "allowed_assets": allowed_assets,
    "recipients": recipients,
    "contracts": contracts,
    "token_approvals": token_approvals,
    "message_signing": message_signing,
    "schedule": schedule,
    "rate_limit": rate_limit,
    "counterparty_limit": counterparty_limit,
    "fee_limit": fee_limit,
    "approval": approval,
}
