"""Decoding Solana value-moving instructions: exact layouts, round trips, fail-closed errors.

``solders`` serves as an independent oracle for the System program's layout; the SPL layouts
are checked against hand-written bytes from the token program's documented encoding.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, decode_transfer, transfer

from treasurer.domain.errors import InvalidRequest
from treasurer.domain.spl import (
    MAX_U64,
    SYSTEM_PROGRAM_ID,
    TOKEN_2022_PROGRAM_ID,
    TOKEN_PROGRAM_ID,
    DecodedInstruction,
    SolanaInstructionKind,
    decode_instruction,
    decode_system_instruction,
    decode_token_instruction,
    encode_instruction,
)

PROPERTY = settings(max_examples=200, deadline=None)
Kind = SolanaInstructionKind
CHECKED = (Kind.TOKEN_TRANSFER_CHECKED, Kind.TOKEN_APPROVE_CHECKED)

u64_st = st.integers(min_value=0, max_value=MAX_U64)
decimals_st = st.integers(min_value=0, max_value=255)


@st.composite
def instructions_st(draw: st.DrawFn) -> DecodedInstruction:
    """Any well-formed instruction of the five kinds."""
    kind = draw(st.sampled_from(list(Kind)))
    decimals = draw(decimals_st) if kind in CHECKED else None
    return DecodedInstruction(kind, draw(u64_st), decimals)


def _program_of(kind: SolanaInstructionKind) -> str:
    return SYSTEM_PROGRAM_ID if kind is Kind.SYSTEM_TRANSFER else TOKEN_PROGRAM_ID


def test_known_bytes_decode_to_the_documented_fields() -> None:
    """Each layout read from bytes written by hand: tag, u64 little endian, optional u8."""
    amount = 1_234_567_890_123
    le = struct.pack("<Q", amount)
    cases = {
        (SYSTEM_PROGRAM_ID, b"\x02\x00\x00\x00" + le): (Kind.SYSTEM_TRANSFER, None),
        (TOKEN_PROGRAM_ID, b"\x03" + le): (Kind.TOKEN_TRANSFER, None),
        (TOKEN_PROGRAM_ID, b"\x04" + le): (Kind.TOKEN_APPROVE, None),
        (TOKEN_PROGRAM_ID, b"\x0c" + le + b"\x06"): (Kind.TOKEN_TRANSFER_CHECKED, 6),
        (TOKEN_2022_PROGRAM_ID, b"\x0d" + le + b"\x09"): (Kind.TOKEN_APPROVE_CHECKED, 9),
    }
    for (program, data), (kind, decimals) in cases.items():
        assert decode_instruction(program, data) == DecodedInstruction(kind, amount, decimals)


def test_only_approvals_are_approvals() -> None:
    """Policies value approvals at their full allowance; the flag must name exactly those."""
    assert {k for k in Kind if k.is_approval} == {Kind.TOKEN_APPROVE, Kind.TOKEN_APPROVE_CHECKED}


@PROPERTY
@given(instruction=instructions_st())
def test_encode_then_decode_round_trips(instruction: DecodedInstruction) -> None:
    """For every kind, amount and decimals, decode(encode(x)) == x."""
    data = encode_instruction(instruction)
    assert decode_instruction(_program_of(instruction.kind), data) == instruction


@PROPERTY
@given(instruction=instructions_st())
def test_decode_then_encode_round_trips_bytes(instruction: DecodedInstruction) -> None:
    """Bytes that decode re-encode to the same bytes: the decoder loses nothing."""
    data = encode_instruction(instruction)
    decoded = decode_instruction(_program_of(instruction.kind), data)
    assert decoded is not None
    assert encode_instruction(decoded) == data


@PROPERTY
@given(lamports=u64_st)
def test_system_transfer_agrees_with_solders(lamports: int) -> None:
    """solders' own System ``transfer`` builder and decoder agree with this module."""
    a, b = Pubkey.new_unique(), Pubkey.new_unique()
    built = transfer(TransferParams(from_pubkey=a, to_pubkey=b, lamports=lamports))
    assert decode_system_instruction(built.data) == DecodedInstruction(
        Kind.SYSTEM_TRANSFER, lamports
    )
    mine = encode_instruction(DecodedInstruction(Kind.SYSTEM_TRANSFER, lamports))
    assert mine == bytes(built.data)
    assert decode_transfer(built)["lamports"] == lamports


@PROPERTY
@given(instruction=instructions_st(), cut=st.integers(min_value=1, max_value=8))
def test_truncated_data_is_malformed(instruction: DecodedInstruction, cut: int) -> None:
    """Dropping trailing bytes never decodes to a smaller amount: it is refused."""
    data = encode_instruction(instruction)[:-cut]
    with pytest.raises(InvalidRequest) as caught:
        decode_instruction(_program_of(instruction.kind), data)
    assert caught.value.code == "instruction_malformed"
    assert caught.value.field == "instruction.data"


@PROPERTY
@given(instruction=instructions_st(), extra=st.binary(min_size=1, max_size=16))
def test_trailing_bytes_are_malformed(instruction: DecodedInstruction, extra: bytes) -> None:
    """Fail closed: extra bytes the token program would ignore are refused here."""
    data = encode_instruction(instruction) + extra
    with pytest.raises(InvalidRequest) as caught:
        decode_instruction(_program_of(instruction.kind), data)
    assert caught.value.code == "instruction_malformed"


def test_empty_data_is_malformed() -> None:
    """An instruction without even a tag cannot be read; both decoders refuse it."""
    for decode in (decode_token_instruction, decode_system_instruction):
        with pytest.raises(InvalidRequest) as caught:
            decode(b"")
        assert caught.value.code == "instruction_malformed"


def test_other_instructions_and_programs_decode_to_none() -> None:
    """Instructions this module does not value are "unknown", not errors: the caller decides."""
    assert decode_token_instruction(b"\x07" + bytes(8)) is None  # MintTo
    assert decode_token_instruction(b"\x09") is None  # CloseAccount
    assert decode_system_instruction(struct.pack("<I", 0) + bytes(48)) is None  # CreateAccount
    memo = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"
    assert decode_instruction(memo, b"\x03" + bytes(8)) is None


@pytest.mark.parametrize(
    ("instruction", "code"),
    [
        (DecodedInstruction(Kind.TOKEN_TRANSFER, MAX_U64 + 1), "amount_too_large"),
        (DecodedInstruction(Kind.SYSTEM_TRANSFER, -1), "amount_too_large"),
        (DecodedInstruction(Kind.TOKEN_TRANSFER_CHECKED, 1), "instruction_malformed"),
        (DecodedInstruction(Kind.TOKEN_APPROVE_CHECKED, 1, 256), "instruction_malformed"),
        (DecodedInstruction(Kind.TOKEN_APPROVE, 1, 6), "instruction_malformed"),
        (DecodedInstruction(Kind.SYSTEM_TRANSFER, 1, 9), "instruction_malformed"),
    ],
)
def test_encode_refuses_what_the_chain_cannot_carry(
    instruction: DecodedInstruction, code: str
) -> None:
    """Out-of-range amounts and misplaced or missing decimals are refused, never wrapped."""
    with pytest.raises(InvalidRequest) as caught:
        encode_instruction(instruction)
    assert caught.value.code == code
