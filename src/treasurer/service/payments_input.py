"""What a caller asks a custodial payment to do, before anything is parsed or looked up.

One shape serves every interface (embedded, HTTP, SDK, CLI), so they cannot drift apart. Three
kinds of payment exist, each with its own required fields:

- ``transfer``: ``recipient``, ``amount`` (decimal string in token units) and ``asset``
  (an asset id or symbol on the wallet's chain; the native coin included);
- ``approve``: a token allowance for ``recipient`` (the spender) of ``amount`` of ``asset``
  (a token: native coins have no allowances, ``approve_needs_token``); an approval counts at
  its full amount, and is denied unless a ``token_approvals`` policy allows that spender and
  amount; an unlimited one (2^255 base units or more, which includes 2^256-1) only with
  ``allow_unlimited``;
- ``call`` (EVM only; elsewhere ``call_not_supported``): a raw contract call, ``to`` with hex
  ``data`` and an optional native ``value`` (decimal string in native units). The calldata is
  sent exactly as given. ERC-20 ``transfer``/``transferFrom``/``approve`` calldata is decoded,
  so policies see the real recipient, token and amount (the token must be a registered asset,
  else ``unknown_asset``; native ``value`` alongside it is refused with
  ``call_value_with_token_call``); any other call is a ``contract_call`` of ``to`` and its
  selector, valued at its native ``value``, and needs a ``contracts`` policy entry. See
  :mod:`treasurer.service.payment_calls`.

A field that the kind needs and lacks is ``field_required``, one it must not have (``data`` on a
transfer, ``amount`` on a call, ...) is ``field_not_allowed``, an unknown kind is
``payment_kind_invalid``; each error names the field and says what belongs where.

``max_fee_usd`` (decimal string) caps the network fee: above it the payment fails with
``fee_above_cap`` and nothing is sent. It never bypasses a tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PaymentKind(StrEnum):
    TRANSFER = "transfer"
    APPROVE = "approve"
    CALL = "call"


@dataclass(frozen=True, slots=True)
class PaymentInput:
    """One payment request as the caller sent it (amounts are decimal strings)."""

    agent: str
    wallet: str
    kind: str = PaymentKind.TRANSFER.value
    recipient: str | None = None
    amount: object = None
    asset: str | None = None
    to: str | None = None
    data: str | None = None
    value: object = None
    max_fee_usd: object = None
