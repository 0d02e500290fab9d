"""The Solana instructions that move value, decoded from their raw bytes.

Why decode at all: a policy must judge what a transaction *does*, not what a caller says it
does. A Solana instruction is a program id plus opaque bytes; this module reads the bytes of
the five value-moving instructions Treasurer values, so policies see the real amount:

=========================  =======================  ==========================================
program                    instruction (tag)        data layout (little endian)
=========================  =======================  ==========================================
System                     ``Transfer`` (2)         u32 tag, u64 lamports
SPL Token / Token-2022     ``Transfer`` (3)         u8 tag, u64 amount
SPL Token / Token-2022     ``Approve`` (4)          u8 tag, u64 amount
SPL Token / Token-2022     ``TransferChecked`` (12) u8 tag, u64 amount, u8 decimals
SPL Token / Token-2022     ``ApproveChecked`` (13)  u8 tag, u64 amount, u8 decimals
=========================  =======================  ==========================================

Decoding fails closed: data whose tag names one of these instructions but whose length is
not exactly the layout's is refused (``instruction_malformed``), although the on-chain token
program would ignore trailing bytes; an instruction this module does not value decodes to
``None`` so the caller can treat it as "cannot be valued". The encoders are the inverse, so the
adapters build instruction data from the same table the policies read.

Standard library only: program ids are base58 strings, not ``solders`` objects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from treasurer.domain.errors import InvalidRequest

# Program ids and kind names, not secrets: ruff S105 takes any "TOKEN" name for a password.
SYSTEM_PROGRAM_ID: Final = "11111111111111111111111111111111"
TOKEN_PROGRAM_ID: Final = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"  # noqa: S105
TOKEN_2022_PROGRAM_ID: Final = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"  # noqa: S105
ASSOCIATED_TOKEN_PROGRAM_ID: Final = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"  # noqa: S105

MAX_U64: Final = 2**64 - 1
MAX_DECIMALS_U8: Final = 255


class SolanaInstructionKind(StrEnum):
    """The value-moving instructions this module understands."""

    SYSTEM_TRANSFER = "system_transfer"
    TOKEN_TRANSFER = "token_transfer"  # noqa: S105
    TOKEN_APPROVE = "token_approve"  # noqa: S105
    TOKEN_TRANSFER_CHECKED = "token_transfer_checked"  # noqa: S105
    TOKEN_APPROVE_CHECKED = "token_approve_checked"  # noqa: S105

    @property
    def is_approval(self) -> bool:
        """Approvals let a delegate spend later; policies value them at the full amount."""
        return self in (
            SolanaInstructionKind.TOKEN_APPROVE,
            SolanaInstructionKind.TOKEN_APPROVE_CHECKED,
        )


@dataclass(frozen=True, slots=True)
class DecodedInstruction:
    """What one instruction moves: ``amount`` in base units (lamports or token units).

    ``decimals`` is present only for the ``*Checked`` token instructions, where the program
    refuses the instruction unless it matches the mint's decimals.
    """

    kind: SolanaInstructionKind
    amount: int
    decimals: int | None = None


#: token tag -> (kind, carries decimals)
_TOKEN_TAGS: Final[dict[int, tuple[SolanaInstructionKind, bool]]] = {
    3: (SolanaInstructionKind.TOKEN_TRANSFER, False),
    4: (SolanaInstructionKind.TOKEN_APPROVE, False),
    12: (SolanaInstructionKind.TOKEN_TRANSFER_CHECKED, True),
    13: (SolanaInstructionKind.TOKEN_APPROVE_CHECKED, True),
}
_TOKEN_KIND_TAGS: Final = {kind: tag for tag, (kind, _) in _TOKEN_TAGS.items()}
_SYSTEM_TRANSFER_TAG: Final = 2
_SYSTEM_TRANSFER = struct.Struct("<IQ")
_TOKEN_AMOUNT = struct.Struct("<BQ")
_TOKEN_AMOUNT_DECIMALS = struct.Struct("<BQB")


def _malformed(message: str) -> InvalidRequest:
    return InvalidRequest(message, field="instruction.data", code="instruction_malformed")


def decode_system_instruction(data: bytes) -> DecodedInstruction | None:
    """A System ``Transfer``; ``None`` for any other system instruction."""
    if len(data) < 4:
        raise _malformed(f"system instruction data is {len(data)} bytes, shorter than its tag")
    (tag,) = struct.unpack_from("<I", data)
    if tag != _SYSTEM_TRANSFER_TAG:
        return None
    if len(data) != _SYSTEM_TRANSFER.size:
        raise _malformed(f"system transfer data must be {_SYSTEM_TRANSFER.size} bytes")
    _, lamports = _SYSTEM_TRANSFER.unpack(data)
    return DecodedInstruction(SolanaInstructionKind.SYSTEM_TRANSFER, lamports)


def decode_token_instruction(data: bytes) -> DecodedInstruction | None:
    """An SPL Token transfer or approval (either program); ``None`` for other instructions."""
    if not data:
        raise _malformed("token instruction data is empty")
    entry = _TOKEN_TAGS.get(data[0])
    if entry is None:
        return None
    kind, checked = entry
    layout = _TOKEN_AMOUNT_DECIMALS if checked else _TOKEN_AMOUNT
    if len(data) != layout.size:
        raise _malformed(f"{kind.value} data must be {layout.size} bytes, got {len(data)}")
    if checked:
        _, amount, decimals = layout.unpack(data)
        return DecodedInstruction(kind, amount, decimals)
    _, amount = layout.unpack(data)
    return DecodedInstruction(kind, amount)


def decode_instruction(program_id: str, data: bytes) -> DecodedInstruction | None:
    """Dispatch on the program; ``None`` when the program or instruction is not one we value."""
    if program_id == SYSTEM_PROGRAM_ID:
        return decode_system_instruction(data)
    if program_id in (TOKEN_PROGRAM_ID, TOKEN_2022_PROGRAM_ID):
        return decode_token_instruction(data)
    return None


def encode_instruction(instruction: DecodedInstruction) -> bytes:
    """The instruction data of ``instruction``; the exact inverse of the decoders.

    Refuses what the chain could not carry (amount beyond u64, decimals beyond u8, decimals
    missing or present where the layout says otherwise) with ``InvalidRequest``.
    """
    if not 0 <= instruction.amount <= MAX_U64:
        raise InvalidRequest(
            "amount does not fit the u64 of a Solana instruction",
            field="amount",
            code="amount_too_large",
        )
    kind = instruction.kind
    if kind is SolanaInstructionKind.SYSTEM_TRANSFER:
        _no_decimals(instruction)
        return _SYSTEM_TRANSFER.pack(_SYSTEM_TRANSFER_TAG, instruction.amount)
    tag = _TOKEN_KIND_TAGS[kind]
    if _TOKEN_TAGS[tag][1]:
        decimals = instruction.decimals
        if decimals is None or not 0 <= decimals <= MAX_DECIMALS_U8:
            raise InvalidRequest(
                f"{kind.value} needs decimals between 0 and 255",
                field="decimals",
                code="instruction_malformed",
            )
        return _TOKEN_AMOUNT_DECIMALS.pack(tag, instruction.amount, decimals)
    _no_decimals(instruction)
    return _TOKEN_AMOUNT.pack(tag, instruction.amount)


def _no_decimals(instruction: DecodedInstruction) -> None:
    if instruction.decimals is not None:
        raise InvalidRequest(
            f"{instruction.kind.value} carries no decimals",
            field="decimals",
            code="instruction_malformed",
        )
