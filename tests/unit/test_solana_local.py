"""``solana-local``: SOL and SPL payments on an in-process LiteSVM through the Chain port.

Every test gets its own chain (about 0.2 s to start), so no test sees another's balances.
Signers are real Ed25519 keys wrapped in the port's ``Signer`` shape, never handed to the
adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from solders.keypair import Keypair
from solders.message import Message

from treasurer.adapters.chains.evm_errors import ChainRejected
from treasurer.adapters.chains.solana import DEMO_DECIMALS, NETWORK, SolanaLocal
from treasurer.adapters.chains.solana_plan import LAMPORTS_PER_SIGNATURE
from treasurer.domain.errors import InvalidRequest, TreasurerError
from treasurer.domain.spl import DecodedInstruction, SolanaInstructionKind, decode_instruction
from treasurer.service.chain_ports import (
    Chain,
    ChainFamily,
    FeeQuote,
    ReceiptStatus,
    Transfer,
    TransferKind,
)

pytestmark = pytest.mark.timeout(60)

SOL = 10**9
USDC = 10**DEMO_DECIMALS
#: Solana's rent-exempt deposit for a 165-byte token account, from the runtime's formula
#: ((128 bytes overhead + data) x 3480 lamports per byte-year x 2 years), not from the adapter.
TOKEN_ACCOUNT_RENT = (128 + 165) * 3480 * 2


class KeypairSigner:
    """A test ``Signer`` over one keypair; records what it signed so tests can read it."""

    def __init__(self, keypair: Keypair | None = None) -> None:
        self._keypair = keypair or Keypair()
        self.signed: list[bytes] = []

    @property
    def address(self) -> str:
        return str(self._keypair.pubkey())

    @property
    def family(self) -> ChainFamily:
        return ChainFamily.SOLANA

    def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
        raise NotImplementedError("a Solana key signs no EVM transactions")

    def sign_message(self, message: bytes) -> bytes:
        self.signed.append(message)
        return bytes(self._keypair.sign_message(message))


class BrokenSigner(KeypairSigner):
    """Claims an address but signs with another key, like a vault returning the wrong key."""

    def sign_message(self, message: bytes) -> bytes:
        return bytes(Keypair().sign_message(message))


@pytest.fixture
def chain() -> SolanaLocal:
    """A fresh in-process chain with its demo stablecoin."""
    return SolanaLocal()


@pytest.fixture
def funded(chain: SolanaLocal) -> KeypairSigner:
    """A sender holding 10 SOL and 100 demo stablecoins."""
    signer = KeypairSigner()
    chain.airdrop(signer.address, 10 * SOL)
    chain.mint_to(signer.address, 100 * USDC)
    return signer


def pay(chain: SolanaLocal, transfer: Transfer, signer: KeypairSigner) -> str:
    """Quote then send, as the payment pipeline does."""
    return chain.send(transfer, signer, chain.quote_fee(transfer))


def test_implements_the_chain_port(chain: SolanaLocal) -> None:
    """The adapter satisfies the ``Chain`` Protocol and names its network and family."""
    port: Chain = chain
    assert port.network == NETWORK == "solana-local"
    assert port.family is ChainFamily.SOLANA
    assert chain.balance(KeypairSigner().address) == 0
    assert chain.balance(KeypairSigner().address, chain.demo_mint) == 0


def test_demo_mint_address_is_the_same_in_every_process() -> None:
    """Org files name the demo stablecoin by address, so it must not change between runs."""
    assert SolanaLocal().demo_mint == SolanaLocal().demo_mint


def test_sol_transfer_moves_exactly_amount_plus_fee(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """The sender loses amount + fee, the recipient gains the amount, the receipt says so."""
    recipient = KeypairSigner().address
    transfer = Transfer(funded.address, recipient, SOL // 4)
    before = chain.balance(funded.address)

    quote = chain.quote_fee(transfer)
    tx_id = chain.send(transfer, funded, quote)
    receipt = chain.receipt(tx_id)

    assert quote.max_fee == LAMPORTS_PER_SIGNATURE
    assert receipt.status is ReceiptStatus.CONFIRMED
    assert receipt.fee_paid == LAMPORTS_PER_SIGNATURE
    assert receipt.block is not None
    assert chain.balance(recipient) == SOL // 4
    assert chain.balance(funded.address) == before - SOL // 4 - receipt.fee_paid


def test_identical_payments_are_two_transactions(chain: SolanaLocal, funded: KeypairSigner) -> None:
    """Same sender, recipient and amount twice: a fresh blockhash keeps them distinct."""
    recipient = KeypairSigner().address
    transfer = Transfer(funded.address, recipient, SOL // 100)
    first, second = pay(chain, transfer, funded), pay(chain, transfer, funded)
    assert first != second
    assert chain.balance(recipient) == 2 * (SOL // 100)
    assert chain.receipt(first).block != chain.receipt(second).block


def test_spl_transfer_creates_the_recipient_account_and_quotes_its_rent(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """A first token payment pays the recipient account's rent, in the quote and the receipt."""
    recipient = KeypairSigner().address
    transfer = Transfer(funded.address, recipient, 12_345_678, token=chain.demo_mint)
    lamports_before = chain.balance(funded.address)

    quote = chain.quote_fee(transfer)
    receipt = chain.receipt(chain.send(transfer, funded, quote))

    assert quote.max_fee == LAMPORTS_PER_SIGNATURE + TOKEN_ACCOUNT_RENT
    assert receipt.status is ReceiptStatus.CONFIRMED
    assert receipt.fee_paid == quote.max_fee
    assert chain.balance(recipient, chain.demo_mint) == 12_345_678
    assert chain.balance(funded.address, chain.demo_mint) == 100 * USDC - 12_345_678
    assert chain.balance(funded.address) == lamports_before - receipt.fee_paid
    # The account exists now: the next payment to it costs the signature fee only.
    assert chain.quote_fee(transfer).max_fee == LAMPORTS_PER_SIGNATURE


def test_signed_bytes_decode_to_the_requested_amounts(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """What the signer signs carries the amount the policies valued, read by ``domain.spl``."""
    recipient = KeypairSigner().address
    approval = Transfer(funded.address, recipient, 7, chain.demo_mint, TransferKind.APPROVE)
    tx_ids = [
        pay(chain, Transfer(funded.address, recipient, SOL // 3), funded),
        pay(chain, Transfer(funded.address, recipient, 5_000_000, token=chain.demo_mint), funded),
        pay(chain, approval, funded),
    ]
    assert {chain.receipt(t).status for t in tx_ids} == {ReceiptStatus.CONFIRMED}

    decoded = [
        decode_instruction(str(message.program_id(i)), bytes(message.instructions[i].data))
        for message in map(Message.from_bytes, funded.signed)
        for i in range(len(message.instructions))
    ]
    kind = SolanaInstructionKind
    assert [d for d in decoded if d is not None] == [
        DecodedInstruction(kind.SYSTEM_TRANSFER, SOL // 3),
        DecodedInstruction(kind.TOKEN_TRANSFER_CHECKED, 5_000_000, DEMO_DECIMALS),
        DecodedInstruction(kind.TOKEN_APPROVE_CHECKED, 7, DEMO_DECIMALS),
    ]


def test_approve_sets_a_delegate_with_the_amount(chain: SolanaLocal, funded: KeypairSigner) -> None:
    """An approval names the spender and the allowance; a new one replaces it (one delegate)."""
    spender, other = KeypairSigner().address, KeypairSigner().address
    approve = Transfer(funded.address, spender, 25 * USDC, chain.demo_mint, TransferKind.APPROVE)

    receipt = chain.receipt(pay(chain, approve, funded))

    assert receipt.status is ReceiptStatus.CONFIRMED
    assert receipt.fee_paid == LAMPORTS_PER_SIGNATURE
    assert chain.allowance(funded.address, spender, chain.demo_mint) == 25 * USDC
    assert chain.balance(funded.address, chain.demo_mint) == 100 * USDC  # nothing moved yet
    pay(chain, Transfer(funded.address, other, 3, chain.demo_mint, TransferKind.APPROVE), funded)
    assert chain.allowance(funded.address, spender, chain.demo_mint) == 0
    assert chain.allowance(funded.address, other, chain.demo_mint) == 3


def test_sol_has_no_approvals(chain: SolanaLocal, funded: KeypairSigner) -> None:
    """An approval without a token mint is refused before anything is built."""
    approve = Transfer(funded.address, KeypairSigner().address, 1, kind=TransferKind.APPROVE)
    with pytest.raises(InvalidRequest) as caught:
        chain.quote_fee(approve)
    assert caught.value.code == "approve_needs_token"


def test_overspending_sol_lands_reverted_and_charges_only_the_fee(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """A transfer beyond the balance lands as failed: reverted, fee paid, amount not moved."""
    recipient = KeypairSigner().address
    before = chain.balance(funded.address)

    receipt = chain.receipt(pay(chain, Transfer(funded.address, recipient, 11 * SOL), funded))

    assert receipt.status is ReceiptStatus.REVERTED
    assert receipt.fee_paid == LAMPORTS_PER_SIGNATURE
    assert chain.balance(funded.address) == before - LAMPORTS_PER_SIGNATURE
    assert chain.balance(recipient) == 0


def test_overspending_tokens_reverts_and_pays_no_rent(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """A failed token payment rolls back the account creation too: fee only, no rent, no units."""
    recipient = KeypairSigner().address
    transfer = Transfer(funded.address, recipient, 101 * USDC, token=chain.demo_mint)
    before = chain.balance(funded.address)

    receipt = chain.receipt(pay(chain, transfer, funded))

    assert receipt.status is ReceiptStatus.REVERTED
    assert receipt.fee_paid == LAMPORTS_PER_SIGNATURE
    assert chain.balance(funded.address) == before - LAMPORTS_PER_SIGNATURE
    assert chain.balance(funded.address, chain.demo_mint) == 100 * USDC
    assert chain.balance(recipient, chain.demo_mint) == 0


def test_dust_to_a_new_account_fails_on_rent(chain: SolanaLocal, funded: KeypairSigner) -> None:
    """Solana refuses to leave a new account below its rent-exempt minimum; simulate says so."""
    dust = Transfer(funded.address, KeypairSigner().address, 4_321)
    simulation = chain.simulate(dust)
    assert not simulation.ok
    assert simulation.error is not None
    assert "rent-exempt minimum" in simulation.error
    assert chain.receipt(pay(chain, dust, funded)).status is ReceiptStatus.REVERTED


def test_a_sender_without_sol_is_refused_and_nothing_lands(chain: SolanaLocal) -> None:
    """No fee payer, no transaction: ``chain_rejected`` with the reason, no state change."""
    poor, recipient = KeypairSigner(), KeypairSigner().address
    transfer = Transfer(poor.address, recipient, 1_000)

    with pytest.raises(ChainRejected) as caught:
        pay(chain, transfer, poor)

    assert caught.value.code == "chain_rejected"
    assert "no SOL" in caught.value.message
    assert chain.balance(recipient) == 0


def test_simulate_reports_failure_without_changing_state(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """Simulation says why a transfer would fail, and neither outcome moves anything."""
    recipient = KeypairSigner().address
    too_much = Transfer(funded.address, recipient, 101 * USDC, token=chain.demo_mint)
    fine = Transfer(funded.address, recipient, SOL)
    before = (chain.balance(funded.address), chain.balance(funded.address, chain.demo_mint))

    failed, ok = chain.simulate(too_much), chain.simulate(fine)

    assert not failed.ok
    assert failed.error is not None
    assert "insufficient funds" in failed.error
    assert ok.ok
    assert ok.error is None
    after = (chain.balance(funded.address), chain.balance(funded.address, chain.demo_mint))
    assert after == before
    assert chain.balance(recipient) == 0
    assert chain.balance(recipient, chain.demo_mint) == 0


def test_send_refuses_a_cost_above_the_quote(chain: SolanaLocal, funded: KeypairSigner) -> None:
    """The fee policy approved the quote; a costlier transaction is not sent behind its back."""
    transfer = Transfer(funded.address, KeypairSigner().address, 1, token=chain.demo_mint)
    stale = FeeQuote(max_fee=LAMPORTS_PER_SIGNATURE)  # quoted as if the account existed
    with pytest.raises(InvalidRequest) as caught:
        chain.send(transfer, funded, stale)
    assert caught.value.code == "fee_above_quote"
    assert caught.value.field == "fee"
    assert funded.signed == []


def test_signer_must_be_the_sender_and_sign_correctly(
    chain: SolanaLocal, funded: KeypairSigner
) -> None:
    """A signer for another address, or one whose signature does not verify, sends nothing."""
    recipient = KeypairSigner().address
    transfer = Transfer(funded.address, recipient, 1_000)
    quote = chain.quote_fee(transfer)
    with pytest.raises(InvalidRequest) as wrong_key:
        chain.send(transfer, KeypairSigner(), quote)
    assert wrong_key.value.code == "signer_mismatch"

    impostor = BrokenSigner()
    chain.airdrop(impostor.address, SOL)
    with pytest.raises(TreasurerError) as bad_signature:
        pay(chain, Transfer(impostor.address, recipient, 1_000), impostor)
    assert bad_signature.value.code == "signature_invalid"
    assert chain.balance(recipient) == 0


def test_receipt_of_unknown_and_malformed_ids(chain: SolanaLocal) -> None:
    """A well-formed signature that never landed is dropped; garbage is a bad request."""
    never_sent = str(Keypair().sign_message(b"never sent"))
    assert chain.receipt(never_sent).status is ReceiptStatus.DROPPED
    with pytest.raises(InvalidRequest) as caught:
        chain.receipt("not-a-signature")
    assert caught.value.code == "tx_id_invalid"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda s, mint: Transfer("nope", s, 1), "address_invalid"),
        (lambda s, mint: Transfer(s, s, 0), "amount_zero"),
        (lambda s, mint: Transfer(s, s, -5), "amount_negative"),
        (lambda s, mint: Transfer(s, s, 2**64), "amount_too_large"),
        (lambda s, mint: Transfer(s, s, 1, token=s), "token_unknown"),
    ],
)
def test_bad_transfers_are_refused_with_a_code(
    chain: SolanaLocal,
    funded: KeypairSigner,
    make: Callable[[str, str], Transfer],
    code: str,
) -> None:
    """Malformed input fails before anything is built, naming what is wrong."""
    with pytest.raises(InvalidRequest) as caught:
        chain.simulate(make(funded.address, chain.demo_mint))
    assert caught.value.code == code


def test_concurrent_sends_all_land(chain: SolanaLocal) -> None:
    """Threads sending at once are serialized by the adapter; every payment lands exactly once."""
    senders = [KeypairSigner() for _ in range(6)]
    recipient = KeypairSigner().address
    for sender in senders:
        chain.airdrop(sender.address, SOL)
    tx_ids: list[str] = []

    def send_three(sender: KeypairSigner) -> None:
        for _ in range(3):
            tx_ids.append(pay(chain, Transfer(sender.address, recipient, 1_000_000), sender))

    threads = [threading.Thread(target=send_three, args=(s,)) for s in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(set(tx_ids)) == 18
    assert all(chain.receipt(t).status is ReceiptStatus.CONFIRMED for t in tx_ids)
    assert chain.balance(recipient) == 18 * 1_000_000


def test_faucet_mints_into_a_new_token_account(chain: SolanaLocal) -> None:
    """``mint_to`` creates the owner's account at the faucet's cost; other mints work too."""
    owner = KeypairSigner().address
    chain.mint_to(owner, 7 * USDC)
    chain.mint_to(owner, 1)
    assert chain.balance(owner, chain.demo_mint) == 7 * USDC + 1
    assert chain.balance(owner) == 0  # the owner paid nothing

    nine = chain.create_mint(9)
    chain.mint_to(owner, 5, token=nine)
    assert chain.balance(owner, nine) == 5
