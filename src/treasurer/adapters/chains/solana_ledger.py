"""The LiteSVM instance behind ``solana-local``: one lock, reads, submission and history.

Why a wrapper: LiteSVM is a single mutable object with quirks a caller must not forget
(identical transactions under one blockhash are duplicates; simulation verifies signatures;
failed transactions land or not depending on *when* they fail). Every access goes through
here, under one re-entrant lock, so the Chain adapter and the faucet share one set of rules.

LiteSVM keeps no history a reader could query by address (there is no RPC behind it), so the
ledger keeps one: every transaction that landed *successfully*, with its slot, whoever signed
it (a custodial payment, the faucet, or a transaction signed elsewhere and handed to
:meth:`Ledger.submit`). Reconciliation reads it (:meth:`Ledger.landed_between`); failed
transactions move no value and are left out. It is bounded like LiteSVM's own history.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final

from solders.hash import Hash
from solders.instruction import Instruction
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.token import ID as TOKEN_PROGRAM
from solders.token.state import Mint, TokenAccount
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata, TransactionResult

from treasurer.adapters.chains.evm_errors import ChainRejected
from treasurer.adapters.chains.solana_outcomes import describe_failure
from treasurer.adapters.chains.solana_programs import TOKEN_ACCOUNT_SIZE
from treasurer.domain.errors import InvalidRequest

NETWORK: Final = "solana-local"
#: Transactions (and their slots) remembered for receipts; older ones read as dropped.
DEFAULT_HISTORY_CAPACITY: Final = 10_000


@dataclass(frozen=True, slots=True)
class Landed:
    """Where a transaction landed and the rent it deposited (0 when it failed)."""

    slot: int
    rent_paid: int


@dataclass(frozen=True, slots=True)
class LandedTransaction:
    """A transaction that executed successfully, and the slot it landed in."""

    slot: int
    signature: str
    transaction: Transaction


class Ledger:
    """One LiteSVM chain. Every method takes ``lock``; hold it across calls for atomicity."""

    def __init__(self, history_capacity: int = DEFAULT_HISTORY_CAPACITY) -> None:
        if history_capacity < 1:
            raise ValueError("history_capacity must be at least 1: receipts read the history")
        self.lock = threading.RLock()
        self._svm = LiteSVM().with_transaction_history(history_capacity)
        self._capacity = history_capacity
        self._landed: OrderedDict[str, Landed] = OrderedDict()
        self._succeeded: deque[LandedTransaction] = deque(maxlen=history_capacity)

    # -- reads ------------------------------------------------------------------------------

    def lamports(self, address: Pubkey) -> int:
        with self.lock:
            return self._svm.get_balance(address) or 0

    def decimals(self, mint: Pubkey) -> int:
        """The mint's decimals; ``token_unknown`` when ``mint`` is not an SPL mint here."""
        with self.lock:
            account = self._svm.get_account(mint)
        if account is None or account.owner != TOKEN_PROGRAM:
            raise InvalidRequest(
                f"{mint} is not an SPL token mint on {NETWORK}", field="token", code="token_unknown"
            )
        return Mint.from_bytes(bytes(account.data)).decimals

    def token_state(self, address: Pubkey) -> TokenAccount | None:
        with self.lock:
            account = self._svm.get_account(address)
        if account is None or account.owner != TOKEN_PROGRAM:
            return None
        return TokenAccount.from_bytes(bytes(account.data))

    def rent_exempt(self, size: int) -> int:
        with self.lock:
            return self._svm.minimum_balance_for_rent_exemption(size)

    def rent_to_create(self, address: Pubkey) -> int | None:
        """None when the token account exists; else the lamports creating it deposits.

        An address that already holds lamports (someone sent SOL there) needs only the rest.
        """
        with self.lock:
            account = self._svm.get_account(address)
            if account is not None and account.owner == TOKEN_PROGRAM:
                return None
            held = 0 if account is None else account.lamports
            return max(0, self.rent_exempt(TOKEN_ACCOUNT_SIZE) - held)

    def head(self) -> int:
        """The newest slot that can hold a landed transaction: the next one lands in the
        current slot, so it is not finished yet."""
        with self.lock:
            return max(0, self._svm.get_clock().slot - 1)

    def landed_between(self, start: int, end: int) -> list[LandedTransaction]:
        """Successful transactions of slots ``start..end`` (both included), in slot order."""
        with self.lock:
            return [t for t in self._succeeded if start <= t.slot <= end]

    def outcome(self, signature: Signature) -> tuple[TransactionResult | None, Landed | None]:
        """LiteSVM's record of a transaction and ours (slot, rent); None when unknown."""
        with self.lock:
            return self._svm.get_transaction(signature), self._landed.get(str(signature))

    # -- writes -----------------------------------------------------------------------------

    def fresh_message(self, instructions: list[Instruction], payer: Pubkey) -> Message:
        """A message under a new blockhash: two identical payments must not share a signature."""
        with self.lock:
            self._svm.expire_blockhash()
            return Message.new_with_blockhash(instructions, payer, self._svm.latest_blockhash())

    def fresh_blockhash(self) -> Hash:
        """A new blockhash for a transaction built elsewhere (see :meth:`fresh_message`)."""
        with self.lock:
            self._svm.expire_blockhash()
            return self._svm.latest_blockhash()

    def simulate(
        self, instructions: list[Instruction], payer: Pubkey, signatures: int
    ) -> FailedTransactionMetadata | None:
        """The failure running these instructions now would meet, or None; changes nothing.

        No signer is at hand, so placeholder signatures go in and signature verification is
        off for this one call (under the lock, so no send can slip through unverified).
        """
        with self.lock:
            message = Message.new_with_blockhash(instructions, payer, self._svm.latest_blockhash())
            placeholder = Transaction.populate(message, [Signature.default()] * signatures)
            verify = self._svm.get_sigverify()
            self._svm.with_sigverify(False)
            try:
                result = self._svm.simulate_transaction(placeholder)
            finally:
                self._svm.with_sigverify(verify)
        return result if isinstance(result, FailedTransactionMetadata) else None

    def submit(self, transaction: Transaction, rent_paid: int) -> str:
        """Send; the signature if it landed (even failed), :class:`ChainRejected` if not.

        Whether it landed is read from the history, not guessed from the error kind: an
        execution failure lands with its fee charged, a refusal (unknown fee payer, bad
        signature) leaves no trace, and a duplicate returns the original's signature.
        """
        signature = transaction.signatures[0]
        with self.lock:
            result = self._svm.send_transaction(transaction)
            if self._svm.get_transaction(signature) is None:
                reason = (
                    describe_failure(result)
                    if isinstance(result, FailedTransactionMetadata)
                    else ""
                )
                raise ChainRejected(f"the chain refused the transaction: {reason}")
            failed = isinstance(result, FailedTransactionMetadata)
            if str(signature) in self._landed:
                return str(signature)  # a duplicate: the original's record stands
            self._remember(
                str(signature),
                rent_paid=0 if failed else rent_paid,
                transaction=None if failed else transaction,
            )
        return str(signature)

    def airdrop(self, recipient: Pubkey, lamports: int) -> str:
        """Lamports from LiteSVM's own airdrop pool; the airdrop's signature."""
        with self.lock:
            self._svm.expire_blockhash()  # identical airdrops would otherwise be duplicates
            result = self._svm.airdrop(recipient, lamports)
            if isinstance(result, FailedTransactionMetadata):
                raise ChainRejected(f"airdrop refused: {describe_failure(result)}")
            tx_id = str(result.signature())
            self._remember(tx_id, rent_paid=0)
            return tx_id

    def _remember(
        self, tx_id: str, *, rent_paid: int, transaction: Transaction | None = None
    ) -> None:
        """Record the slot it landed in, then advance: one transaction per slot, like blocks."""
        slot = self._svm.get_clock().slot
        self._landed[tx_id] = Landed(slot=slot, rent_paid=rent_paid)
        if transaction is not None:
            self._succeeded.append(LandedTransaction(slot, tx_id, transaction))
        while len(self._landed) > self._capacity:
            self._landed.popitem(last=False)
        self._svm.warp_to_slot(slot + 1)
