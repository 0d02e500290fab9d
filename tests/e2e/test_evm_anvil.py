"""The EVM adapter over real JSON-RPC: anvil (from npm), the demo token, fees, nonces.

One anvil serves the module (``held``, a second one that mines only when told, keeps a
transaction pending for the test that needs one); every test uses its own dev key or fresh
addresses, so tests do not depend on each other's balances or nonces.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from tests.anvil import AnvilNode, KeySigner, running_anvil, settle
from web3 import HTTPProvider, Web3

from treasurer.adapters.chains import CallReverted, ChainMisconfigured, EvmChain
from treasurer.adapters.chains.evm_artifacts import DEMO_STABLECOIN, REVERTER, load_artifact
from treasurer.service.chain_ports import FeeQuote, ReceiptStatus, Transfer

pytestmark = pytest.mark.timeout(120)

GWEI = 10**9
CONCURRENT_SENDS = 20


@pytest.fixture(scope="module")
def node() -> Iterator[AnvilNode]:
    """A fresh anvil for this module, stopped afterwards."""
    with running_anvil() as running:
        yield running


@pytest.fixture(scope="module")
def w3(node: AnvilNode) -> Web3:
    """A plain web3 client for setup (deploying, minting, reading nonces)."""
    return Web3(HTTPProvider(node.url, request_kwargs={"timeout": 5}))


@pytest.fixture(scope="module")
def held() -> Iterator[AnvilNode]:
    """An anvil that mines only when told (``--no-mining``): a transaction stays pending."""
    with running_anvil(automine=False) as running:
        yield running


def _adapter(node: AnvilNode) -> EvmChain:
    return EvmChain.over_rpc("anvil", node.url, chain_id=node.chain_id, timeout_s=5)


@pytest.fixture
def chain(node: AnvilNode) -> EvmChain:
    """The adapter under test, as production builds it: over RPC with timeouts."""
    return _adapter(node)


def _transact(w3: Web3, key: str, transaction: dict[str, object]) -> dict[str, object]:
    account = Account.from_key(key)
    transaction = {
        **transaction,
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
    }
    raw = account.sign_transaction(transaction).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw), timeout=10)
    assert receipt["status"] == 1
    return dict(receipt)


def _deploy(w3: Web3, key: str, name: str, *args: object) -> ChecksumAddress:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    built = factory.constructor(*args).build_transaction({"from": Account.from_key(key).address})
    address = _transact(w3, key, dict(built))["contractAddress"]
    assert isinstance(address, str)
    return Web3.to_checksum_address(address)


@pytest.fixture(scope="module")
def token(w3: Web3, node: AnvilNode) -> ChecksumAddress:
    """The demo stablecoin, deployed by dev key 0 (its owner, the only minter)."""
    return _deploy(w3, node.keys[0], DEMO_STABLECOIN, "Demo USD", "DUSD")


@pytest.fixture(scope="module")
def reverter(w3: Web3, node: AnvilNode) -> ChecksumAddress:
    """A contract whose every call reverts."""
    return _deploy(w3, node.keys[0], REVERTER)


def _mint(w3: Web3, node: AnvilNode, token: ChecksumAddress, to: str, units: int) -> None:
    contract = w3.eth.contract(address=token, abi=load_artifact(DEMO_STABLECOIN).abi)
    owner = Account.from_key(node.keys[0]).address
    built = contract.functions.mint(to, units).build_transaction({"from": owner})
    _transact(w3, node.keys[0], dict(built))


def test_dev_keys_are_anvils_prefunded_accounts(node: AnvilNode, w3: Web3) -> None:
    """The keys derived from the fixed mnemonic are the accounts anvil funded."""
    derived = [Account.from_key(key).address for key in node.keys]
    assert derived == list(w3.eth.accounts)
    assert w3.eth.get_balance(derived[0]) > 0


def test_token_and_native_transfers_confirm_with_right_balances(
    node: AnvilNode, w3: Web3, chain: EvmChain, token: ChecksumAddress
) -> None:
    """An ERC-20 transfer and a native transfer both confirm, and every balance adds up,
    fees included (the payer loses exactly amount + fee_paid in ETH)."""
    payer = node.signer(1)
    recipient = KeySigner.create().address
    _mint(w3, node, token, payer.address, 10_000_000)
    eth_before = chain.balance(payer.address)

    token_move = Transfer(payer.address, recipient, 2_500_000, token=token)
    assert chain.simulate(token_move).ok
    token_receipt = settle(chain, chain.send(token_move, payer, chain.quote_fee(token_move)))
    native_move = Transfer(payer.address, recipient, 10**16)
    native_receipt = settle(chain, chain.send(native_move, payer, chain.quote_fee(native_move)))

    assert token_receipt.status is ReceiptStatus.CONFIRMED
    assert native_receipt.status is ReceiptStatus.CONFIRMED
    assert chain.balance(recipient, token) == 2_500_000
    assert chain.balance(payer.address, token) == 7_500_000
    assert chain.balance(recipient) == 10**16
    fees = token_receipt.fee_paid + native_receipt.fee_paid
    assert chain.balance(payer.address) == eth_before - 10**16 - fees


def test_reverted_call_is_reported_reverted_and_still_pays_its_fee(
    node: AnvilNode, chain: EvmChain, reverter: ChecksumAddress
) -> None:
    """A call that reverts on chain is mined with status 0: the receipt says reverted and
    carries the fee that was charged anyway (what a voided authorization still cost)."""
    payer = node.signer(3)
    call = Transfer(payer.address, KeySigner.create().address, 1, token=reverter)
    assert not chain.simulate(call).ok
    with pytest.raises(CallReverted):
        chain.quote_fee(call)
    before = chain.balance(payer.address)
    fee = FeeQuote(
        max_fee=100_000 * 5 * GWEI,
        gas_limit=100_000,
        max_fee_per_gas=5 * GWEI,
        max_priority_fee_per_gas=GWEI,
    )

    receipt = settle(chain, chain.send(call, payer, fee))

    assert receipt.status is ReceiptStatus.REVERTED
    assert 0 < receipt.fee_paid <= fee.max_fee
    assert chain.balance(payer.address) == before - receipt.fee_paid


def test_concurrent_sends_from_one_address_get_distinct_nonces_and_survive_restart(
    node: AnvilNode, w3: Web3, chain: EvmChain
) -> None:
    """Twenty threads sending from one address get twenty consecutive nonces and all confirm;
    a new adapter (a restarted process) continues with the next nonce."""
    payer = node.signer(4)
    start = w3.eth.get_transaction_count(Web3.to_checksum_address(payer.address))
    move = Transfer(payer.address, KeySigner.create().address, 1)
    fee = chain.quote_fee(move)

    with ThreadPoolExecutor(max_workers=CONCURRENT_SENDS) as pool:
        tx_ids = list(pool.map(lambda _: chain.send(move, payer, fee), range(CONCURRENT_SENDS)))
    receipts = [settle(chain, tx_id) for tx_id in tx_ids]
    restarted = EvmChain.over_rpc("anvil", node.url, chain_id=node.chain_id, timeout_s=5)
    after_restart = restarted.send(move, payer, fee)

    assert all(r.status is ReceiptStatus.CONFIRMED for r in receipts)
    nonces = sorted(w3.eth.get_transaction(HexStr(tx_id))["nonce"] for tx_id in tx_ids)
    assert nonces == list(range(start, start + CONCURRENT_SENDS))
    assert w3.eth.get_transaction(HexStr(after_restart))["nonce"] == start + CONCURRENT_SENDS
    assert settle(restarted, after_restart).status is ReceiptStatus.CONFIRMED


def test_a_nonce_another_writer_holds_in_the_mempool_is_retried(held: AnvilNode) -> None:
    """Two nodes send from one address, each counting nonces on its own: this node's count is
    stale and lands on a nonce the other node's transaction still holds in the mempool. The
    node refuses ours as "replacement transaction underpriced" (the same fee does not outbid
    it), which is the same conflict as a nonce already mined: one retry with a fresh nonce,
    and all three transactions confirm, on consecutive nonces."""
    w3 = held.web3()
    payer = held.signer(5)
    ours, theirs = _adapter(held), _adapter(held)
    start = w3.eth.get_transaction_count(Web3.to_checksum_address(payer.address), "pending")
    moves = [Transfer(payer.address, KeySigner.create().address, 1) for _ in range(3)]
    fee = ours.quote_fee(moves[0])

    first = ours.send(moves[0], payer, fee)  # ours now counts start + 1 as its next nonce
    taken = theirs.send(moves[1], payer, fee)  # theirs reads the node: start + 1, left pending
    retried = ours.send(moves[2], payer, fee)  # start + 1 is taken: refused, then start + 2
    held.mine()

    sent = [first, taken, retried]
    assert [w3.eth.get_transaction(HexStr(tx))["nonce"] for tx in sent] == [
        start,
        start + 1,
        start + 2,
    ]
    assert [settle(ours, tx).status for tx in sent] == [ReceiptStatus.CONFIRMED] * 3


def test_a_url_serving_another_chain_is_refused(node: AnvilNode) -> None:
    """A network configured as Base but pointed at this node fails before any transaction."""
    misdirected = EvmChain.over_rpc("base", node.url, chain_id=8453, timeout_s=5)
    with pytest.raises(ChainMisconfigured, match="8453"):
        misdirected.balance(node.signer(0).address)
