"""Turning a :class:`Transfer` into an EVM call, and pricing it under EIP-1559.

Pure functions over plain values, so the rules (what a token transfer's calldata is, how much fee
headroom a quote carries) are read and tested without a node.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from eth_typing import ChecksumAddress
from eth_utils.address import is_checksum_address, to_checksum_address
from web3.types import TxParams, Wei

from treasurer.domain.calldata import (
    APPROVE_SELECTOR,
    TRANSFER_FROM_SELECTOR,
    TRANSFER_SELECTOR,
    encode_approve,
    encode_transfer,
)
from treasurer.domain.errors import AmountError, InvalidRequest
from treasurer.domain.money import MAX_UINT256
from treasurer.service.chain_ports import FeeQuote, Transfer, TransferKind

_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")
NATIVE_TRANSFER_GAS: Final = 21_000
_FLAG_SELECTORS: Final = frozenset(
    s.removeprefix("0x") for s in (TRANSFER_SELECTOR, TRANSFER_FROM_SELECTOR, APPROVE_SELECTOR)
)


def checksum_address(address: str, field: str) -> ChecksumAddress:
    """Validate ``address`` and return its EIP-55 form.

    All-lowercase (or all-uppercase) hex carries no checksum and is accepted; mixed case is a
    checksum, and a wrong one is refused: it is how a mistyped address gets noticed.
    """
    if not _ADDRESS.fullmatch(address):
        raise InvalidRequest(
            f"{field}: {address!r} is not an EVM address (0x followed by 40 hex digits)",
            field=field,
            code="address_invalid",
        )
    digits = address[2:]
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(address):
        raise InvalidRequest(
            f"{field}: {address} has mixed case but a wrong EIP-55 checksum; check for a typo",
            field=field,
            code="address_checksum_invalid",
        )
    return to_checksum_address(address)


@dataclass(frozen=True, slots=True)
class EvmCall:
    """What a transfer executes: a call from ``sender`` to ``to`` with ``value`` and ``data``."""

    sender: ChecksumAddress
    to: ChecksumAddress
    value: int
    data: bytes

    def params(self) -> TxParams:
        """The call as web3 transaction parameters (for ``eth_call`` / ``eth_estimateGas``)."""
        params: TxParams = {"from": self.sender, "to": self.to, "value": Wei(self.value)}
        if self.data:
            params["data"] = self.data
        return params


def call_for(transfer: Transfer) -> EvmCall:
    """The call that carries out ``transfer``: a value send, an ERC-20 transfer/approve, or a
    raw contract call whose calldata is passed through untouched.

    Approvals may be zero (that revokes an allowance), and so may a call's native value;
    transfers must move something. Only a ``CALL`` carries ``data``: for the other kinds the
    calldata is ours to encode, and a stray ``data`` means the caller meant something else.
    """
    is_call = transfer.kind is TransferKind.CALL
    sender = checksum_address(transfer.sender, "sender")
    recipient = checksum_address(transfer.recipient, "to" if is_call else "recipient")
    amount = transfer.amount
    lowest = 1 if transfer.kind is TransferKind.TRANSFER else 0
    if amount < lowest:
        code = "amount_negative" if amount < 0 else "amount_zero"
        raise AmountError(f"amount: {amount} is below {lowest}", field="amount", code=code)
    if amount > MAX_UINT256:
        raise AmountError(
            "amount: beyond the largest on-chain amount (2^256-1 base units)",
            field="amount",
            code="amount_too_large",
        )
    if is_call:
        return _raw_call(transfer, sender, recipient)
    if transfer.data:
        raise InvalidRequest(
            f"a {transfer.kind.value} carries no calldata (Treasurer encodes it); send raw "
            "calldata as a call",
            field="data",
            code="data_not_allowed",
        )
    if transfer.token is None:
        if transfer.kind is TransferKind.APPROVE:
            raise InvalidRequest(
                "an approval needs a token; native coins have no allowances",
                field="token",
                code="approve_needs_token",
            )
        return EvmCall(sender, recipient, amount, b"")
    token = checksum_address(transfer.token, "token")
    if transfer.kind is TransferKind.APPROVE:
        return EvmCall(sender, token, 0, encode_approve(recipient.lower(), amount))
    return EvmCall(sender, token, 0, encode_transfer(recipient.lower(), amount))


def _raw_call(transfer: Transfer, sender: ChecksumAddress, to: ChecksumAddress) -> EvmCall:
    """A ``CALL``: the caller's bytes to ``to``, with the native value in ``amount``."""
    if transfer.token is not None:
        raise InvalidRequest(
            "a call names its contract in the recipient; it has no token",
            field="token",
            code="call_token_not_allowed",
        )
    if not transfer.data:
        raise InvalidRequest(
            "a call needs calldata; a plain value send is a transfer",
            field="data",
            code="calldata_missing",
        )
    return EvmCall(sender, to, transfer.amount, bytes(transfer.data))


def reports_success(call: EvmCall) -> bool:
    """Whether the call is an ERC-20 ``transfer``/``transferFrom``/``approve``, whose ``bool``
    return value says if it worked: some tokens return ``false`` instead of reverting.

    Any other call's return value means whatever its contract says, so it is not read.
    """
    return call.data[:4].hex() in _FLAG_SELECTORS


@dataclass(frozen=True, slots=True)
class FeeSettings:
    """How much headroom a fee quote carries, and the limits it must stay under.

    ``max_fee_per_gas = base_fee_multiplier x base fee + priority``: with 2x the base fee, the
    transaction stays includable through about six consecutive full blocks (each may raise the
    base fee by 12.5%). The gas limit is the estimate plus ``gas_margin_percent``, because state
    can change between the estimate and inclusion; unused gas is not charged.
    """

    gas_margin_percent: int = 20
    base_fee_multiplier: int = 2
    default_priority_fee_wei: int = 1_000_000_000
    max_gas_limit: int = 2_000_000


def price_fee(
    gas_estimate: int, base_fee_wei: int, priority_fee_wei: int, settings: FeeSettings
) -> FeeQuote:
    """The EIP-1559 quote for a call estimated at ``gas_estimate`` gas."""
    gas_limit = -(-gas_estimate * (100 + settings.gas_margin_percent) // 100)
    if gas_estimate == NATIVE_TRANSFER_GAS:
        gas_limit = NATIVE_TRANSFER_GAS  # a plain value send to an account costs exactly this
    if gas_limit > settings.max_gas_limit:
        raise InvalidRequest(
            f"the call needs about {gas_estimate} gas, above the limit of {settings.max_gas_limit}",
            code="gas_limit_exceeded",
        )
    max_fee_per_gas = settings.base_fee_multiplier * base_fee_wei + priority_fee_wei
    return FeeQuote(
        max_fee=gas_limit * max_fee_per_gas,
        gas_limit=gas_limit,
        max_fee_per_gas=max_fee_per_gas,
        max_priority_fee_per_gas=priority_fee_wei,
    )


def complete_fee(fee: FeeQuote, fresh: Callable[[], FeeQuote]) -> FeeQuote:
    """``fee`` with every part set: what it leaves out comes from ``fresh()`` (asked only then).

    The result may not cost more than ``fee.max_fee``, since that is the maximum a ``fee_limit``
    policy allowed; the tip is capped at the fee cap, as EIP-1559 requires.
    """
    gas_limit, per_gas, tip = fee.gas_limit, fee.max_fee_per_gas, fee.max_priority_fee_per_gas
    if gas_limit is None or per_gas is None or tip is None:
        quote = fresh()
        gas_limit = quote.gas_limit if gas_limit is None else gas_limit
        per_gas = quote.max_fee_per_gas if per_gas is None else per_gas
        tip = quote.max_priority_fee_per_gas if tip is None else tip
    if gas_limit is None or per_gas is None or tip is None:
        raise ValueError("a fresh quote must set every part")  # an adapter bug, not input
    if gas_limit * per_gas > fee.max_fee:
        raise InvalidRequest(
            f"the transaction could cost {gas_limit * per_gas} wei, above the quoted maximum "
            f"of {fee.max_fee}; quote the fee again",
            field="fee",
            code="fee_above_quote",
        )
    return FeeQuote(fee.max_fee, gas_limit, per_gas, min(tip, per_gas))
