"""The ``solana-local`` faucet: SOL from LiteSVM's pool, and SPL mints this adapter controls.

Dev wallets need money to spend. The faucet holds one key of its own (never a custodial key):
it pays for the mints and token accounts it creates and is the mint authority of every mint
it makes, including the demo stablecoin. Its transactions must not fail quietly, so any
failure raises instead of returning a reverted signature.
"""

from __future__ import annotations

from typing import Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, create_account
from solders.token import ID as TOKEN_PROGRAM
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from treasurer.adapters.chains import solana_programs as programs
from treasurer.adapters.chains.evm_errors import ChainRejected
from treasurer.adapters.chains.solana_ledger import Ledger
from treasurer.adapters.chains.solana_outcomes import describe_failure
from treasurer.domain.errors import InvalidRequest

#: What the faucet key starts with, to pay for the mints and token accounts it creates.
AUTHORITY_LAMPORTS: Final = 1_000 * 10**9
#: SPL mints allow up to 255 decimals; real stablecoins use 6, SOL-like tokens 9.
MAX_MINT_DECIMALS: Final = 18


class Faucet:
    """Funds dev wallets on one :class:`Ledger`."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._authority = Keypair()
        ledger.airdrop(self._authority.pubkey(), AUTHORITY_LAMPORTS)

    def create_mint(self, decimals: int, *, seed: bytes | None = None) -> Pubkey:
        """A new mint with this faucet as mint authority; ``seed`` fixes its address."""
        if not 0 <= decimals <= MAX_MINT_DECIMALS:
            raise InvalidRequest(
                f"decimals must be 0..{MAX_MINT_DECIMALS}",
                field="decimals",
                code="decimals_invalid",
            )
        mint = Keypair.from_seed(seed) if seed is not None else Keypair()
        authority = self._authority.pubkey()
        rent = self._ledger.rent_exempt(programs.MINT_ACCOUNT_SIZE)
        params = CreateAccountParams(
            from_pubkey=authority,
            to_pubkey=mint.pubkey(),
            lamports=rent,
            space=programs.MINT_ACCOUNT_SIZE,
            owner=TOKEN_PROGRAM,
        )
        instructions = [
            create_account(params),
            programs.initialize_mint(mint.pubkey(), decimals, authority),
        ]
        with self._ledger.lock:
            message = self._ledger.fresh_message(instructions, authority)
            signed = Transaction([self._authority, mint], message, message.recent_blockhash)
            self._submit(signed, rent)
        return mint.pubkey()

    def mint_to(self, owner: Pubkey, mint: Pubkey, amount: int) -> str:
        """Mint ``amount`` units to ``owner``, creating its token account at the faucet's cost."""
        authority = self._authority.pubkey()
        self._ledger.decimals(mint)  # token_unknown for a mint that does not exist
        instructions = [
            programs.create_token_account_idempotent(authority, owner, mint),
            programs.mint_to(mint, owner, authority, amount),
        ]
        with self._ledger.lock:
            message = self._ledger.fresh_message(instructions, authority)
            signature = self._authority.sign_message(bytes(message))
            return self._submit(Transaction.populate(message, [signature]), rent_paid=0)

    def _submit(self, transaction: Transaction, rent_paid: int) -> str:
        tx_id = self._ledger.submit(transaction, rent_paid)
        result, _ = self._ledger.outcome(transaction.signatures[0])
        if isinstance(result, FailedTransactionMetadata):
            raise ChainRejected(f"faucet transaction failed: {describe_failure(result)}")
        return tx_id
