"""What the payment pipeline hands back, and the values it derives from a payment.

Kept apart from :mod:`.payments` so interfaces (HTTP routes, SDK wire shapes) can import the
result types without the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from treasurer.domain.facts import normalize_address
from treasurer.domain.money import Asset
from treasurer.domain.org import Wallet
from treasurer.domain.outcome import Decision
from treasurer.domain.payment import Payment, PaymentState
from treasurer.service.chain_ports import FeeQuote, Simulation


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """What ``submit`` (and ``pay``) returns: the stored payment and the decision behind it."""

    payment: Payment
    decision: dict[str, object]
    replayed: bool = False

    @property
    def id(self) -> str:
        return self.payment.id

    @property
    def state(self) -> PaymentState:
        return self.payment.state

    @property
    def codes(self) -> list[str]:
        reasons = self.decision.get("reasons", [])
        assert isinstance(reasons, list)
        return [str(r["code"]) for r in reasons]


@dataclass(frozen=True, slots=True)
class PaymentPreview:
    """A dry run: the full decision, the fee quote and a simulation; nothing is reserved."""

    decision: Decision
    fee: FeeQuote | None  # None: the call would revert, so there is no fee to quote
    fee_usd_micros: int | None
    simulation: Simulation


def fingerprint(
    agent: str,
    wallet: Wallet,
    asset: Asset,
    amount: int,
    recipient: str,
    *,
    kind: str = "transfer",
    to: str | None = None,
    data: bytes = b"",
    value: int = 0,
) -> str:
    """What idempotency compares: the request as asked, without the (changing) fee quote.

    It covers the kind and, for the kinds that have them, the spender (``recipient`` of an
    approve), the contract, the exact calldata and the native value, so a retry that asks for
    something else under the same key is a conflict. A transfer hashes exactly as it did before
    payments had kinds, so a retry that spans an upgrade still replays.
    """
    canonical: list[str | None] = [
        agent,
        wallet.id,
        asset.id,
        str(amount),
        normalize_address(recipient),
    ]
    if kind != "transfer":
        target = None if to is None else normalize_address(to)
        canonical += [kind, target, data.hex(), str(value)]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def notice_payload(payment: Payment, kind: str = "transfer") -> dict[str, object]:
    """What the outbox says about a notify-tier payment (ids, kind, amount, where it went).

    ``recipient`` is the counterparty that was decided: the spender of an approve, the decoded
    token recipient of a call, or the contract of an opaque call.
    """
    return {
        "payment": payment.id,
        "kind": kind,
        "authorization": payment.authorization_id,
        "agent": payment.agent_id,
        "wallet": payment.wallet_id,
        "chain": payment.chain,
        "asset": payment.asset_id,
        "amount_base_units": str(payment.amount),
        "recipient": payment.recipient,
        "tx_id": payment.tx_id,
        "tier": payment.tier,
    }
