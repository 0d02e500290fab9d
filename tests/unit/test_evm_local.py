"""The EVM adapter on the embedded chain (py-evm via eth-tester): transfers, fees, failures, nonces.

One ``LocalEvm`` serves the module (starting one deploys two contracts); every test pays from its
own fresh key, so nonces and balances never leak between tests. Transaction counts are kept
small because every eth-tester transaction mines a block in Python.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from eth_typing import HexStr
from tests.anvil import KeySigner
from web3 import Web3
from web3.exceptions import Web3RPCError

from treasurer.adapters.chains import (
    NETWORKS,
    CallReverted,
    ChainMisconfigured,
    ChainRejected,
    ChainUnavailable,
    EvmChain,
    custom_network,
    evm_network,
)
from treasurer.adapters.chains.evm_artifacts import DEMO_STABLECOIN, REVERTER, load_artifact
from treasurer.adapters.chains.evm_errors import reason_of
from treasurer.adapters.chains.evm_local import TESTER_ERRORS, LocalEvm
from treasurer.adapters.chains.evm_receipts import SentLog, receipt_of
from treasurer.adapters.chains.evm_tx import complete_fee
from treasurer.domain.calldata import encode_approve, encode_transfer
from treasurer.domain.errors import InvalidRequest, NotFound
from treasurer.service.chain_ports import (
    FeeQuote,
    ReceiptStatus,
    Transfer,
    TransferKind,
)

ETH = 10**18
GWEI = 10**9
CONCURRENT_SENDS = 20
CONTRACTS = Path(__file__).resolve().parents[2] / "src/treasurer/adapters/chains/contracts"


@pytest.fixture(scope="module")
def local() -> LocalEvm:
    """One embedded chain with the demo token and the reverter deployed."""
    return LocalEvm()


@pytest.fixture
def payer(local: LocalEvm) -> KeySigner:
    """A fresh wallet holding 1 ETH and 100 demo dollars."""
    signer = KeySigner.create()
    local.faucet(signer.address, native_wei=ETH, token_units=100_000_000)
    return signer


def _nonce(local: LocalEvm, tx_id: str) -> int:
    return int(local.w3.eth.get_transaction(HexStr(tx_id))["nonce"])


def _fresh() -> str:
    return KeySigner.create().address


# -- artifacts and networks -------------------------------------------------------------------


@pytest.mark.parametrize("name", [DEMO_STABLECOIN, REVERTER])
def test_committed_artifacts_match_their_sources(name: str) -> None:
    """Each artifact was compiled from the .sol file beside it (else run compile_contracts.sh)."""
    artifact = load_artifact(name)
    source = (CONTRACTS / f"{name}.sol").read_bytes()
    assert artifact.source_sha256 == hashlib.sha256(source).hexdigest()
    assert artifact.evm_version == "shanghai"
    assert artifact.bytecode.startswith("0x60")


def test_preconfigured_networks_carry_their_chain_ids() -> None:
    """Names resolve to the chain ids nodes must answer with; RPC URLs are not baked in."""
    assert {name: NETWORKS[name].chain_id for name in ("ethereum", "base", "polygon-amoy")} == {
        "ethereum": 1,
        "base": 8453,
        "polygon-amoy": 80002,
    }
    assert evm_network("polygon").native_symbol == "POL"
    assert evm_network("arbitrum-sepolia").testnet
    assert custom_network("my-l3", 777).chain_id == 777
    with pytest.raises(NotFound, match="sepolia"):
        evm_network("mainnet")
    with pytest.raises(InvalidRequest, match="8453"):
        custom_network("base", 1)


# -- the demo token and the faucet ------------------------------------------------------------


def test_faucet_funds_native_coin_and_demo_tokens(local: LocalEvm) -> None:
    """A dev wallet gets exactly what the faucet sends; the token has 6 decimals."""
    wallet = _fresh()
    local.faucet(wallet, native_wei=3 * ETH, token_units=42_000_000)
    token = local.w3.eth.contract(
        address=local.token_address, abi=load_artifact(DEMO_STABLECOIN).abi
    )
    assert local.chain.balance(wallet) == 3 * ETH
    assert local.chain.balance(wallet, local.token_address) == 42_000_000
    assert token.functions.decimals().call() == 6
    assert token.functions.symbol().call() == "DUSD"


# -- transfers --------------------------------------------------------------------------------


def test_token_transfer_confirms_and_moves_the_balance(local: LocalEvm, payer: KeySigner) -> None:
    """An ERC-20 transfer is quoted, simulated, sent and confirmed; only gas leaves in ETH."""
    chain, recipient = local.chain, _fresh()
    move = Transfer(payer.address, recipient, 2_500_000, token=local.token_address)
    assert chain.simulate(move).ok

    receipt = chain.receipt(chain.send(move, payer, chain.quote_fee(move)))

    assert receipt.status is ReceiptStatus.CONFIRMED
    assert chain.balance(recipient, local.token_address) == 2_500_000
    assert chain.balance(payer.address, local.token_address) == 97_500_000
    assert chain.balance(payer.address) == ETH - receipt.fee_paid


def test_native_transfer_costs_exactly_amount_plus_fee(local: LocalEvm, payer: KeySigner) -> None:
    """A value send uses exactly 21,000 gas and the payer loses amount + fee_paid, to the wei."""
    chain, recipient = local.chain, _fresh()
    move = Transfer(payer.address, recipient, ETH // 10)
    fee = chain.quote_fee(move)

    receipt = chain.receipt(chain.send(move, payer, fee))

    assert fee.gas_limit == 21_000
    assert receipt.status is ReceiptStatus.CONFIRMED
    assert 0 < receipt.fee_paid <= fee.max_fee
    assert chain.balance(recipient) == ETH // 10
    assert chain.balance(payer.address) == ETH - ETH // 10 - receipt.fee_paid


def test_approve_sets_the_allowance(local: LocalEvm, payer: KeySigner) -> None:
    """An APPROVE transfer calls approve(spender, amount) on the token."""
    spender = _fresh()
    move = Transfer(
        payer.address, spender, 7_000_000, token=local.token_address, kind=TransferKind.APPROVE
    )
    receipt = local.chain.receipt(local.chain.send(move, payer, local.chain.quote_fee(move)))
    token = local.w3.eth.contract(
        address=local.token_address, abi=load_artifact(DEMO_STABLECOIN).abi
    )
    assert receipt.status is ReceiptStatus.CONFIRMED
    assert token.functions.allowance(payer.address, spender).call() == 7_000_000


def test_fee_quote_is_eip1559_with_headroom(local: LocalEvm, payer: KeySigner) -> None:
    """max fee per gas = 2 x base fee + priority fee, and max_fee = gas limit x that."""
    move = Transfer(payer.address, _fresh(), 1_000, token=local.token_address)
    base_fee = local.w3.eth.get_block("latest")["baseFeePerGas"]
    fee = local.chain.quote_fee(move)
    assert fee.max_priority_fee_per_gas == GWEI  # eth-tester's eth_maxPriorityFeePerGas
    assert fee.max_fee_per_gas == 2 * base_fee + GWEI
    assert fee.gas_limit is not None
    assert fee.max_fee == fee.gas_limit * fee.max_fee_per_gas
    estimate = local.w3.eth.estimate_gas(
        {
            "from": Web3.to_checksum_address(payer.address),
            "to": local.token_address,
            "data": encode_transfer(move.recipient.lower(), move.amount),
        }
    )
    assert fee.gas_limit == -(-estimate * 120 // 100)  # the estimate plus a 20% margin


# -- raw contract calls -----------------------------------------------------------------------


def test_a_raw_call_sends_the_callers_calldata_byte_for_byte(
    local: LocalEvm, payer: KeySigner
) -> None:
    """A CALL of ERC-20 transfer calldata to the token moves the tokens it encodes; the
    transaction on chain carries exactly the bytes given."""
    chain, recipient = local.chain, _fresh()
    data = encode_transfer(recipient.lower(), 1_250_000)
    call = Transfer(payer.address, local.token_address, 0, kind=TransferKind.CALL, data=data)
    assert chain.simulate(call).ok

    tx_id = chain.send(call, payer, chain.quote_fee(call))

    assert chain.receipt(tx_id).status is ReceiptStatus.CONFIRMED
    assert bytes(local.w3.eth.get_transaction(HexStr(tx_id))["input"]) == data
    assert chain.balance(recipient, local.token_address) == 1_250_000


def test_a_raw_call_carries_its_native_value(local: LocalEvm, payer: KeySigner) -> None:
    """The amount of a CALL is the native value sent along with the calldata."""
    chain, target = local.chain, _fresh()
    call = Transfer(payer.address, target, ETH // 100, kind=TransferKind.CALL, data=b"\x01\x02")
    receipt = chain.receipt(chain.send(call, payer, chain.quote_fee(call)))
    assert receipt.status is ReceiptStatus.CONFIRMED
    assert chain.balance(target) == ETH // 100
    assert chain.balance(payer.address) == ETH - ETH // 100 - receipt.fee_paid


@pytest.mark.parametrize(
    ("data", "value", "reason"),
    [
        (bytes.fromhex("deadbeef"), 0, "custom error 0x47e794ec"),  # AlwaysReverts()
        (encode_transfer("0x" + "11" * 20, 5), 0, "Reverter: transfer always reverts"),
        (encode_approve("0x" + "11" * 20, 5), 0, "Reverter: approve always reverts"),
        (bytes.fromhex("deadbeef"), 1, "(no reason given)"),  # value to a non-payable fallback
        (bytes.fromhex("deadbeef"), 5 * ETH, "insufficient funds"),
    ],
    ids=["custom-error", "require-transfer", "require-approve", "no-reason", "value-over-balance"],
)
def test_simulating_a_reverting_call_says_why(
    local: LocalEvm, payer: KeySigner, data: bytes, value: int, reason: str
) -> None:
    """A call's simulation fails as a value with the contract's own reason, in words."""
    call = Transfer(payer.address, local.reverter_address, value, kind=TransferKind.CALL, data=data)
    simulation = local.chain.simulate(call)
    assert not simulation.ok
    assert simulation.error is not None and reason in simulation.error
    if value <= ETH:
        with pytest.raises(CallReverted, match=re.escape(reason)):
            local.chain.quote_fee(call)


def test_a_reverted_call_is_reported_and_its_fee_charged(local: LocalEvm, payer: KeySigner) -> None:
    """Sent anyway, a reverting CALL is mined with status 0 and its value stays home."""
    call = Transfer(
        payer.address, local.reverter_address, 0, kind=TransferKind.CALL, data=b"\xde\xad\xbe\xef"
    )
    fee = FeeQuote(100_000 * 5 * GWEI, 100_000, 5 * GWEI, GWEI)
    receipt = local.chain.receipt(local.chain.send(call, payer, fee))
    assert receipt.status is ReceiptStatus.REVERTED
    assert local.chain.balance(payer.address) == ETH - receipt.fee_paid


def test_revert_data_is_named_in_words() -> None:
    """Custom errors reach us as bare data (web3 over JSON-RPC) or as a bytes literal
    (eth-tester); both are named, and ordinary messages pass through."""
    assert reason_of(ValueError("0x47e794ec")) == "execution reverted: custom error 0x47e794ec"
    assert reason_of(ValueError("0x47e794ec" + "00" * 32)) == (
        "execution reverted: custom error 0x47e794ec with 32 bytes of arguments"
    )
    assert reason_of(ValueError("execution reverted: b''")) == (
        "execution reverted: (no reason given)"
    )
    assert reason_of(ValueError("execution reverted: nope")) == "execution reverted: nope"


# -- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda local, who: Transfer(who, _fresh(), 5 * ETH), "insufficient funds"),
        (
            lambda local, who: Transfer(who, _fresh(), 10**12, token=local.token_address),
            "balance too low",
        ),
        (
            lambda local, who: Transfer(who, _fresh(), 1, token=local.reverter_address),
            "always reverts",
        ),
    ],
    ids=["native-over-balance", "token-over-balance", "reverting-contract"],
)
def test_simulation_reports_why_a_transfer_would_fail(
    local: LocalEvm,
    payer: KeySigner,
    make: Callable[[LocalEvm, str], Transfer],
    reason: str,
) -> None:
    """Simulation fails as a value, with the node's reason, for each way a transfer can fail."""
    simulation = local.chain.simulate(make(local, payer.address))
    assert not simulation.ok
    assert simulation.error is not None and reason in simulation.error


def test_a_reverting_call_cannot_be_quoted(local: LocalEvm, payer: KeySigner) -> None:
    """Estimating a reverting call raises CallReverted (a Conflict) with the revert reason."""
    with pytest.raises(CallReverted, match="always reverts") as caught:
        local.chain.quote_fee(Transfer(payer.address, _fresh(), 1, token=local.reverter_address))
    assert caught.value.code == "chain_call_reverted"


def test_a_reverted_transaction_is_reported_and_its_fee_charged(
    local: LocalEvm, payer: KeySigner
) -> None:
    """Sent anyway (with an explicit gas limit), a reverting call is mined with status 0: the
    receipt says reverted and the fee it still cost is what left the wallet."""
    call = Transfer(payer.address, _fresh(), 1, token=local.reverter_address)
    fee = FeeQuote(100_000 * 5 * GWEI, 100_000, 5 * GWEI, GWEI)

    receipt = local.chain.receipt(local.chain.send(call, payer, fee))

    assert receipt.status is ReceiptStatus.REVERTED
    assert receipt.fee_paid > 0
    assert local.chain.balance(payer.address) == ETH - receipt.fee_paid


def test_send_never_exceeds_the_quoted_maximum(local: LocalEvm, payer: KeySigner) -> None:
    """A fee quote whose parts cost more than its max_fee is refused before signing."""
    move = Transfer(payer.address, _fresh(), 1)
    with pytest.raises(InvalidRequest) as caught:
        local.chain.send(move, payer, FeeQuote(max_fee=1, gas_limit=21_000, max_fee_per_gas=GWEI))
    assert caught.value.code == "fee_above_quote"


def test_a_partial_fee_is_completed_from_a_fresh_quote_within_its_maximum() -> None:
    """Parts a caller leaves out are quoted afresh (and only then); the tip never exceeds the
    fee cap; an explicit, complete quote is used as given."""
    fresh = FeeQuote(10**15, 50_000, 4 * GWEI, GWEI)
    assert complete_fee(FeeQuote(10**15, gas_limit=30_000), lambda: fresh) == FeeQuote(
        10**15, 30_000, 4 * GWEI, GWEI
    )
    explicit = FeeQuote(21_000 * GWEI, 21_000, GWEI, 2 * GWEI)

    def never() -> FeeQuote:
        raise AssertionError("a complete quote needs no fresh one")

    assert complete_fee(explicit, never) == FeeQuote(21_000 * GWEI, 21_000, GWEI, GWEI)


def test_send_refuses_a_signer_that_does_not_hold_the_sender(
    local: LocalEvm, payer: KeySigner
) -> None:
    """The adapter never asks one key to sign for another address."""
    move = Transfer(payer.address, _fresh(), 1)
    with pytest.raises(InvalidRequest) as caught:
        local.chain.send(move, KeySigner.create(), local.chain.quote_fee(move))
    assert caught.value.code == "signer_mismatch"


@pytest.mark.parametrize(
    ("transfer", "code"),
    [
        (Transfer("0x" + "11" * 20, "0x1234", 1), "address_invalid"),
        (Transfer("0x" + "11" * 20, "0x" + "aB" * 20, 1), "address_checksum_invalid"),
        (Transfer("0x" + "11" * 20, "0x" + "22" * 20, 0), "amount_zero"),
        (Transfer("0x" + "11" * 20, "0x" + "22" * 20, 2**256), "amount_too_large"),
        (
            Transfer("0x" + "11" * 20, "0x" + "22" * 20, 1, kind=TransferKind.APPROVE),
            "approve_needs_token",
        ),
        (Transfer("0x" + "11" * 20, "0x" + "22" * 20, 1, data=b"\x01"), "data_not_allowed"),
        (
            Transfer("0x" + "11" * 20, "0x" + "22" * 20, 0, kind=TransferKind.CALL),
            "calldata_missing",
        ),
        (
            Transfer(
                "0x" + "11" * 20,
                "0x" + "22" * 20,
                0,
                token="0x" + "33" * 20,
                kind=TransferKind.CALL,
                data=b"\x01\x02\x03\x04",
            ),
            "call_token_not_allowed",
        ),
        (
            Transfer("0x" + "11" * 20, "0x12", 0, kind=TransferKind.CALL, data=b"\x01\x02\x03\x04"),
            "address_invalid",
        ),
    ],
    ids=[
        "short-address",
        "bad-checksum",
        "zero",
        "too-large",
        "native-approve",
        "transfer-with-data",
        "call-without-data",
        "call-with-token",
        "call-bad-to",
    ],
)
def test_malformed_transfers_are_refused_with_their_code(
    local: LocalEvm, transfer: Transfer, code: str
) -> None:
    """Bad addresses and amounts never reach the node."""
    with pytest.raises(InvalidRequest) as caught:
        local.chain.simulate(transfer)
    assert caught.value.code == code


def test_a_node_refusal_raises_and_leaves_no_nonce_gap(local: LocalEvm) -> None:
    """A wallet without ETH for gas is refused by the node (ChainRejected); once funded, its
    next send uses the nonce the refused one would have had."""
    broke = KeySigner.create()
    move = Transfer(broke.address, _fresh(), 1)
    fee = FeeQuote(21_000 * 5 * GWEI, 21_000, 5 * GWEI, GWEI)
    with pytest.raises(ChainRejected):
        local.chain.send(move, broke, fee)
    local.faucet(broke.address, native_wei=ETH)
    assert _nonce(local, local.chain.send(move, broke, fee)) == 0


def test_a_signer_failure_leaves_no_nonce_gap(local: LocalEvm, payer: KeySigner) -> None:
    """When signing fails before broadcast, the nonce is handed out again, not skipped."""
    move = Transfer(payer.address, _fresh(), 1)
    fee = local.chain.quote_fee(move)

    class Broken(KeySigner):
        def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
            raise RuntimeError("the vault is locked")

    first = _nonce(local, local.chain.send(move, payer, fee))
    with pytest.raises(RuntimeError):
        local.chain.send(move, Broken(payer._account), fee)
    assert _nonce(local, local.chain.send(move, payer, fee)) == first + 1


def test_a_nonce_taken_by_another_writer_is_retried(local: LocalEvm, payer: KeySigner) -> None:
    """Another process sending from the same address makes our counter stale; the node's
    'invalid nonce' is answered by one retry with a fresh nonce."""
    move = Transfer(payer.address, _fresh(), 1)
    fee = local.chain.quote_fee(move)
    other = EvmChain(local.w3, network="evm-local", node_errors=TESTER_ERRORS)
    assert _nonce(local, local.chain.send(move, payer, fee)) == 0
    assert _nonce(local, other.send(move, payer, fee)) == 1
    assert _nonce(local, local.chain.send(move, payer, fee)) == 2


def test_a_nonce_taken_twice_running_fails_named_as_a_nonce_conflict(
    local: LocalEvm, payer: KeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds our nonce in the mempool, and the fresh one on the retry too: the
    send is refused after exactly one retry (nothing sent), and the error names the nonce
    conflict, which the node's own words ("replacement transaction underpriced") do not."""
    move = Transfer(payer.address, _fresh(), 1)
    fee = local.chain.quote_fee(move)
    tries: list[bytes] = []

    def held_by_another(raw: bytes) -> bytes:
        tries.append(raw)
        raise Web3RPCError("{'code': -32003, 'message': 'replacement transaction underpriced'}")

    monkeypatch.setattr(local.w3.eth, "send_raw_transaction", held_by_another)
    named = r"^nonce conflict.*replacement transaction underpriced"
    with pytest.raises(ChainRejected, match=named):
        local.chain.send(move, payer, fee)
    monkeypatch.undo()

    assert len(tries) == 2
    assert _nonce(local, local.chain.send(move, payer, fee)) == 0  # no gap was left


# -- unacknowledged broadcasts ----------------------------------------------------------------


def test_a_broadcast_that_timed_out_after_delivery_is_followed_not_lost(
    local: LocalEvm, payer: KeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node got the transaction but the answer was lost: send still returns its id, the
    receipt confirms it, and the next send moves on to the following nonce."""
    move = Transfer(payer.address, _fresh(), 1)
    fee = local.chain.quote_fee(move)
    real = local.w3.eth.send_raw_transaction

    def delivered_then_timeout(raw: bytes) -> bytes:
        real(raw)
        raise requests.ReadTimeout("read timed out")

    monkeypatch.setattr(local.w3.eth, "send_raw_transaction", delivered_then_timeout)
    lost = local.chain.send(move, payer, fee)
    monkeypatch.undo()

    assert local.chain.receipt(lost).status is ReceiptStatus.CONFIRMED
    assert _nonce(local, local.chain.send(move, payer, fee)) == _nonce(local, lost) + 1


def test_a_broadcast_that_never_arrived_becomes_dropped_once_its_nonce_is_reused(
    local: LocalEvm, payer: KeySigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction never reached the node: it stays pending (never voided on a guess)
    until the next send takes its nonce; then it is certainly dropped."""
    move = Transfer(payer.address, _fresh(), 1)
    fee = local.chain.quote_fee(move)

    def refused(raw: bytes) -> bytes:
        raise requests.ConnectionError("connection refused")

    monkeypatch.setattr(local.w3.eth, "send_raw_transaction", refused)
    lost = local.chain.send(move, payer, fee)
    monkeypatch.undo()

    assert local.chain.receipt(lost).status is ReceiptStatus.PENDING
    other_move = Transfer(payer.address, _fresh(), 2)  # the same move would re-sign the same tx
    replacement = local.chain.send(other_move, payer, fee)
    assert _nonce(local, replacement) == 0
    assert local.chain.receipt(lost).status is ReceiptStatus.DROPPED


def test_unknown_and_malformed_transaction_ids(local: LocalEvm) -> None:
    """A hash this node never saw is pending (not dropped); a non-hash is refused."""
    assert local.chain.receipt("0x" + "ab" * 32).status is ReceiptStatus.PENDING
    assert receipt_of(local.w3, "0x" + "ab" * 32, 1, SentLog()).status is ReceiptStatus.PENDING
    with pytest.raises(InvalidRequest) as caught:
        local.chain.receipt("0x1234")
    assert caught.value.code == "tx_id_invalid"


# -- concurrency and restarts -----------------------------------------------------------------


def test_concurrent_sends_get_distinct_nonces_and_a_restart_continues(
    local: LocalEvm, payer: KeySigner
) -> None:
    """Twenty threads sending from one address get nonces 0..19 and all confirm; a new adapter
    (a restarted process) starts from the node's pending count and sends nonce 20."""
    move = Transfer(payer.address, _fresh(), 1)
    fee = local.chain.quote_fee(move)

    with ThreadPoolExecutor(max_workers=CONCURRENT_SENDS) as pool:
        tx_ids = list(
            pool.map(lambda _: local.chain.send(move, payer, fee), range(CONCURRENT_SENDS))
        )
    restarted = EvmChain(local.w3, network="evm-local", node_errors=TESTER_ERRORS)
    after_restart = restarted.send(move, payer, fee)

    assert {local.chain.receipt(tx_id).status for tx_id in tx_ids} == {ReceiptStatus.CONFIRMED}
    assert sorted(_nonce(local, tx_id) for tx_id in tx_ids) == list(range(CONCURRENT_SENDS))
    assert _nonce(local, after_restart) == CONCURRENT_SENDS


# -- configuration ----------------------------------------------------------------------------


def test_a_node_on_another_chain_is_refused(local: LocalEvm) -> None:
    """An adapter configured for Base refuses a node that answers with another chain id."""
    misdirected = EvmChain(local.w3, network="base", chain_id=8453)
    with pytest.raises(ChainMisconfigured, match="8453"):
        misdirected.balance(_fresh())


def test_an_unreachable_node_is_a_transient_error() -> None:
    """Nothing listens on port 1: the call fails fast as ChainUnavailable (transient)."""
    offline = EvmChain.over_rpc(
        "anvil", "http://127.0.0.1:1", chain_id=31337, timeout_s=0.5, retries=0
    )
    with pytest.raises(ChainUnavailable) as caught:
        offline.balance(_fresh())
    assert caught.value.transient


def test_node_failures_are_told_apart_from_reverts() -> None:
    """A node that cannot answer (rate limit, pruned state) is transient, not a revert."""
    from web3.exceptions import ContractLogicError, Web3RPCError  # noqa: PLC0415

    from treasurer.adapters.chains.evm import is_revert  # noqa: PLC0415

    assert is_revert(ContractLogicError("execution reverted: no"))
    assert is_revert(Web3RPCError("execution reverted"))
    assert is_revert(Web3RPCError("insufficient funds for gas * price + value"))
    assert not is_revert(Web3RPCError("429 Too Many Requests: rate limit exceeded"))
    assert not is_revert(Web3RPCError("BlockOutOfRangeError: block 12 pruned"))
