"""Turning caller input into a normalized :class:`SpendRequest`, and fingerprinting it.

The fingerprint (SHA-256 over canonical JSON of the normalized request) is what idempotency
compares: a retry with the same key and the same fingerprint returns the first result; the same
key with another fingerprint is a conflict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import InvalidRequest, NotFound
from treasurer.domain.facts import SpendKind, SpendRequest, TypedDataDomain, normalize_address
from treasurer.domain.money import MAX_DECIMALS, Asset, format_amount, parse_amount, parse_usd
from treasurer.domain.org import Agent, Wallet


@dataclass(frozen=True, slots=True)
class SpendInput:
    """What a caller asks for, before parsing (amounts are decimal strings)."""

    agent: str
    wallet: str
    amount: object
    asset: str | None
    recipient: str | None = None
    chain: str | None = None
    kind: str = "transfer"
    contract: str | None = None
    method: str | None = None
    spender: str | None = None
    typed_data: TypedDataDomain | None = None
    fee_usd: object = None
    gas_price_gwei: int | None = None


@dataclass(frozen=True, slots=True)
class Resolved:
    request: SpendRequest
    agent: Agent
    wallet: Wallet
    asset: Asset | None
    fingerprint: str


def _kind(text: str) -> SpendKind:
    try:
        return SpendKind(text)
    except ValueError:
        allowed = ", ".join(k.value for k in SpendKind)
        raise InvalidRequest(f"kind: {text!r} is not one of {allowed}", field="kind") from None


def resolve(config: OrgConfig, spend: SpendInput) -> Resolved:
    """Look up agent, wallet and asset, parse the amount exactly, and fingerprint the request."""
    agent = config.agents.get(spend.agent)
    if agent is None:
        raise NotFound(f"agent {spend.agent!r} does not exist", field="agent")
    wallet = config.find_wallet(spend.wallet)
    if wallet is None:
        raise NotFound(
            f"wallet {spend.wallet!r} does not exist (give a wallet id or chain:address)",
            field="wallet",
        )
    kind = _kind(spend.kind)
    asset = config.find_asset(spend.asset, wallet.chain) if spend.asset else None
    if asset is not None:
        # Most contract calls send no native coin; their outflow is valued by the call itself.
        zero_ok = kind is SpendKind.CONTRACT_CALL
        amount = parse_amount(spend.amount, asset.decimals, allow_zero=zero_ok)
    elif kind is SpendKind.SIGN_MESSAGE and spend.asset is None:
        amount = 0
    else:
        amount = parse_amount(spend.amount, MAX_DECIMALS)  # validates the form; asset unknown
    fee = None if spend.fee_usd is None else parse_usd(spend.fee_usd, field="fee_usd")
    request = SpendRequest(
        agent_id=agent.id,
        wallet_id=wallet.id,
        asset_id=asset.id if asset else spend.asset,
        amount=amount,
        kind=kind,
        recipient=spend.recipient,
        chain=spend.chain,
        contract=spend.contract,
        method=spend.method,
        spender=spend.spender,
        typed_data=spend.typed_data,
        fee_usd_micros=fee,
        gas_price_gwei=spend.gas_price_gwei,
    )
    return Resolved(request, agent, wallet, asset, fingerprint(request))


def fingerprint(request: SpendRequest) -> str:
    typed = request.typed_data
    canonical = {
        "agent": request.agent_id,
        "wallet": request.wallet_id,
        "asset": request.asset_id,
        "amount": str(request.amount),
        "kind": request.kind.value,
        "recipient": normalize_address(request.recipient) if request.recipient else None,
        "chain": request.chain,
        "contract": normalize_address(request.contract) if request.contract else None,
        "method": request.method.lower() if request.method else None,
        "spender": normalize_address(request.spender) if request.spender else None,
        "typed_data": None
        if typed is None
        else [typed.primary_type, typed.name, typed.verifying_contract, typed.chain_id],
        "fee_usd_micros": request.fee_usd_micros,
        "gas_price_gwei": request.gas_price_gwei,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def request_dict(request: SpendRequest, asset: Asset | None) -> dict[str, object]:
    """The request as recorded in the audit trail (and replayed by backtests)."""
    typed = request.typed_data
    return {
        "agent": request.agent_id,
        "wallet": request.wallet_id,
        "asset": request.asset_id,
        "amount": format_amount(request.amount, asset.decimals) if asset else str(request.amount),
        "amount_base_units": str(request.amount),
        "kind": request.kind.value,
        "recipient": request.recipient,
        "chain": request.chain,
        "contract": request.contract,
        "method": request.method,
        "spender": request.spender,
        "fee_usd_micros": request.fee_usd_micros,
        "gas_price_gwei": request.gas_price_gwei,
        "typed_data": None if typed is None else asdict(typed),
    }
