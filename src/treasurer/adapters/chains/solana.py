"""``solana-local``: an in-process Solana (LiteSVM) behind the :class:`Chain` port.

Why LiteSVM: it runs the real System, SPL Token and Associated Token Account programs in
process, so everything custodial (SOL and SPL transfers, approvals, fees, failures) runs
offline at unit-test speed with the chain's true semantics. One instance is one chain; its
state lives in memory and ends with the process.

How it maps onto the port:

- ``send`` builds the message, asks the :class:`Signer` for an Ed25519 signature over its bytes
  and assembles the transaction from that signature: the adapter never sees a key. A
  transaction that fails *while executing* (e.g. too few lamports for the amount) lands: the
  fee is charged, ``send`` returns its signature and ``receipt`` says ``reverted``. One the
  chain refuses *before* executing (unknown or underfunded fee payer) never lands: ``send``
  raises :class:`ChainRejected` (``chain_rejected``), as the EVM adapters do.
- Costs beyond the amount: 5000 lamports per signature, plus the rent deposit of the
  recipient's token account when a token transfer must create it. ``quote_fee`` includes that
  rent, ``send`` refuses when the cost has grown beyond the quote (``fee_above_quote``), and
  ``receipt.fee_paid`` counts the rent actually paid, so budgets see every lamport that left
  the wallet.
- Token balances, transfers and approvals use the owner's *associated* token account; token
  transfers use ``TransferChecked`` and approvals ``ApproveChecked``.

Reconciliation reads the chain's history through ``head`` and ``outgoing``
(:mod:`.solana_history`). A transaction signed *outside* Treasurer (an external wallet's own
key) reaches this chain through :meth:`SolanaLocal.submit_raw`, with a blockhash from
:meth:`SolanaLocal.latest_blockhash`, exactly as a wallet would use ``sendTransaction`` on a
real node; the watcher sees it like any other.

The faucet (``airdrop``, ``create_mint``, ``mint_to``) is for dev wallets only. The demo
stablecoin's address is the same in every process (its key derives from a fixed seed), so org
files can name it; its mint authority is a fresh key held by the faucet.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from solders.hash import Hash
from solders.instruction import Instruction
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_metadata import FailedTransactionMetadata

from treasurer.adapters.chains import solana_history as history
from treasurer.adapters.chains import solana_programs as programs
from treasurer.adapters.chains.solana_faucet import Faucet
from treasurer.adapters.chains.solana_ledger import DEFAULT_HISTORY_CAPACITY, NETWORK, Ledger
from treasurer.adapters.chains.solana_outcomes import describe_failure
from treasurer.adapters.chains.solana_plan import Plan, check_amount
from treasurer.domain.errors import InvalidRequest, TreasurerError
from treasurer.service.chain_ports import (
    ChainFamily,
    FeeQuote,
    ObservedTransfer,
    Receipt,
    ReceiptStatus,
    Signer,
    Simulation,
    Transfer,
    TransferKind,
)

DEMO_DECIMALS: Final = 6
_DEMO_MINT_SEED: Final = hashlib.sha256(b"treasurer solana-local demo stablecoin").digest()


class SolanaLocal:
    """One in-process Solana chain with a faucet; safe to share between threads."""

    def __init__(self, *, history_capacity: int = DEFAULT_HISTORY_CAPACITY) -> None:
        self._ledger = Ledger(history_capacity)
        self._faucet = Faucet(self._ledger)
        self._demo_mint = self._faucet.create_mint(DEMO_DECIMALS, seed=_DEMO_MINT_SEED)

    # -- the Chain port -------------------------------------------------------------------

    @property
    def network(self) -> str:
        return NETWORK

    @property
    def family(self) -> ChainFamily:
        return ChainFamily.SOLANA

    def balance(self, address: str, token: str | None = None) -> int:
        """Lamports, or the token units in ``address``'s associated account for mint ``token``."""
        owner = programs.parse_address(address, field="address")
        if token is None:
            return self._ledger.lamports(owner)
        mint = programs.parse_address(token, field="token")
        self._ledger.decimals(mint)  # token_unknown rather than a silent 0
        state = self._ledger.token_state(programs.token_account(owner, mint))
        return 0 if state is None else state.amount

    def quote_fee(self, transfer: Transfer) -> FeeQuote:
        """Signature fees plus the rent of a token account the transfer must create."""
        return FeeQuote(max_fee=self._plan(transfer).cost)

    def simulate(self, transfer: Transfer) -> Simulation:
        """Run the transfer against the current state without changing it."""
        with self._ledger.lock:
            plan = self._plan(transfer)
            failure = self._ledger.simulate(plan.instructions, plan.payer, plan.signatures)
        if failure is not None:
            return Simulation(ok=False, error=describe_failure(failure))
        return Simulation(ok=True)

    def send(self, transfer: Transfer, signer: Signer, fee: FeeQuote) -> str:
        """Build with a fresh blockhash, have ``signer`` sign, submit; the base58 signature."""
        if signer.family is not ChainFamily.SOLANA or signer.address != transfer.sender:
            raise InvalidRequest(
                f"the signer ({signer.family} {signer.address}) does not hold the sender "
                f"{transfer.sender}",
                field="sender",
                code="signer_mismatch",
            )
        with self._ledger.lock:  # plan, sign and submit against one state
            plan = self._plan(transfer)
            if plan.cost > fee.max_fee:
                raise InvalidRequest(
                    f"sending now costs {plan.cost} lamports, above the quoted maximum of "
                    f"{fee.max_fee}; quote the fee again",
                    field="fee",
                    code="fee_above_quote",
                )
            message = self._ledger.fresh_message(plan.instructions, plan.payer)
            signature = _checked_signature(signer.sign_message(bytes(message)), plan.payer, message)
            return self._ledger.submit(Transaction.populate(message, [signature]), plan.rent)

    def receipt(self, tx_id: str) -> Receipt:
        """Confirmed or reverted with the fee (and rent) paid; ``dropped`` if it never landed.

        LiteSVM executes synchronously, so a signature missing from its history was refused,
        was never sent, or is older than the history keeps: nothing will ever land for it.
        """
        try:
            signature = Signature.from_string(tx_id)
        except ValueError as exc:
            raise InvalidRequest(
                f"tx_id: {tx_id!r} is not a Solana transaction signature",
                field="tx_id",
                code="tx_id_invalid",
            ) from exc
        result, landed = self._ledger.outcome(signature)
        if result is None:
            return Receipt(tx_id, ReceiptStatus.DROPPED)
        slot = landed.slot if landed else None
        if isinstance(result, FailedTransactionMetadata):
            return Receipt(tx_id, ReceiptStatus.REVERTED, result.meta().fee(), slot)
        rent = landed.rent_paid if landed else 0
        return Receipt(tx_id, ReceiptStatus.CONFIRMED, result.fee() + rent, slot)

    def head(self) -> int:
        """The newest finished slot: LiteSVM executes synchronously, so a landed transaction
        is final at once (the current slot is still open for the next one)."""
        return self._ledger.head()

    def outgoing(self, addresses: Sequence[str], start: int, end: int) -> list[ObservedTransfer]:
        """SOL and SPL transfers out of ``addresses`` in slots ``start..end`` (see
        :mod:`.solana_history`)."""
        return history.outgoing(self._ledger, addresses, start, end)

    # -- transactions signed elsewhere ----------------------------------------------------

    def latest_blockhash(self) -> Hash:
        """A fresh blockhash to build a transaction with (a new one each call, so two
        identical transfers are two transactions, not a duplicate)."""
        return self._ledger.fresh_blockhash()

    def submit_raw(self, transaction: Transaction | bytes) -> str:
        """Submit a transaction signed outside Treasurer (e.g. by an external wallet's own
        key); its signature. Like ``send``: a refused transaction raises ``chain_rejected``,
        one that fails while executing lands (and ``receipt`` says ``reverted``)."""
        if isinstance(transaction, bytes | bytearray):
            try:
                transaction = Transaction.from_bytes(bytes(transaction))
            except ValueError as exc:
                raise InvalidRequest(
                    f"not a serialized Solana transaction: {exc}",
                    field="transaction",
                    code="transaction_malformed",
                ) from exc
        return self._ledger.submit(transaction, rent_paid=0)

    # -- reads beyond the port, and the faucet --------------------------------------------

    @property
    def demo_mint(self) -> str:
        """The demo stablecoin (6 decimals); the same address in every process."""
        return str(self._demo_mint)

    def allowance(self, owner: str, spender: str, token: str) -> int:
        """What ``spender`` may still move from ``owner``'s associated account for ``token``.

        Zero unless ``spender`` is the account's delegate: an SPL account has one delegate.
        """
        owner_key = programs.parse_address(owner, field="owner")
        spender_key = programs.parse_address(spender, field="spender")
        mint = programs.parse_address(token, field="token")
        state = self._ledger.token_state(programs.token_account(owner_key, mint))
        if state is None or state.delegate != spender_key:
            return 0
        return state.delegated_amount

    def airdrop(self, address: str, lamports: int) -> str:
        """Give ``address`` lamports from LiteSVM's pool; the airdrop's signature."""
        recipient = programs.parse_address(address, field="address")
        check_amount(lamports, allow_zero=False)
        return self._ledger.airdrop(recipient, lamports)

    def create_mint(self, decimals: int) -> str:
        """A new SPL mint (mint authority: the faucet), for tests that need another token."""
        return str(self._faucet.create_mint(decimals))

    def mint_to(self, owner: str, amount: int, token: str | None = None) -> str:
        """Mint ``amount`` units of ``token`` (default: the demo stablecoin) to ``owner``."""
        owner_key = programs.parse_address(owner, field="owner")
        mint = self._demo_mint if token is None else programs.parse_address(token, field="token")
        check_amount(amount, allow_zero=False)
        return self._faucet.mint_to(owner_key, mint, amount)

    # -- internals ------------------------------------------------------------------------

    def _plan(self, transfer: Transfer) -> Plan:
        """The instructions and costs of ``transfer`` against the current state."""
        sender = programs.parse_address(transfer.sender, field="sender")
        recipient = programs.parse_address(transfer.recipient, field="recipient")
        approve = transfer.kind is TransferKind.APPROVE
        check_amount(transfer.amount, allow_zero=approve)  # approve 0 = allow nothing
        if transfer.token is None:
            if approve:
                raise InvalidRequest(
                    "SOL has no allowances: an approval needs a token mint",
                    field="token",
                    code="approve_needs_token",
                )
            return Plan([programs.system_transfer(sender, recipient, transfer.amount)], sender)
        mint = programs.parse_address(transfer.token, field="token")
        with self._ledger.lock:
            decimals = self._ledger.decimals(mint)
            if approve:
                ix = programs.approve_checked(sender, mint, recipient, transfer.amount, decimals)
                return Plan([ix], sender)
            rent = self._ledger.rent_to_create(programs.token_account(recipient, mint))
        instructions: list[Instruction] = []
        if rent is not None:
            instructions.append(programs.create_token_account_idempotent(sender, recipient, mint))
        instructions.append(
            programs.transfer_checked(sender, mint, recipient, transfer.amount, decimals)
        )
        return Plan(instructions, sender, rent=rent or 0)


def _checked_signature(raw: bytes, payer: Pubkey, message: Message) -> Signature:
    """The signer's bytes as a Signature, verified, so a faulty vault fails here and clearly."""
    if len(raw) != Signature.LENGTH:
        raise TreasurerError(
            f"signer returned {len(raw)} bytes, not a {Signature.LENGTH}-byte Ed25519 signature",
            code="signature_invalid",
        )
    signature = Signature.from_bytes(raw)
    if not signature.verify(payer, bytes(message)):
        raise TreasurerError(
            f"the signer's signature does not verify for {payer}", code="signature_invalid"
        )
    return signature


__all__ = ["DEMO_DECIMALS", "NETWORK", "SolanaLocal"]
