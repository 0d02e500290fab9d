"""From a :class:`PaymentInput` to what the pipeline executes and what governance decides.

Everything checkable before anything is recorded happens here: the fields each kind needs (and
those it must not have), names, custody, the asset, the amount, and the calldata. Refusals are
errors, not decisions: a payment Treasurer cannot even build has nothing to decide. Each names
the offending field and says how to fix it.

A resolved payment has two faces, kept side by side so they cannot drift apart:

- ``transfer``, the :class:`Transfer` the chain executes (for a ``call``, the caller's calldata
  byte for byte);
- ``spend``, the :class:`SpendInput` governance decides, in which a ``call`` appears as the
  spend its calldata amounts to (see :mod:`.payment_calls`).

The payment row records the decided face (asset, amount, counterparty), which for a decoded
token call is the real token movement rather than the contract that was called.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import InvalidRequest, NotFound
from treasurer.domain.money import Asset, format_amount, parse_amount, usd_decimal_text
from treasurer.domain.org import Custody, Wallet
from treasurer.service.chain_ports import Chain, FeeQuote, Transfer, TransferKind
from treasurer.service.chain_registry import ChainRegistry
from treasurer.service.payment_calls import call_spend
from treasurer.service.payments_input import PaymentInput, PaymentKind
from treasurer.service.payments_results import fingerprint
from treasurer.service.requests import SpendInput

_GWEI: Final = 10**9

#: Per kind: the fields it needs, and what each is for (said when one is missing).
_REQUIRED: Final[dict[PaymentKind, dict[str, str]]] = {
    PaymentKind.TRANSFER: {
        "recipient": "the address that receives the payment",
        "amount": "a decimal string in token units, like '12.50'",
        "asset": "an asset id or symbol on the wallet's chain",
    },
    PaymentKind.APPROVE: {
        "recipient": "the spender the allowance is for",
        "amount": "the allowance, a decimal string in token units",
        "asset": "the token (an asset id or symbol on the wallet's chain)",
    },
    PaymentKind.CALL: {
        "to": "the contract address to call",
        "data": "the calldata in hex, starting with its 4-byte selector",
    },
}
#: Per kind: the fields it must not have, and where what the caller meant belongs instead.
_FORBIDDEN: Final[dict[PaymentKind, dict[str, str]]] = {
    PaymentKind.TRANSFER: {
        "to": "name the destination in recipient; to call a contract, use kind call",
        "data": "Treasurer encodes token transfers itself; to send raw calldata, use kind call",
        "value": "the amount of a transfer is amount; value is the native coin of a call",
    },
    PaymentKind.APPROVE: {
        "to": "name the spender in recipient and the token in asset",
        "data": "Treasurer encodes approve itself; to send raw calldata, use kind call",
        "value": "an approval sends no native coin",
    },
    PaymentKind.CALL: {
        "recipient": "the contract is to; a token recipient belongs in the calldata",
        "amount": "a call's native coin is value; token amounts belong in the calldata",
        "asset": "a call's asset is decoded from its calldata (or is the native coin)",
    },
}


@dataclass(frozen=True, slots=True)
class ResolvedPayment:
    """A payment ready to record, decide and execute.

    ``asset``, ``amount`` (base units) and ``counterparty`` are what is decided and recorded:
    for an ``approve`` the counterparty is the spender; for a ``call``, see
    :mod:`.payment_calls`.
    """

    agent_id: str
    wallet: Wallet
    kind: PaymentKind
    asset: Asset
    amount: int
    counterparty: str
    chain: Chain
    transfer: Transfer
    spend: SpendInput
    fingerprint: str

    def spend_with_fee(self, fee: FeeQuote | None, fee_usd: int | None) -> SpendInput:
        """The governance request with the fee, so ``fee_limit`` policies see it."""
        gwei = None
        if fee is not None and fee.max_fee_per_gas is not None:
            gwei = -(-fee.max_fee_per_gas // _GWEI)  # rounded up: a limit may only deny early
        fee_text = None if fee_usd is None else usd_decimal_text(fee_usd)
        return replace(self.spend, fee_usd=fee_text, gas_price_gwei=gwei)


def payment_kind(text: object) -> PaymentKind:
    """The kind of a payment; an unknown one names the kinds there are."""
    try:
        return PaymentKind(str(text))
    except ValueError:
        kinds = ", ".join(k.value for k in PaymentKind)
        raise InvalidRequest(
            f"kind: {text!r} is not a payment kind; use one of {kinds}",
            field="kind",
            code="payment_kind_invalid",
        ) from None


def _absent(value: object) -> bool:
    return value is None or value == ""


def check_fields(request: PaymentInput, kind: PaymentKind) -> None:
    """Each kind's required fields are present and the other kinds' fields are absent."""
    for name, meaning in _REQUIRED[kind].items():
        if _absent(getattr(request, name)):
            raise InvalidRequest(
                f"{name} is required for a {kind.value} payment: {meaning}",
                field=name,
                code="field_required",
            )
    for name, instead in _FORBIDDEN[kind].items():
        if not _absent(getattr(request, name)):
            raise InvalidRequest(
                f"{name} does not belong in a {kind.value} payment: {instead}",
                field=name,
                code="field_not_allowed",
            )


def resolve_payment(
    config: OrgConfig, chains: ChainRegistry, request: PaymentInput
) -> ResolvedPayment:
    """Validate ``request`` and resolve it against ``config`` and the chains of this node."""
    kind = payment_kind(request.kind)
    check_fields(request, kind)
    if request.agent not in config.agents:
        raise NotFound(f"agent {request.agent!r} does not exist", field="agent")
    wallet = config.find_wallet(request.wallet)
    if wallet is None:
        raise NotFound(f"wallet {request.wallet!r} does not exist", field="wallet")
    if wallet.custody is not Custody.LOCAL:
        raise InvalidRequest(
            f"wallet {wallet.handle} is held by {wallet.vendor}, not by Treasurer; authorize "
            "and capture its spends instead (governance mode)",
            field="wallet",
            code="wallet_not_custodial",
        )
    chain = chains.get(wallet.chain)
    if kind is PaymentKind.CALL:
        return _resolve_call(config, request, wallet, chain)
    return _resolve_movement(config, request, kind, wallet, chain)


def _resolve_movement(
    config: OrgConfig, request: PaymentInput, kind: PaymentKind, wallet: Wallet, chain: Chain
) -> ResolvedPayment:
    """A ``transfer`` or an ``approve``: asset, amount and counterparty as given."""
    assert request.asset is not None and request.recipient is not None  # check_fields
    asset = config.find_asset(request.asset, wallet.chain)
    if asset is None or asset.chain != wallet.chain:
        raise InvalidRequest(
            f"asset {request.asset!r} is not registered on {wallet.chain}",
            field="asset",
            code="unknown_asset",
        )
    approve = kind is PaymentKind.APPROVE
    if approve and asset.is_native:
        raise InvalidRequest(
            f"asset {asset.id} is the native coin, which has no allowances; approve a token",
            field="asset",
            code="approve_needs_token",
        )
    base = parse_amount(request.amount, asset.decimals)
    recipient = request.recipient
    text = format_amount(base, asset.decimals)
    if approve:
        spend = SpendInput(
            request.agent, wallet.id, text, asset.id, kind="approve", spender=recipient
        )
        move = TransferKind.APPROVE
    else:
        spend = SpendInput(request.agent, wallet.id, text, asset.id, recipient=recipient)
        move = TransferKind.TRANSFER
    transfer = Transfer(wallet.address, recipient, base, asset.address, kind=move)
    hashed = fingerprint(request.agent, wallet, asset, base, recipient, kind=kind.value)
    return ResolvedPayment(
        request.agent, wallet, kind, asset, base, recipient, chain, transfer, spend, hashed
    )


def _resolve_call(
    config: OrgConfig, request: PaymentInput, wallet: Wallet, chain: Chain
) -> ResolvedPayment:
    """A ``call``: decoded into the spend it amounts to; executed as given."""
    assert request.to is not None and request.data is not None  # check_fields
    call = call_spend(config, wallet.chain, chain.family, request.to, request.data, request.value)
    transfer = Transfer(wallet.address, call.to, call.value, kind=TransferKind.CALL, data=call.data)
    hashed = fingerprint(
        request.agent,
        wallet,
        call.asset,
        call.amount,
        call.counterparty,
        kind=PaymentKind.CALL.value,
        to=call.to,
        data=call.data,
        value=call.value,
    )
    return ResolvedPayment(
        request.agent,
        wallet,
        PaymentKind.CALL,
        call.asset,
        call.amount,
        call.counterparty,
        chain,
        transfer,
        call.spend_input(request.agent, wallet.id),
        hashed,
    )
