"""What a raw contract call spends, as the decision must see it.

SPEC §3 values a contract call by what leaves the wallet, and governance cannot decide on bytes.
:func:`call_spend` decodes the calldata (strictly, with
:func:`treasurer.domain.calldata.decode_call`: malformed calldata is ``calldata_malformed``) into
the spend it really is:

================================================  ===============================================
calldata sent to ``to``                           what the decision sees
================================================  ===============================================
``transfer(r, n)``, ``to`` a registered token     ``transfer`` of ``n`` of that token to ``r``
``transferFrom(f, r, n)``, same                   ``transfer`` of ``n`` of that token to ``r``
``approve(s, n)``, same                           ``approve`` of ``n`` (the whole allowance) to
                                                  spender ``s``
any other selector                                ``contract_call`` of contract ``to``, method =
                                                  the ``0x`` selector, amount = the native
                                                  ``value`` in the chain's native coin
================================================  ===============================================

So a ``recipients`` allowlist checks the recipient hidden in the calldata, not the token
contract, and an approval is held to ``token_approvals`` however it is sent.

Decisions, each in the direction of never undervaluing a spend:

- **Unknown token.** An ERC-20 selector sent to an address that is no registered asset of the
  chain is refused with ``unknown_asset`` (field ``to``), as a payment of an unregistered asset
  is. Treating it as an opaque call instead would value it at its native value, usually zero.
- **Native value with token calldata.** Both would leave the wallet, but one spend has one asset
  and one amount, so the pair cannot be valued as one: refused with
  ``call_value_with_token_call``. Nothing real is lost: ERC-20 methods are not ``payable``, so
  such a call reverts anyway. Send the coin as its own transfer.
- **transferFrom** moves tokens out of ``f`` (the wallet itself, or an owner who gave the wallet
  an allowance); either way the wallet's authority moves them, so it counts at the full amount.
- **Zero token amounts** are refused (``amount_zero``, field ``data``): the decision values only
  spends that move something, and an ``approve(s, 0)`` revocation needs no custodial payment to
  be safe. A call's native ``value`` may be zero.

Pure: a function of the org configuration and the call's inputs, with no chain access, so
governance-mode authorizations of contract calls can reuse it as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from treasurer.domain.calldata import (
    Erc20Call,
    Erc20Method,
    UnknownCall,
    calldata_bytes,
    decode_call,
)
from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import AmountError, InvalidRequest
from treasurer.domain.facts import SpendKind, normalize_address
from treasurer.domain.money import Asset, format_amount, parse_amount
from treasurer.service.chain_ports import ChainFamily
from treasurer.service.chain_registry import native_asset
from treasurer.service.requests import SpendInput

_EVM_ADDRESS: Final = re.compile(r"0[xX][0-9a-fA-F]{40}")


@dataclass(frozen=True, slots=True)
class CallSpend:
    """A raw contract call together with the spend it amounts to.

    ``to``, ``data`` and ``value`` are what gets executed (``data`` exactly as the caller gave
    it, ``value`` in native base units); ``kind``, ``asset``, ``amount`` and ``counterparty``
    are what gets decided: the token recipient, the approved spender, or the contract itself.
    """

    to: str
    data: bytes
    value: int
    selector: str
    kind: SpendKind
    asset: Asset
    amount: int
    counterparty: str

    def spend_input(self, agent: str, wallet: str) -> SpendInput:
        """The governance request (without fee facts, which the caller adds)."""
        amount = format_amount(self.amount, self.asset.decimals)
        if self.kind is SpendKind.APPROVE:
            return SpendInput(
                agent, wallet, amount, self.asset.id, kind="approve", spender=self.counterparty
            )
        if self.kind is SpendKind.TRANSFER:
            return SpendInput(agent, wallet, amount, self.asset.id, recipient=self.counterparty)
        return SpendInput(
            agent,
            wallet,
            amount,
            self.asset.id,
            kind=SpendKind.CONTRACT_CALL.value,
            recipient=self.to,
            contract=self.to,
            method=self.selector,
        )


def token_at(config: OrgConfig, network: str, address: str) -> Asset | None:
    """The registered asset of ``network`` whose token address is ``address``, if any."""
    wanted = normalize_address(address)
    for asset in sorted(config.assets.values(), key=lambda a: a.id):
        if asset.chain == network and asset.address and normalize_address(asset.address) == wanted:
            return asset
    return None


def call_spend(
    config: OrgConfig,
    network: str,
    family: ChainFamily,
    to: str,
    data: str | bytes,
    value: object = None,
) -> CallSpend:
    """Decode a call of ``data`` to ``to`` with native ``value`` (decimal string in native
    units, or None) on ``network`` into the spend it amounts to (see the module docstring).

    Raises :class:`InvalidRequest`: ``call_not_supported`` off EVM, ``address_invalid`` for
    ``to``, ``calldata_malformed``, ``unknown_asset``, ``call_value_with_token_call``, and the
    ``amount_*`` codes for ``value``.
    """
    if family is not ChainFamily.EVM:
        raise InvalidRequest(
            f"{network} is a {family.value} network: contract calls with calldata are EVM-only; "
            "pay with kind transfer or approve",
            field="kind",
            code="call_not_supported",
        )
    if not _EVM_ADDRESS.fullmatch(to):
        raise InvalidRequest(
            f"to: {to!r} is not an EVM address (0x followed by 40 hex digits)",
            field="to",
            code="address_invalid",
        )
    raw = calldata_bytes(data)
    decoded = decode_call(raw)
    native = native_asset(config, network)
    base_value = _value(value, native, network)
    if isinstance(decoded, UnknownCall):
        if native is None:
            raise _no_native(network)
        return CallSpend(
            to, raw, base_value, decoded.selector, SpendKind.CONTRACT_CALL, native, base_value, to
        )
    return _token_call(config, network, to, raw, base_value, decoded)


def _token_call(
    config: OrgConfig, network: str, to: str, raw: bytes, value: int, decoded: Erc20Call
) -> CallSpend:
    method = decoded.method.value
    token = token_at(config, network, to)
    if token is None:
        raise InvalidRequest(
            f"to: {to} is called with ERC-20 {method} calldata but is no registered asset of "
            f"{network}; register the token (chain, address, decimals, price) to pay with it",
            field="to",
            code="unknown_asset",
        )
    if value:
        raise InvalidRequest(
            f"value: this call sends native coin and also moves {token.id} ({method}); one "
            "payment cannot be valued as both. Send the coin as a separate transfer",
            field="value",
            code="call_value_with_token_call",
        )
    if decoded.amount == 0:
        raise AmountError(
            f"data: the {method} calldata moves 0 {token.symbol}; a payment must move something",
            field="data",
            code="amount_zero",
        )
    kind = SpendKind.APPROVE if decoded.method is Erc20Method.APPROVE else SpendKind.TRANSFER
    return CallSpend(
        to, raw, 0, decoded.selector, kind, token, decoded.amount, decoded.counterparty
    )


def _value(value: object, native: Asset | None, network: str) -> int:
    """The call's native value in base units; absent or zero is 0."""
    if value is None:
        return 0
    if native is None:
        raise _no_native(network)
    try:
        return parse_amount(value, native.decimals, field="value")
    except AmountError as exc:
        if exc.code == "amount_zero":
            return 0
        raise


def _no_native(network: str) -> InvalidRequest:
    return InvalidRequest(
        f"the native coin of {network} is not a registered asset, so a call's value cannot be "
        "priced; register it (an asset of that chain without an address)",
        field="value",
        code="unknown_asset",
    )
