"""What a decision is made from: the spend request and every fact loaded for it.

The service loads these (org, agent, wallet, department chain, asset, price, policies in force,
freezes, balance snapshots) and hands them to :func:`treasurer.domain.decision.decide`, a pure
function. Facts are values, so a decision can be replayed later from what was recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from treasurer.domain.budgets import BudgetBalance
from treasurer.domain.money import Asset
from treasurer.domain.org import Agent, Org, Scope, Wallet
from treasurer.domain.policies import Policy


class SpendKind(StrEnum):
    """What the wallet is about to sign."""

    TRANSFER = "transfer"
    APPROVE = "approve"
    CONTRACT_CALL = "contract_call"
    SIGN_MESSAGE = "sign_message"


@dataclass(frozen=True, slots=True)
class TypedDataDomain:
    """The parts of an EIP-712 request that ``message_signing`` policies match on."""

    primary_type: str
    name: str | None = None
    verifying_contract: str | None = None
    chain_id: int | None = None


@dataclass(frozen=True, slots=True)
class SpendRequest:
    """A normalized request to spend (amount already parsed into base units).

    ``recipient`` is the real destination (for a token transfer, the decoded ``to``, not the
    token contract); ``spender`` is the approved party of an ``approve``.
    """

    agent_id: str
    wallet_id: str
    asset_id: str | None
    amount: int
    kind: SpendKind = SpendKind.TRANSFER
    recipient: str | None = None
    chain: str | None = None
    contract: str | None = None
    method: str | None = None
    spender: str | None = None
    typed_data: TypedDataDomain | None = None
    fee_usd_micros: int | None = None
    gas_price_gwei: int | None = None


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """A USD price per whole token (atto-dollars) and when it was set."""

    price_atto: int
    as_of: datetime
    source: str


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything :func:`decide` may look at. Nothing else is consulted."""

    request: SpendRequest
    now: datetime
    org: Org
    agent: Agent | None
    wallet: Wallet | None
    department_ids: tuple[str, ...]
    asset: Asset | None
    price: PriceQuote | None
    policies: tuple[Policy, ...]
    frozen: frozenset[Scope] = frozenset()
    balances: Mapping[str, BudgetBalance] = field(default_factory=dict)
    #: Per budget key: (wallet handle, USD micros used) — only loaded to explain a denial.
    spent_by_wallet: Mapping[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


def normalize_address(address: str) -> str:
    """EVM addresses compare case-insensitively; others (base58) exactly."""
    return address.lower() if address.startswith(("0x", "0X")) else address
