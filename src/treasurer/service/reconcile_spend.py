"""Counting a spend nobody authorized: its value, the budgets it lands on, its ledger record.

Money that left a wallet without an authorization is still money spent, so it is counted like a
captured authorization (SPEC §5: a budget breach is an unauthorized on-chain spend too):

- **Value.** The asset is found by its token address (or as the chain's native coin); the
  price is the asset's fixed peg or its last manual price, *even when stale*: after the fact,
  an old price is a better estimate than none. A transfer of an unregistered token, or of an
  asset with no price at all, is still recorded, at $0 (``unpriced``), and still counts one
  transaction on every count limit.
- **Budgets.** Every enforced ``budget``, ``rate_limit`` and ``counterparty_limit`` policy
  covering the wallet gives its claim, computed by the same evaluators a decision uses, so the
  spend lands on exactly the balance rows an authorized spend would have. Gates (freezes,
  allowlists, tiers) are not consulted: they decide whether to allow, and this already happened.
- **Record.** A ``captured`` authorization with tier ``unauthorized``, the transaction hash as
  its ``tx_hash`` and a decision that says why (reason ``spend_unauthorized`` or
  ``spend_exceeds_authorization``). Spend reports, per-wallet breakdowns and shadow usage read
  authorizations, so they reflect the chain without knowing about reconciliation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from treasurer.domain.authorization import Authorization, AuthState
from treasurer.domain.budgets import BudgetClaim
from treasurer.domain.config import OrgConfig
from treasurer.domain.facts import Facts, PriceQuote, SpendRequest
from treasurer.domain.money import (
    MAX_USD_MICROS,
    Asset,
    format_amount,
    value_usd_micros,
)
from treasurer.domain.money import usd_decimal_text as usd_text
from treasurer.domain.org import Agent, Wallet
from treasurer.domain.policies import PolicyMode
from treasurer.domain.rules import EVALUATORS
from treasurer.service.chain_ports import ObservedTransfer
from treasurer.service.chain_registry import native_asset
from treasurer.service.governance import new_id
from treasurer.service.payment_calls import token_at
from treasurer.service.ports import Store

#: Policy types whose claims count a spend (the others only allow or deny).
COUNTING_TYPES = frozenset({"budget", "rate_limit", "counterparty_limit"})
#: The tier an unauthorized spend is recorded with (never a tier a decision gives).
UNAUTHORIZED_TIER = "unauthorized"
ACTOR = "system:reconcile"


@dataclass(frozen=True, slots=True)
class Valuation:
    """What a transfer is worth. ``asset_id`` names an unregistered token as
    ``<network>:<token>``; ``priced`` is False when it is counted at $0 for want of a price."""

    asset: Asset | None
    asset_id: str
    usd_micros: int
    price: PriceQuote | None
    priced: bool
    stale: bool = False

    @property
    def decimals(self) -> int | None:
        return None if self.asset is None else self.asset.decimals

    def amount_text(self, amount: int) -> str:
        return str(amount) if self.asset is None else format_amount(amount, self.asset.decimals)


def asset_of(config: OrgConfig, network: str, token: str | None) -> Asset | None:
    """The registered asset a transfer moves: the native coin, or the token at ``token``."""
    if token is None:
        return native_asset(config, network)
    return token_at(config, network, token)


def value(
    config: OrgConfig, store: Store, network: str, transfer: ObservedTransfer, now: datetime
) -> Valuation:
    """The USD value of ``transfer`` at the asset's last known price (see the module doc)."""
    asset = asset_of(config, network, transfer.token)
    if asset is None:
        label = f"{network}:{transfer.token or 'native'}"
        return Valuation(None, label, 0, None, priced=False)
    price: PriceQuote | None
    if asset.price_source == "fixed" and asset.fixed_price_atto is not None:
        price = PriceQuote(asset.fixed_price_atto, now, "fixed")
    else:
        price = store.price(asset.id)
    if price is None or price.price_atto <= 0:
        return Valuation(asset, asset.id, 0, None, priced=False)
    usd = min(value_usd_micros(transfer.amount, asset.decimals, price.price_atto), MAX_USD_MICROS)
    stale = (now - price.as_of).total_seconds() > asset.max_price_age_s
    return Valuation(asset, asset.id, usd, price, priced=True, stale=stale)


def claims_of(
    config: OrgConfig,
    agent: Agent,
    wallet: Wallet,
    valuation: Valuation,
    transfer: ObservedTransfer,
    now: datetime,
) -> list[BudgetClaim]:
    """The balance rows this spend counts on, in the global lock order."""
    request = SpendRequest(
        agent_id=agent.id,
        wallet_id=wallet.id,
        asset_id=valuation.asset_id,
        amount=transfer.amount,
        recipient=transfer.recipient,
        chain=wallet.chain,
    )
    facts = Facts(
        request=request,
        now=now,
        org=config.org,
        agent=agent,
        wallet=wallet,
        department_ids=config.departments_of(agent),
        asset=valuation.asset,
        price=valuation.price,
        policies=config.policies_for(agent, wallet),
        frozen=config.frozen,
    )
    found: dict[str, BudgetClaim] = {}
    for policy in facts.policies:
        if policy.mode is not PolicyMode.ENFORCE or policy.type not in COUNTING_TYPES:
            continue
        for claim in EVALUATORS[policy.type](policy, facts, valuation.usd_micros).claims:
            found[claim.key] = claim
    return sorted(found.values(), key=lambda c: c.lock_order)


def unauthorized_record(
    *,
    network: str,
    agent: Agent,
    wallet: Wallet,
    transfer: ObservedTransfer,
    valuation: Valuation,
    claims: list[BudgetClaim],
    now: datetime,
    reason: tuple[str, str],
    usd_micros: int | None = None,
) -> Authorization:
    """The captured authorization that counts ``transfer`` (``usd_micros`` overrides the
    transfer's value: an excess over what was authorized counts only the excess)."""
    usd = valuation.usd_micros if usd_micros is None else usd_micros
    code, message = reason
    key = f"{network}:{transfer.tx_id}:{transfer.index}"
    request = {
        "agent": agent.id,
        "wallet": wallet.id,
        "asset": valuation.asset_id,
        "amount": valuation.amount_text(transfer.amount),
        "amount_base_units": str(transfer.amount),
        "kind": "transfer",
        "recipient": transfer.recipient,
        "chain": network,
    }
    decision: dict[str, object] = {
        "allowed": False,
        "tier": UNAUTHORIZED_TIER,
        "value_usd": usd_text(usd),
        "reasons": [{"code": code, "message": message, "policy_id": None, "policy_version": None}],
        "budgets": [],
        "counted_on": [claim.key for claim in claims],
        "request": request,
        "observed": {
            "network": network,
            "tx_id": transfer.tx_id,
            "index": transfer.index,
            "block": transfer.block,
            "token": transfer.token,
            "initiator": transfer.initiator,
            "priced": valuation.priced,
            "price_stale": valuation.stale,
        },
    }
    return Authorization(
        id=new_id("auth"),
        agent_id=agent.id,
        wallet_id=wallet.id,
        department_id=agent.department_id,
        chain=network,
        asset_id=valuation.asset_id,
        amount=transfer.amount,
        value_usd_micros=usd,
        state=AuthState.CAPTURED,
        tier=UNAUTHORIZED_TIER,
        created_at=now,
        expires_at=None,
        idempotency_key=f"chain:{key}"[:200],
        request_hash=hashlib.sha256(key.encode()).hexdigest(),
        recipient=transfer.recipient,
        decision=decision,
        price_atto=None if valuation.price is None else valuation.price.price_atto,
        decimals=valuation.decimals,
        captured_amount=transfer.amount,
        captured_usd_micros=usd,
        finalized_at=now,
        tx_hash=transfer.tx_id,
        vendor=wallet.vendor,
    )
