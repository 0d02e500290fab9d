"""The decision: a pure function from :class:`Facts` to :class:`Decision`.

Laws (tested as properties):

- **Default deny.** A spend needs at least one enforced granting policy (``budget`` or
  ``spending_tiers``) in scope; otherwise ``no_policy_allows``.
- **All scopes apply.** Org, every ancestor department, agent and wallet policies are all in
  ``facts.policies``; each narrows, none widens.
- **Deny overrides; order never matters.** Results are combined as a set; the strictest tier
  wins (``deny > approval > delay > notify > instant``); reasons come out sorted.
- **Fail closed.** A missing or stale price, an unknown asset, a frozen scope, an evaluator
  that raises — each is a deny with its own code.
- **Shadow.** Shadow policies are evaluated the same way and recorded beside the decision.
"""

from __future__ import annotations

from treasurer.domain.budgets import BudgetBalance, BudgetClaim, Headroom, headroom_of, window_code
from treasurer.domain.facts import Facts, SpendKind
from treasurer.domain.money import MAX_USD_MICROS, format_usd, value_usd_micros
from treasurer.domain.org import AgentStatus, Scope, ScopeKind, WalletStatus
from treasurer.domain.outcome import (
    ApprovalRequirement,
    Decision,
    Reason,
    RuleResult,
    ShadowResult,
    Tier,
    strictest,
)
from treasurer.domain.policies import GRANTING_TYPES, Policy, PolicyMode
from treasurer.domain.rules import EVALUATORS


def _gate_reasons(facts: Facts) -> list[Reason]:
    """Identity, state and freeze checks that no policy can override."""
    request, agent, wallet = facts.request, facts.agent, facts.wallet
    if agent is None:
        return [Reason("unknown_agent", f"agent {request.agent_id} does not exist")]
    if wallet is None:
        return [Reason("unknown_wallet", f"wallet {request.wallet_id} does not exist")]
    reasons: list[Reason] = []
    if agent.status is AgentStatus.DECOMMISSIONED:
        reasons.append(Reason("agent_decommissioned", f"agent {agent.id} is decommissioned"))
    elif agent.status is AgentStatus.FROZEN or Scope(ScopeKind.AGENT, agent.id) in facts.frozen:
        reasons.append(Reason("agent_frozen", f"agent {agent.id} is frozen"))
    if wallet.agent_id != agent.id:
        reasons.append(
            Reason(
                "wallet_not_owned", f"wallet {wallet.handle} does not belong to agent {agent.id}"
            )
        )
    if (
        wallet.status is not WalletStatus.ACTIVE
        or Scope(ScopeKind.WALLET, wallet.id) in facts.frozen
    ):
        status = "frozen" if wallet.status is not WalletStatus.RETIRED else "retired"
        reasons.append(Reason(f"wallet_{status}", f"wallet {wallet.handle} is {status}"))
    for department in facts.department_ids:
        if Scope(ScopeKind.DEPARTMENT, department) in facts.frozen:
            reasons.append(Reason("department_frozen", f"department {department} is frozen"))
    if Scope(ScopeKind.ORG, facts.org.id) in facts.frozen:
        reasons.append(Reason("org_frozen", f"all spending of org {facts.org.id} is frozen"))
    if request.chain is not None and request.chain != wallet.chain:
        reasons.append(
            Reason(
                "chain_mismatch",
                f"wallet {wallet.handle} is on {wallet.chain}, not {request.chain}",
            )
        )
    return reasons


def _value(facts: Facts) -> tuple[int | None, list[Reason]]:
    """USD micros leaving the wallet, or the reason it cannot be known (fail closed)."""
    request, asset, price = facts.request, facts.asset, facts.price
    if request.kind is SpendKind.SIGN_MESSAGE and request.asset_id is None:
        return 0, []
    if request.amount < 0 or (request.amount == 0 and request.kind is not SpendKind.CONTRACT_CALL):
        return None, [
            Reason("amount_invalid", f"amount {request.amount} must be greater than zero")
        ]
    if asset is None:
        named = (
            f"asset {request.asset_id} is not registered"
            if request.asset_id
            else ("the spend names no asset, so it cannot be valued")
        )
        return None, [Reason("unknown_asset", named)]
    if facts.wallet is not None and asset.chain != facts.wallet.chain:
        return None, [
            Reason(
                "asset_chain_mismatch",
                f"asset {asset.id} is on {asset.chain}, wallet {facts.wallet.handle} is on "
                f"{facts.wallet.chain}",
            )
        ]
    if price is None or price.price_atto <= 0:
        return None, [Reason("price_unavailable", f"no usable USD price is known for {asset.id}")]
    age_s = (facts.now - price.as_of).total_seconds()
    if asset.price_source != "fixed" and age_s > asset.max_price_age_s:
        return None, [
            Reason(
                "price_stale",
                f"the {asset.id} price is {int(age_s)}s old; the limit is {asset.max_price_age_s}s",
            )
        ]
    value = value_usd_micros(request.amount, asset.decimals, price.price_atto)
    if value > MAX_USD_MICROS and request.kind is SpendKind.APPROVE:
        # An (effectively) unlimited approval: valued at the ceiling, so every budget sees it
        # as at least that large and token_approvals can name the real problem.
        return MAX_USD_MICROS, []
    if value > MAX_USD_MICROS:
        return None, [
            Reason(
                "amount_too_large",
                f"the spend is worth more than {format_usd(MAX_USD_MICROS)}",
            )
        ]
    return value, []


def _kind_gate(facts: Facts, policies: list[Policy]) -> list[Reason]:
    """Special spends need a policy of their own kind to exist at all (default deny)."""
    needs = {
        SpendKind.CONTRACT_CALL: ("contracts", "contract_not_allowed", "contract calls"),
        SpendKind.APPROVE: ("token_approvals", "token_approval_not_allowed", "token approvals"),
        SpendKind.SIGN_MESSAGE: (
            "message_signing",
            "message_signing_not_allowed",
            "message signing",
        ),
    }.get(facts.request.kind)
    if needs is None or any(p.type == needs[0] for p in policies):
        return []
    return [Reason(needs[1], f"no {needs[0]} policy allows {needs[2]} for this agent")]


def _evaluate(policy: Policy, facts: Facts, value: int) -> RuleResult:
    try:
        return EVALUATORS[policy.type](policy, facts, value)
    except Exception as exc:  # fail closed: a rule that errors denies
        return RuleResult(
            reasons=(
                Reason(
                    "policy_evaluation_failed",
                    f"policy {policy.id} could not be evaluated ({type(exc).__name__}: {exc})",
                    policy.id,
                    policy.version,
                ),
            ),
            tier=Tier.DENY,
        )


def _spent_text(claim: BudgetClaim, balance: BudgetBalance, facts: Facts) -> str:
    breakdown = facts.spent_by_wallet.get(claim.key, ())
    spent = format_usd(balance.used_micros)
    if len(breakdown) == 1:
        return f"{spent} already spent on wallet {breakdown[0][0]}"
    if breakdown:
        parts = ", ".join(
            f"{format_usd(micros)} on wallet {handle}" for handle, micros in breakdown
        )
        return f"{spent} already spent: {parts}"
    return f"{spent} already spent"


def budget_reasons(claim: BudgetClaim, balance: BudgetBalance, facts: Facts) -> list[Reason]:
    """Reasons a claim does not fit a balance, with the numbers that show it."""
    reasons: list[Reason] = []
    scope = claim.scope
    who = f"{scope.kind.value} {scope.id}"
    if claim.policy_type == "rate_limit":
        prefix = "rate_limit"
    elif claim.policy_type == "counterparty_limit":
        prefix = "counterparty_limit"
    else:
        prefix = f"{scope.kind.value}_{window_code(claim.window)}_budget"
    if (
        claim.limit_micros is not None
        and balance.used_micros + claim.amount_micros > claim.limit_micros
    ):
        after = balance.used_micros + claim.amount_micros
        noun = "budget" if claim.policy_type == "budget" else "limit"
        to_whom = f" to {claim.subject}" if claim.subject else ""
        reasons.append(
            Reason(
                f"{prefix}_exceeded",
                f"{who} would reach {format_usd(after)}{to_whom} of its "
                f"{format_usd(claim.limit_micros)} {claim.window.adjective} {noun} "
                f"({_spent_text(claim, balance, facts)})",
                claim.policy_id,
                claim.policy_version,
            )
        )
    if claim.max_count is not None and balance.used_count + 1 > claim.max_count:
        code = "rate_limit_exceeded" if prefix == "rate_limit" else f"{prefix}_count_exceeded"
        reasons.append(
            Reason(
                code,
                f"{who} has made {balance.used_count} of its {claim.max_count} allowed "
                f"transactions ({claim.window.adjective})",
                claim.policy_id,
                claim.policy_version,
            )
        )
    return reasons


def _check_claims(claims: list[BudgetClaim], facts: Facts) -> tuple[list[Reason], list[Headroom]]:
    reasons: list[Reason] = []
    headroom: list[Headroom] = []
    for claim in claims:
        balance = facts.balances.get(claim.key, BudgetBalance())
        headroom.append(headroom_of(claim, balance))
        reasons.extend(budget_reasons(claim, balance, facts))
    return reasons, headroom


def _combine(
    results: list[RuleResult], facts: Facts
) -> tuple[list[Reason], Tier, list[BudgetClaim], list[Headroom], int, list[ApprovalRequirement]]:
    reasons = [reason for result in results for reason in result.reasons]
    claims = sorted(
        {c.key: c for r in results for c in r.claims}.values(), key=lambda c: c.lock_order
    )
    budget_denials, headroom = _check_claims(claims, facts)
    reasons.extend(budget_denials)
    tier = strictest([r.tier for r in results])
    if budget_denials:
        tier = Tier.DENY
    delay_s = max((r.delay_s for r in results), default=0)
    approvals = sorted(
        (r.approval for r in results if r.approval is not None),
        key=lambda a: (-a.required, a.policy_id or ""),
    )
    # A tier's bare "approval above" names nobody: an approval policy that names who approves
    # answers it. Only when none does is it left for a finance or admin key.
    named = [a for a in approvals if a.approvers or a.group or a.second_agent]
    return reasons, tier, claims, headroom, delay_s, named or approvals


def _shadow(policy: Policy, facts: Facts, value: int | None) -> ShadowResult:
    result = RuleResult(tier=Tier.DENY) if value is None else _evaluate(policy, facts, value)
    reasons, tier, claims, *_ = _combine([result], facts)
    return ShadowResult(
        policy_id=policy.id,
        policy_version=policy.version,
        policy_type=policy.type,
        would_deny=tier is Tier.DENY,
        tier=tier,
        reasons=tuple(sorted(reasons, key=lambda r: (r.code, r.policy_id or ""))),
        claims=tuple(claims),
    )


def decide(facts: Facts) -> Decision:
    """Decide one spend from its facts. Pure: same facts, same decision."""
    enforced = [p for p in facts.policies if p.mode is PolicyMode.ENFORCE]
    shadows = [p for p in facts.policies if p.mode is PolicyMode.SHADOW]
    versions = tuple(sorted((p.id, p.version) for p in facts.policies))
    gate = _gate_reasons(facts)
    value, value_reasons = _value(facts)
    gate.extend(value_reasons)
    gate.extend(_kind_gate(facts, enforced))
    if not any(p.type in GRANTING_TYPES for p in enforced):
        gate.append(
            Reason("no_policy_allows", "no enforced budget or spending tier covers this spend")
        )
    results = [_evaluate(p, facts, value) for p in enforced] if value is not None else []
    reasons, tier, claims, headroom, delay_s, approvals = _combine(results, facts)
    reasons = gate + reasons
    denied = bool(gate) or tier is Tier.DENY
    if denied:
        reasons = [r for r in reasons if r.code != "approval_required"]
    return Decision(
        allowed=not denied,
        tier=Tier.DENY if denied else tier,
        reasons=tuple(sorted(set(reasons), key=lambda r: (r.code, r.policy_id or "", r.message))),
        value_usd_micros=value,
        claims=tuple(claims),
        headroom=tuple(headroom),
        shadow=tuple(_shadow(p, facts, value) for p in sorted(shadows, key=lambda p: p.id)),
        delay_s=delay_s if tier is Tier.DELAY and not denied else 0,
        approvals=tuple(approvals) if tier is Tier.APPROVAL and not denied else (),
        policy_versions=versions,
    )
