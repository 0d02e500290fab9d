"""ERC-20 calldata: decode what a contract call will move, and encode the calls we send.

Why it lives in the domain: a contract call is valued by what leaves the wallet (SPEC §3), so
the decision must see the token movement hidden in the calldata. Decoding is pure byte work,
done here with the standard library only, and *strict*: a known selector whose arguments are
not exactly the ABI encoding (wrong length, an address word with non-zero padding) is refused
as ``calldata_malformed`` rather than guessed at, because a lenient decoder is how a spend gets
valued as something it is not. A selector we do not know is not an error: it comes back as an
:class:`UnknownCall` carrying its selector, so policies can demand a ``contracts`` entry for it
(fail closed happens in the rules, not here).

Addresses leave this module as lowercase ``0x`` hex, the form
:func:`treasurer.domain.facts.normalize_address` compares. EIP-55 checksums need keccak, which
the standard library lacks; adapters check them at the edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from treasurer.domain.errors import AmountError, InvalidRequest

TRANSFER_SELECTOR: Final = "0xa9059cbb"
"""``transfer(address,uint256)``"""
TRANSFER_FROM_SELECTOR: Final = "0x23b872dd"
"""``transferFrom(address,address,uint256)``"""
APPROVE_SELECTOR: Final = "0x095ea7b3"
"""``approve(address,uint256)``"""
BALANCE_OF_SELECTOR: Final = "0x70a08231"
"""``balanceOf(address)`` — read-only, used by adapters to read token balances."""

#: Largest calldata accepted for decoding. Real calls are far smaller; the limit keeps a hostile
#: request from making us hex-decode megabytes.
MAX_CALLDATA_BYTES: Final = 128 * 1024

_WORD: Final = 32
_SELECTOR_BYTES: Final = 4
_ADDRESS_BYTES: Final = 20
_ADDRESS_TEXT = re.compile(r"0[xX][0-9a-fA-F]{40}")
_HEX_TEXT = re.compile(r"[0-9a-fA-F]*")
_UINT256_LIMIT: Final = 2**256


class Erc20Method(StrEnum):
    """The token calls Treasurer understands, by their Solidity names."""

    TRANSFER = "transfer"
    TRANSFER_FROM = "transferFrom"
    APPROVE = "approve"


_SELECTORS: Final[dict[str, Erc20Method]] = {
    TRANSFER_SELECTOR: Erc20Method.TRANSFER,
    TRANSFER_FROM_SELECTOR: Erc20Method.TRANSFER_FROM,
    APPROVE_SELECTOR: Erc20Method.APPROVE,
}
#: Number of 32-byte argument words each method takes (addresses first, the amount last).
_ARITY: Final[dict[Erc20Method, int]] = {
    Erc20Method.TRANSFER: 2,
    Erc20Method.TRANSFER_FROM: 3,
    Erc20Method.APPROVE: 2,
}


@dataclass(frozen=True, slots=True)
class Erc20Call:
    """A decoded ERC-20 call.

    ``recipient`` is set for ``transfer``/``transferFrom`` (where the tokens go), ``spender``
    for ``approve`` (who may pull them), ``from_address`` for ``transferFrom`` (whose tokens
    move). ``amount`` is in token base units; for ``approve`` it is the whole allowance, which is
    what the spec values it at.
    """

    method: Erc20Method
    selector: str
    amount: int
    recipient: str | None = None
    spender: str | None = None
    from_address: str | None = None

    @property
    def counterparty(self) -> str:
        """The address a policy checks: the recipient of a transfer, the spender of an approve."""
        party = self.spender if self.method is Erc20Method.APPROVE else self.recipient
        assert party is not None  # set by every constructor path in this module
        return party


@dataclass(frozen=True, slots=True)
class UnknownCall:
    """Calldata whose selector is not an ERC-20 call we decode; only its selector is known."""

    selector: str


def _malformed(message: str) -> InvalidRequest:
    return InvalidRequest(message, field="data", code="calldata_malformed")


def calldata_bytes(data: bytes | str) -> bytes:
    """Raw bytes from bytes or hex text (with or without ``0x``); refuse anything else.

    Public so that what is decoded and what is sent come from one parse of the caller's input:
    the bytes a decision was made on are the bytes that get signed.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    elif isinstance(data, str):
        text = data[2:] if data[:2] in ("0x", "0X") else data
        if len(text) > 2 * MAX_CALLDATA_BYTES:
            raise _malformed(f"calldata is longer than {MAX_CALLDATA_BYTES} bytes")
        if len(text) % 2 or not _HEX_TEXT.fullmatch(text):
            raise _malformed("calldata must be hex: an even number of 0-9a-f digits")
        raw = bytes.fromhex(text)
    else:
        raise _malformed(f"calldata must be bytes or hex text, not {type(data).__name__}")
    if len(raw) > MAX_CALLDATA_BYTES:
        raise _malformed(f"calldata is longer than {MAX_CALLDATA_BYTES} bytes")
    return raw


def _address_from_word(word: bytes, position: int) -> str:
    if any(word[: _WORD - _ADDRESS_BYTES]):
        raise _malformed(f"argument {position} is an address but its 12 padding bytes are not zero")
    return "0x" + word[_WORD - _ADDRESS_BYTES :].hex()


def decode_call(data: bytes | str) -> Erc20Call | UnknownCall:
    """Decode calldata into an :class:`Erc20Call`, or an :class:`UnknownCall` with its selector.

    Raises :class:`InvalidRequest` (``calldata_malformed``) for text that is not hex, data too
    short to hold a selector, or a known selector whose arguments are not exactly ABI-encoded.
    """
    raw = calldata_bytes(data)
    if len(raw) < _SELECTOR_BYTES:
        raise _malformed(
            f"calldata has {len(raw)} bytes; a contract call starts with a 4-byte selector"
        )
    selector = "0x" + raw[:_SELECTOR_BYTES].hex()
    method = _SELECTORS.get(selector)
    if method is None:
        return UnknownCall(selector=selector)
    arity = _ARITY[method]
    expected = _SELECTOR_BYTES + arity * _WORD
    if len(raw) != expected:
        raise _malformed(
            f"{method.value} calldata must be exactly {expected} bytes, got {len(raw)}"
        )
    words = [
        raw[_SELECTOR_BYTES + i * _WORD : _SELECTOR_BYTES + (i + 1) * _WORD] for i in range(arity)
    ]
    addresses = [_address_from_word(word, i + 1) for i, word in enumerate(words[:-1])]
    amount = int.from_bytes(words[-1], "big")
    if method is Erc20Method.APPROVE:
        return Erc20Call(method, selector, amount, spender=addresses[0])
    if method is Erc20Method.TRANSFER_FROM:
        return Erc20Call(
            method, selector, amount, recipient=addresses[1], from_address=addresses[0]
        )
    return Erc20Call(method, selector, amount, recipient=addresses[0])


def _address_word(address: str, field: str) -> bytes:
    if not _ADDRESS_TEXT.fullmatch(address):
        raise InvalidRequest(
            f"{field}: {address!r} is not an EVM address (0x followed by 40 hex digits)",
            field=field,
            code="address_invalid",
        )
    return bytes(_WORD - _ADDRESS_BYTES) + bytes.fromhex(address[2:])


def _amount_word(amount: int) -> bytes:
    if amount < 0:
        raise AmountError(f"amount: {amount} is negative", field="amount", code="amount_negative")
    if amount >= _UINT256_LIMIT:
        raise AmountError(
            "amount: beyond the largest on-chain amount (2^256-1 base units)",
            field="amount",
            code="amount_too_large",
        )
    return amount.to_bytes(_WORD, "big")


def encode_transfer(recipient: str, amount: int) -> bytes:
    """Calldata of ``transfer(recipient, amount)``."""
    return (
        bytes.fromhex(TRANSFER_SELECTOR[2:])
        + _address_word(recipient, "recipient")
        + _amount_word(amount)
    )


def encode_transfer_from(from_address: str, recipient: str, amount: int) -> bytes:
    """Calldata of ``transferFrom(from_address, recipient, amount)``."""
    return (
        bytes.fromhex(TRANSFER_FROM_SELECTOR[2:])
        + _address_word(from_address, "from_address")
        + _address_word(recipient, "recipient")
        + _amount_word(amount)
    )


def encode_approve(spender: str, amount: int) -> bytes:
    """Calldata of ``approve(spender, amount)``."""
    return (
        bytes.fromhex(APPROVE_SELECTOR[2:])
        + _address_word(spender, "spender")
        + _amount_word(amount)
    )


def encode_balance_of(owner: str) -> bytes:
    """Calldata of ``balanceOf(owner)`` (a read; adapters use it to read token balances)."""
    return bytes.fromhex(BALANCE_OF_SELECTOR[2:]) + _address_word(owner, "owner")


def decode_uint256(data: bytes) -> int:
    """The single ``uint256`` a call such as ``balanceOf`` returns; exactly one word."""
    if len(data) != _WORD:
        raise _malformed(f"expected one 32-byte return word, got {len(data)} bytes")
    return int.from_bytes(data, "big")
