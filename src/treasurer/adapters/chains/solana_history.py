"""What left a set of wallets on ``solana-local``, read from the ledger's own history.

A Solana RPC node would answer ``getSignaturesForAddress`` and report token balance changes;
LiteSVM has no RPC, so the ledger records every transaction that landed successfully
(:meth:`~.solana_ledger.Ledger.landed_between`) and this module reads their *top-level*
instructions, decoded with the same table the policies use (:mod:`treasurer.domain.spl`):

- System ``Transfer``: lamports from ``accounts[0]`` (who signs) to ``accounts[1]``;
- SPL Token ``Transfer`` / ``TransferChecked`` (Token and Token-2022): units from a token
  account. The *sender* is the owner of that account (read from the chain, or, for an account
  closed since, the watched wallet whose associated account it is), whoever signed: a delegate
  spending under an allowance moves the wallet's money too, and ``initiator`` names it. The
  recipient is the owner of the destination account (the account itself when unknown).

Not seen, and documented in ``docs/reconciliation.md``: value moved by a program through a
cross-program invocation (inner instructions), lamports leaving through account creation or
closing, and fees. ``index`` is the instruction's position in its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from solders.pubkey import Pubkey
from solders.token.state import TokenAccount
from solders.transaction import Transaction

from treasurer.adapters.chains import solana_programs as programs
from treasurer.adapters.chains.solana_ledger import LandedTransaction, Ledger
from treasurer.domain import spl
from treasurer.domain.errors import InvalidRequest
from treasurer.service.chain_ports import ObservedTransfer

#: Slots one :func:`outgoing` call may cover.
MAX_SCAN_SLOTS: Final = 100_000
_TRANSFERS: Final = (
    spl.SolanaInstructionKind.SYSTEM_TRANSFER,
    spl.SolanaInstructionKind.TOKEN_TRANSFER,
    spl.SolanaInstructionKind.TOKEN_TRANSFER_CHECKED,
)


def _pubkeys(addresses: Iterable[str]) -> set[Pubkey]:
    keys = set()
    for address in addresses:
        try:
            keys.add(Pubkey.from_string(address))
        except ValueError:
            continue  # not a Solana address: nothing of it can be on this chain
    return keys


def outgoing(
    ledger: Ledger, addresses: Iterable[str], start: int, end: int
) -> list[ObservedTransfer]:
    """Transfers out of ``addresses`` in slots ``start..end``, in slot order."""
    wallets = _pubkeys(addresses)
    if end < start or not wallets:
        return []
    if end - start + 1 > MAX_SCAN_SLOTS:
        raise ValueError(f"scan at most {MAX_SCAN_SLOTS} slots at once, not {end - start + 1}")
    found: list[ObservedTransfer] = []
    for landed in ledger.landed_between(start, end):
        found.extend(_transfers_of(ledger, landed, wallets))
    return found


def _transfers_of(
    ledger: Ledger, landed: LandedTransaction, wallets: set[Pubkey]
) -> list[ObservedTransfer]:
    transaction: Transaction = landed.transaction
    message = transaction.message
    keys = list(message.account_keys)
    found = []
    for position, instruction in enumerate(message.instructions):
        program = str(keys[instruction.program_id_index])
        accounts = [keys[i] for i in bytes(instruction.accounts)]
        try:
            decoded = spl.decode_instruction(program, bytes(instruction.data))
        except InvalidRequest:
            continue  # malformed data: the program refused it, so nothing moved
        if decoded is None or decoded.kind not in _TRANSFERS or decoded.amount == 0:
            continue
        if decoded.kind is spl.SolanaInstructionKind.SYSTEM_TRANSFER:
            sender, recipient, token, initiator = accounts[0], accounts[1], None, accounts[0]
        else:
            parties = _token_parties(ledger, decoded, accounts, wallets)
            if parties is None:
                continue
            sender, recipient, token, initiator = parties
        if sender not in wallets:
            continue
        found.append(
            ObservedTransfer(
                tx_id=landed.signature,
                index=position,
                sender=str(sender),
                recipient=str(recipient),
                amount=decoded.amount,
                token=None if token is None else str(token),
                block=landed.slot,
                initiator=str(initiator),
            )
        )
    return found


def _token_parties(
    ledger: Ledger,
    decoded: spl.DecodedInstruction,
    accounts: list[Pubkey],
    wallets: set[Pubkey],
) -> tuple[Pubkey, Pubkey, Pubkey, Pubkey] | None:
    """(owner of the source account, owner of the destination, mint, signer), or None when
    the source cannot be attributed to anyone."""
    checked = decoded.kind is spl.SolanaInstructionKind.TOKEN_TRANSFER_CHECKED
    if len(accounts) < (4 if checked else 3):
        return None
    source, destination = accounts[0], accounts[2] if checked else accounts[1]
    authority = accounts[3] if checked else accounts[2]
    source_state = ledger.token_state(source)
    mint = accounts[1] if checked else (source_state.mint if source_state else None)
    if mint is None:
        return None
    owner = _owner(source, source_state, mint, wallets)
    if owner is None:
        return None
    destination_state = ledger.token_state(destination)
    recipient = destination_state.owner if destination_state is not None else destination
    return owner, recipient, mint, authority


def _owner(
    account: Pubkey, state: TokenAccount | None, mint: Pubkey, wallets: set[Pubkey]
) -> Pubkey | None:
    if state is not None:
        return state.owner
    for wallet in wallets:  # closed since: it can only be ours if it is a wallet's ATA
        if programs.token_account(wallet, mint) == account:
            return wallet
    return None
