"""``head`` and ``outgoing``: what the chain adapters report as having left a wallet.

On the embedded EVM (eth-tester) and the embedded Solana (LiteSVM), with transactions signed by
keys the test holds. Only value that really left counts: a reverted or failed transaction moves
nothing, another address's transfers are not ours, an ERC-721 transfer is not an ERC-20 one,
and a token transfer signed by a delegate still leaves the owner's wallet.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.transaction import Transaction
from tests.reconcile_world import DUSD, EvmWallet, SolanaWallet
from web3 import Web3

from treasurer.adapters.chains import solana_programs as programs
from treasurer.adapters.chains.evm_history import MAX_SCAN_BLOCKS, TRANSFER_TOPIC
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.chains.solana import SolanaLocal
from treasurer.domain.errors import InvalidRequest
from treasurer.service.chain_ports import NATIVE_INDEX

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def evm() -> LocalEvm:
    return LocalEvm()


def _funded(evm: LocalEvm) -> EvmWallet:
    wallet = EvmWallet(evm.w3, evm.token_address)
    evm.faucet(wallet.address, native_wei=10**18, token_units=100 * DUSD)
    return wallet


def test_evm_reports_native_and_token_transfers_in_chain_order(evm: LocalEvm) -> None:
    """Coin, then a token, from one wallet; another wallet's transfer is not reported."""
    wallet, other = _funded(evm), _funded(evm)
    start = evm.chain.head() + 1
    to = Account.create().address
    coin = wallet.send_native(to, 12345)
    token = wallet.send_token(to, 7 * DUSD)
    other.send_token(to, 1 * DUSD)
    found = evm.chain.outgoing([wallet.address], start, evm.chain.head())
    assert [(t.tx_id, t.index, t.token, t.amount) for t in found] == [
        (coin, NATIVE_INDEX, None, 12345),
        (token, found[1].index, evm.token_address.lower(), 7 * DUSD),
    ]
    assert found[1].index >= 0
    assert {t.sender for t in found} == {wallet.address.lower()}
    assert {t.recipient for t in found} == {to.lower()}
    assert [t.block for t in found] == sorted(t.block for t in found)
    assert all(t.initiator == wallet.address.lower() for t in found)


def test_evm_leaves_out_reverted_transactions(evm: LocalEvm) -> None:
    """Coin sent to a contract that reverts is mined with status 0: nothing left."""
    wallet = _funded(evm)
    start = evm.chain.head() + 1
    account = wallet.account
    tx = {
        "to": evm.reverter_address,
        "value": 10**15,
        "gas": 100_000,
        "nonce": evm.w3.eth.get_transaction_count(account.address),
        "chainId": evm.w3.eth.chain_id,
        "maxFeePerGas": 2 * int(evm.w3.eth.get_block("latest")["baseFeePerGas"]) + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    sent = evm.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
    assert evm.w3.eth.get_transaction_receipt(sent)["status"] == 0
    assert evm.chain.outgoing([wallet.address], start, evm.chain.head()) == []


def test_evm_head_and_range_limits(evm: LocalEvm) -> None:
    """The head is the latest block (one confirmation); a range is bounded; an empty or
    reversed one, or no EVM address, reads nothing."""
    assert evm.chain.head() == evm.w3.eth.block_number
    with pytest.raises(ValueError, match="at most"):
        evm.chain.outgoing([Account.create().address], 1, MAX_SCAN_BLOCKS + 1)
    assert evm.chain.outgoing([Account.create().address], 5, 4) == []
    assert evm.chain.outgoing(["9WdVr1xzBABczUTkiSyY5Khhc8nP8V3V7uf4zaz4geHu"], 0, 3) == []
    assert "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex() == TRANSFER_TOPIC


@pytest.fixture
def solana() -> SolanaLocal:
    return SolanaLocal()


def _sol_wallet(solana: SolanaLocal) -> SolanaWallet:
    wallet = SolanaWallet(solana)
    solana.airdrop(wallet.address, 10**10)
    solana.mint_to(wallet.address, 100 * DUSD)
    return wallet


def test_solana_reports_sol_and_spl_transfers_signed_elsewhere(solana: SolanaLocal) -> None:
    """Transactions built and signed by the wallet's own key and submitted raw are seen:
    SOL by its System transfer, SPL by the owner of the source token account."""
    wallet = _sol_wallet(solana)
    start = solana.head() + 1
    to = str(Keypair().pubkey())
    coin = wallet.send_native(to, 2 * 10**9)
    token = wallet.send_token(to, 3 * DUSD)
    found = solana.outgoing([wallet.address], start, solana.head())
    assert [(t.tx_id, t.token, t.amount, t.recipient) for t in found] == [
        (coin, None, 2 * 10**9, to),
        (token, solana.demo_mint, 3 * DUSD, to),
    ]
    assert found[1].index == 1  # after the instruction that creates the recipient's account
    assert solana.outgoing([wallet.address], solana.head() + 1, solana.head() + 10) == []


def test_solana_leaves_out_failed_transactions_and_other_wallets(solana: SolanaLocal) -> None:
    """A transfer of more SOL than the wallet holds lands failed: nothing moved."""
    wallet, other = _sol_wallet(solana), _sol_wallet(solana)
    start = solana.head() + 1
    params = programs.system_transfer(
        Pubkey.from_string(wallet.address), Keypair().pubkey(), 10**15
    )
    blockhash = solana.latest_blockhash()
    message = Message.new_with_blockhash([params], wallet.keypair.pubkey(), blockhash)
    failed = solana.submit_raw(Transaction([wallet.keypair], message, blockhash))
    assert solana.receipt(failed).status.value == "reverted"
    other.send_token(str(Keypair().pubkey()), DUSD)
    assert solana.outgoing([wallet.address], start, solana.head()) == []


def test_solana_a_delegate_moving_the_wallets_tokens_is_reported(solana: SolanaLocal) -> None:
    """The owner approved a delegate; the delegate's TransferChecked out of the owner's
    account leaves the owner's wallet, with the delegate as initiator."""
    owner = _sol_wallet(solana)
    delegate = Keypair()
    solana.airdrop(str(delegate.pubkey()), 10**9)
    mint = Pubkey.from_string(solana.demo_mint)
    owner_key = owner.keypair.pubkey()
    approve = programs.approve_checked(owner_key, mint, delegate.pubkey(), 5 * DUSD, 6)
    blockhash = solana.latest_blockhash()
    message = Message.new_with_blockhash([approve], owner_key, blockhash)
    solana.submit_raw(Transaction([owner.keypair], message, blockhash))
    start = solana.head() + 1
    to = Keypair().pubkey()
    pull = programs.transfer_checked(owner_key, mint, to, 4 * DUSD, 6)
    pull.accounts = [*pull.accounts[:3], type(pull.accounts[3])(delegate.pubkey(), True, False)]
    create = programs.create_token_account_idempotent(delegate.pubkey(), to, mint)
    blockhash = solana.latest_blockhash()
    message = Message.new_with_blockhash([create, pull], delegate.pubkey(), blockhash)
    solana.submit_raw(Transaction([delegate], message, blockhash))
    (found,) = solana.outgoing([owner.address], start, solana.head())
    assert (found.sender, found.recipient) == (owner.address, str(to))
    assert (found.amount, found.initiator) == (4 * DUSD, str(delegate.pubkey()))


def test_solana_submit_raw_refuses_what_is_not_a_transaction(solana: SolanaLocal) -> None:
    with pytest.raises(InvalidRequest) as caught:
        solana.submit_raw(b"\x01\x02garbage")
    assert caught.value.code == "transaction_malformed"
