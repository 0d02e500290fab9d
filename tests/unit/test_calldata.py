"""ERC-20 calldata: strict decoding, exact encoding, and refusal of anything malformed.

``eth_abi`` (a test-only oracle here; the domain itself uses the standard library) checks that our
encoders produce the canonical ABI encoding.
"""

from __future__ import annotations

import pytest
from eth_abi.abi import encode as abi_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from treasurer.domain.calldata import (
    APPROVE_SELECTOR,
    MAX_CALLDATA_BYTES,
    TRANSFER_FROM_SELECTOR,
    TRANSFER_SELECTOR,
    Erc20Call,
    Erc20Method,
    UnknownCall,
    decode_call,
    decode_uint256,
    encode_approve,
    encode_balance_of,
    encode_transfer,
    encode_transfer_from,
)
from treasurer.domain.errors import AmountError, InvalidRequest

PROPERTY = settings(max_examples=200, deadline=None)
KNOWN = {TRANSFER_SELECTOR, TRANSFER_FROM_SELECTOR, APPROVE_SELECTOR}

addresses = st.binary(min_size=20, max_size=20).map(lambda raw: "0x" + raw.hex())
amounts = st.integers(min_value=0, max_value=2**256 - 1)
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20


@PROPERTY
@given(recipient=addresses, amount=amounts)
def test_transfer_round_trips(recipient: str, amount: int) -> None:
    """decode(encode_transfer(to, x)) is a transfer of x to `to`, and the bytes are canonical."""
    data = encode_transfer(recipient, amount)
    assert data == bytes.fromhex("a9059cbb") + abi_encode(
        ["address", "uint256"], [recipient, amount]
    )
    assert decode_call(data) == Erc20Call(
        Erc20Method.TRANSFER, TRANSFER_SELECTOR, amount, recipient=recipient
    )


@PROPERTY
@given(owner=addresses, recipient=addresses, amount=amounts)
def test_transfer_from_round_trips(owner: str, recipient: str, amount: int) -> None:
    """transferFrom keeps its three arguments apart: whose tokens, where to, how many."""
    data = encode_transfer_from(owner, recipient, amount)
    assert data[4:] == abi_encode(["address", "address", "uint256"], [owner, recipient, amount])
    decoded = decode_call("0x" + data.hex())
    assert decoded == Erc20Call(
        Erc20Method.TRANSFER_FROM,
        TRANSFER_FROM_SELECTOR,
        amount,
        recipient=recipient,
        from_address=owner,
    )
    assert isinstance(decoded, Erc20Call)
    assert decoded.counterparty == recipient


@PROPERTY
@given(spender=addresses, amount=amounts)
def test_approve_round_trips(spender: str, amount: int) -> None:
    """An approve decodes to its spender and its full allowance (what the spec values it at)."""
    decoded = decode_call(encode_approve(spender, amount).hex())  # hex without 0x works too
    assert decoded == Erc20Call(Erc20Method.APPROVE, APPROVE_SELECTOR, amount, spender=spender)
    assert isinstance(decoded, Erc20Call)
    assert decoded.counterparty == spender
    assert decoded.recipient is None


def test_checksummed_input_decodes_to_lowercase_addresses() -> None:
    """Uppercase hex and mixed-case addresses come back lowercase, the form policies compare."""
    data = "0X" + encode_transfer("0x" + "AB" * 20, 7).hex().upper()
    decoded = decode_call(data)
    assert isinstance(decoded, Erc20Call)
    assert decoded.recipient == "0x" + "ab" * 20


@PROPERTY
@given(
    selector=st.binary(min_size=4, max_size=4).filter(lambda s: "0x" + s.hex() not in KNOWN),
    rest=st.binary(max_size=200),
)
def test_unknown_selectors_are_reported_not_refused(selector: bytes, rest: bytes) -> None:
    """Any other call is an UnknownCall carrying its selector, so a policy can decide on it."""
    assert decode_call(selector + rest) == UnknownCall(selector="0x" + selector.hex())


@PROPERTY
@given(
    data=st.sampled_from(
        [
            encode_transfer(ALICE, 1),
            encode_transfer_from(ALICE, BOB, 1),
            encode_approve(BOB, 1),
        ]
    ),
    cut=st.integers(min_value=1, max_value=67),
    extra=st.binary(min_size=1, max_size=64),
    grow=st.booleans(),
)
def test_known_calls_of_the_wrong_length_are_malformed(
    data: bytes, cut: int, extra: bytes, grow: bool
) -> None:
    """A known selector with missing or trailing bytes is refused, never decoded leniently."""
    bad = data + extra if grow else data[: max(4, len(data) - cut)]
    with pytest.raises(InvalidRequest) as caught:
        decode_call(bad)
    assert caught.value.code == "calldata_malformed"


@PROPERTY
@given(
    position=st.integers(min_value=0, max_value=1),
    byte_index=st.integers(min_value=0, max_value=11),
    value=st.integers(min_value=1, max_value=255),
)
def test_address_words_with_dirty_padding_are_malformed(
    position: int, byte_index: int, value: int
) -> None:
    """An address argument whose 12 high bytes are not zero is not a valid ABI address."""
    data = bytearray(encode_transfer_from(ALICE, BOB, 5))
    data[4 + 32 * position + byte_index] = value
    with pytest.raises(InvalidRequest, match="padding") as caught:
        decode_call(bytes(data))
    assert caught.value.code == "calldata_malformed"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xa9\x05\x9c",
        "0x",
        "0xa9059cb",  # odd number of digits
        "0xzz059cbb",
        "0x a9059cbb",
        b"\x00" * (MAX_CALLDATA_BYTES + 1),
        "0x" + "00" * (MAX_CALLDATA_BYTES + 1),
    ],
    ids=[
        "empty",
        "3-bytes",
        "empty-hex",
        "odd-hex",
        "not-hex",
        "space",
        "too-long",
        "too-long-hex",
    ],
)
def test_malformed_calldata_raises_a_named_error(data: bytes | str) -> None:
    """Data that is not hex, or too short to hold a selector, or absurdly long is refused."""
    with pytest.raises(InvalidRequest) as caught:
        decode_call(data)
    assert caught.value.code == "calldata_malformed"
    assert caught.value.field == "data"


def test_calldata_of_the_wrong_type_is_refused() -> None:
    """A number (or anything but bytes and text) is refused rather than coerced."""
    with pytest.raises(InvalidRequest, match="bytes or hex"):
        decode_call(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount", "code"), [(-1, "amount_negative"), (2**256, "amount_too_large")]
)
def test_encoders_refuse_amounts_outside_uint256(amount: int, code: str) -> None:
    """An amount that no uint256 can hold is never silently wrapped or truncated."""
    with pytest.raises(AmountError) as caught:
        encode_transfer(ALICE, amount)
    assert caught.value.code == code


@pytest.mark.parametrize("address", ["0x1234", "a1" * 20, "0x" + "g1" * 20, "0x" + "a1" * 21])
def test_encoders_refuse_malformed_addresses(address: str) -> None:
    """Only 0x plus exactly 40 hex digits is an address."""
    with pytest.raises(InvalidRequest) as caught:
        encode_approve(address, 1)
    assert caught.value.code == "address_invalid"


def test_balance_of_and_its_answer() -> None:
    """balanceOf(owner) is encoded canonically and its single-word answer decoded exactly."""
    assert encode_balance_of(ALICE) == bytes.fromhex("70a08231") + abi_encode(["address"], [ALICE])
    assert decode_uint256((2**256 - 1).to_bytes(32, "big")) == 2**256 - 1
    with pytest.raises(InvalidRequest):
        decode_uint256(b"")


@PROPERTY
@given(data=st.one_of(st.binary(max_size=150), st.text(max_size=150)))
def test_any_input_decodes_or_raises_calldata_malformed(data: bytes | str) -> None:
    """Whatever arrives, decoding returns a result or raises InvalidRequest, nothing else."""
    try:
        result = decode_call(data)
    except InvalidRequest as error:
        assert error.code == "calldata_malformed"
    else:
        assert isinstance(result, Erc20Call | UnknownCall)
