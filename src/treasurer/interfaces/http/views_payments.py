"""Payments, dry runs and balances as wire models: base units to decimal strings.

Apart from :mod:`.views` only to keep each module small; the conventions are the same. Token
amounts are shown in token units when the asset is still registered, and always exactly in
base units; fees are native base units (wei, lamports) with their USD value.
"""

from __future__ import annotations

from treasurer.domain.config import OrgConfig
from treasurer.domain.money import Asset, format_amount, usd_decimal_text
from treasurer.domain.payment import Payment
from treasurer.interfaces.http.views import decision_out
from treasurer.service.payments_results import PaymentPreview
from treasurer.wire import (
    AssetBalanceOut,
    FeeQuoteOut,
    PaymentOut,
    PaymentPreviewOut,
    SimulationOut,
)


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _usd(micros: int | None) -> str | None:
    return None if micros is None else usd_decimal_text(micros)


def payment_out(
    payment: Payment,
    config: OrgConfig,
    decision: dict[str, object] | None = None,
    *,
    replayed: bool = False,
) -> PaymentOut:
    """``decision`` is the stored decision dict; empty or None (a payment that failed before
    it was decided, or a list item) gives ``decision: null``."""
    asset = config.assets.get(payment.asset_id)
    return PaymentOut(
        id=payment.id,
        state=payment.state.value,
        tier=payment.tier,
        agent=payment.agent_id,
        wallet=payment.wallet_id,
        chain=payment.chain,
        asset=payment.asset_id,
        recipient=payment.recipient,
        amount=None if asset is None else format_amount(payment.amount, asset.decimals),
        amount_base_units=str(payment.amount),
        tx_id=payment.tx_id,
        fee_quote=_text(payment.fee_quote),
        fee_quote_usd=_usd(payment.fee_quote_usd_micros),
        fee_paid=_text(payment.fee_paid),
        fee_paid_usd=_usd(payment.fee_paid_usd_micros),
        error=payment.error,
        authorization=payment.authorization_id,
        idempotency_key=payment.idempotency_key,
        created_at=payment.created_at,
        updated_at=payment.updated_at,
        broadcast_at=payment.broadcast_at,
        finalized_at=payment.finalized_at,
        decision=decision_out(decision) if decision else None,
        replayed=replayed,
    )


def preview_out(preview: PaymentPreview) -> PaymentPreviewOut:
    fee = preview.fee
    return PaymentPreviewOut(
        decision=decision_out(preview.decision),
        fee=None
        if fee is None
        else FeeQuoteOut(
            max_fee=str(fee.max_fee),
            max_fee_usd=_usd(preview.fee_usd_micros),
            gas_limit=_text(fee.gas_limit),
            max_fee_per_gas=_text(fee.max_fee_per_gas),
            max_priority_fee_per_gas=_text(fee.max_priority_fee_per_gas),
        ),
        simulation=SimulationOut(ok=preview.simulation.ok, error=preview.simulation.error),
    )


def asset_balance_out(asset: Asset, base_units: int | None, error: str | None) -> AssetBalanceOut:
    return AssetBalanceOut(
        asset=asset.id,
        symbol=asset.symbol,
        token=asset.address,
        amount=None if base_units is None else format_amount(base_units, asset.decimals),
        base_units=_text(base_units),
        error=error,
    )
