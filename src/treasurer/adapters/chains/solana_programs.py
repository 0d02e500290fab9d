"""Instruction builders for the System, SPL Token and Associated Token Account programs.

``solders`` ships token account layouts but no SPL Token instruction builders, so the
value-moving instructions are all built here, their *data* from :mod:`treasurer.domain.spl`:
the same table the policies decode with, so what Treasurer signs and what it values cannot
drift apart (``solders``' own System ``transfer`` agrees byte for byte; the tests check it).
Account lists follow the programs' documented order.
"""

from __future__ import annotations

import struct
from typing import Final

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.token import ID as TOKEN_PROGRAM
from solders.token.associated import get_associated_token_address

from treasurer.domain import spl
from treasurer.domain.errors import InvalidRequest

SYSTEM_PROGRAM: Final = Pubkey.from_string(spl.SYSTEM_PROGRAM_ID)
ASSOCIATED_TOKEN_PROGRAM: Final = Pubkey.from_string(spl.ASSOCIATED_TOKEN_PROGRAM_ID)

#: Sizes of the token program's accounts; rent-exemption deposits are computed from them.
MINT_ACCOUNT_SIZE: Final = 82
TOKEN_ACCOUNT_SIZE: Final = 165

_MINT_TO_TAG: Final = 7
_INITIALIZE_MINT2_TAG: Final = 20
_ATA_CREATE_IDEMPOTENT_TAG: Final = 1


def parse_address(text: str, *, field: str) -> Pubkey:
    """A base58 public key, or ``InvalidRequest`` naming the field (``address_invalid``)."""
    try:
        return Pubkey.from_string(text)
    except ValueError as exc:
        raise InvalidRequest(
            f"{field} is not a Solana address: {text!r}", field=field, code="address_invalid"
        ) from exc


def token_account(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account for ``mint`` (the only account we read or pay)."""
    return get_associated_token_address(owner, mint, TOKEN_PROGRAM)


def system_transfer(sender: Pubkey, recipient: Pubkey, lamports: int) -> Instruction:
    """Move lamports (System ``Transfer``); the sender signs and pays."""
    data = spl.encode_instruction(
        spl.DecodedInstruction(spl.SolanaInstructionKind.SYSTEM_TRANSFER, lamports)
    )
    accounts = [
        AccountMeta(sender, is_signer=True, is_writable=True),
        AccountMeta(recipient, is_signer=False, is_writable=True),
    ]
    return Instruction(SYSTEM_PROGRAM, data, accounts)


def create_token_account_idempotent(payer: Pubkey, owner: Pubkey, mint: Pubkey) -> Instruction:
    """Create ``owner``'s token account for ``mint`` unless it exists; ``payer`` pays the rent.

    The idempotent variant succeeds when the account already exists, so a race with another
    creator cannot fail the payment.
    """
    accounts = [
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(token_account(owner, mint), is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
    ]
    return Instruction(ASSOCIATED_TOKEN_PROGRAM, bytes([_ATA_CREATE_IDEMPOTENT_TAG]), accounts)


def transfer_checked(
    owner: Pubkey, mint: Pubkey, recipient: Pubkey, amount: int, decimals: int
) -> Instruction:
    """Move ``amount`` token units between the owners' associated accounts.

    ``TransferChecked`` rather than ``Transfer``: the program refuses it when ``decimals``
    does not match the mint, so a wrong asset configuration cannot move 10^k times the amount.
    """
    data = spl.encode_instruction(
        spl.DecodedInstruction(spl.SolanaInstructionKind.TOKEN_TRANSFER_CHECKED, amount, decimals)
    )
    accounts = [
        AccountMeta(token_account(owner, mint), is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(token_account(recipient, mint), is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_PROGRAM, data, accounts)


def approve_checked(
    owner: Pubkey, mint: Pubkey, delegate: Pubkey, amount: int, decimals: int
) -> Instruction:
    """Let ``delegate`` spend up to ``amount`` from the owner's associated account.

    SPL accounts hold one delegate: a new approval replaces the previous one, and an amount
    of zero leaves a delegate that can spend nothing.
    """
    data = spl.encode_instruction(
        spl.DecodedInstruction(spl.SolanaInstructionKind.TOKEN_APPROVE_CHECKED, amount, decimals)
    )
    accounts = [
        AccountMeta(token_account(owner, mint), is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(delegate, is_signer=False, is_writable=False),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_PROGRAM, data, accounts)


def initialize_mint(mint: Pubkey, decimals: int, authority: Pubkey) -> Instruction:
    """``InitializeMint2``: no rent sysvar account, no freeze authority."""
    data = struct.pack("<BB", _INITIALIZE_MINT2_TAG, decimals) + bytes(authority) + b"\x00"
    return Instruction(TOKEN_PROGRAM, data, [AccountMeta(mint, is_signer=False, is_writable=True)])


def mint_to(mint: Pubkey, owner: Pubkey, authority: Pubkey, amount: int) -> Instruction:
    """Mint ``amount`` units into ``owner``'s associated account (faucet only)."""
    data = struct.pack("<BQ", _MINT_TO_TAG, amount)
    accounts = [
        AccountMeta(mint, is_signer=False, is_writable=True),
        AccountMeta(token_account(owner, mint), is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN_PROGRAM, data, accounts)
