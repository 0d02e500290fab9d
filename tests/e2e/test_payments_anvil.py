"""The custodial payment pipeline over JSON-RPC, against a real node (anvil, from npm).

What the embedded-EVM contract tests (``tests/contract/test_payments_pipeline.py``) cannot show:
a real node's mempool, its nonce bookkeeping, its receipts over HTTP, and a transaction that sits
broadcast while the process that sent it goes away. Two anvils serve the module:

- ``node`` mines every transaction as it arrives (automine), like a fast chain;
- ``held`` is started with ``--no-mining``: a broadcast payment waits in its mempool until the
  test mines (``evm_mine``), which is how a test stops a payment between broadcast and
  confirmation, or makes two transactions land in one block.

Every test creates its own custodial key in a fresh ``FileVault`` (low scrypt cost: unlock cost
is measured in ``benchmarks/vault.py``, not here) and funds it from anvil's development accounts,
so balances and nonces never leak between tests. The store is SQLite, and PostgreSQL too when
``TREASURER_TEST_POSTGRES_URL`` is set (the ``database_url`` fixture). Everything the tests
assert about the chain is read back from the node itself, not from Treasurer's records.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_typing import ChecksumAddress, HexStr
from tests.anvil import AnvilNode, deploy_stablecoin, mint, running_anvil, send_eth
from tests.fakes import FakeClock
from web3 import Web3

import treasurer
from treasurer.adapters.chains import EvmChain
from treasurer.adapters.vault import FileVault
from treasurer.bootstrap import EmbeddedGovernance, open_payments
from treasurer.domain.authorization import AuthState
from treasurer.domain.calldata import decode_uint256, encode_balance_of, encode_transfer
from treasurer.domain.payment import Payment, PaymentState
from treasurer.service.chain_ports import ChainFamily
from treasurer.service.payments import PaymentResult, PaymentService
from treasurer.service.payments_input import PaymentInput

pytestmark = pytest.mark.timeout(240)

NETWORK = "anvil"
ETH = 10**18
DUSD = 10**6
FUNDED_DUSD = 10_000 * DUSD
PASSPHRASE = "correct horse battery staple"
CONCURRENT_PAYMENTS = 20
CONFIRM_TIMEOUT_S = 20.0
#: Development key that pays the custodial wallets' gas money (key 0 owns the token).
GAS_FUNDER = 1


# -- nodes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One anvil with the demo stablecoin deployed on it."""

    anvil: AnvilNode
    w3: Web3
    token: ChecksumAddress


def _node(automine: bool) -> Iterator[Node]:
    with running_anvil(automine=automine) as anvil:
        w3 = anvil.web3()
        yield Node(anvil, w3, deploy_stablecoin(anvil, w3))


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """anvil mining each transaction as it arrives."""
    yield from _node(automine=True)


@pytest.fixture(scope="module")
def held() -> Iterator[Node]:
    """anvil with automine off: transactions wait until the test mines."""
    yield from _node(automine=False)


# -- the payment world -----------------------------------------------------------------------


def anvil_org(address: str, token: str) -> dict[str, Any]:
    """Agent ``agent_a`` with custodial wallet ``hot`` on anvil, and four covering budgets
    (wallet, agent, department, org), so every payment posts to four budget rows.

    Tiers: instant up to $100, notify up to $1,000.
    """
    return {
        "version": 1,
        "org": {"id": "acme", "budgets": [{"window": "day", "limit_usd": "50000.00"}]},
        "assets": [
            {
                "id": f"{NETWORK}:DUSD",
                "chain": NETWORK,
                "symbol": "DUSD",
                "decimals": 6,
                "address": token,
                "stablecoin": True,
                "price": {"source": "fixed", "usd": "1.00"},
            },
            {
                "id": f"{NETWORK}:ETH",
                "chain": NETWORK,
                "symbol": "ETH",
                "decimals": 18,
                "price": {"source": "manual", "max_age": "1h"},
            },
        ],
        "departments": [
            {"id": "ops", "budgets": [{"window": "day", "limit_usd": "20000.00"}]},
        ],
        "agents": [
            {
                "id": "agent_a",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": "1000.00"}],
                "tiers": {"instant_max_usd": "100.00", "notify_max_usd": "1000.00"},
                "wallets": [
                    {
                        "id": "hot",
                        "chain": NETWORK,
                        "address": address,
                        "custody": "local",
                        "vendor": "treasurer",
                        "budgets": [{"window": "day", "limit_usd": "5000.00"}],
                    }
                ],
            }
        ],
    }


@dataclass
class World:
    """A funded custodial wallet, governance on one database, and the pipeline over anvil."""

    node: Node
    gov: EmbeddedGovernance
    pay: PaymentService
    vault: FileVault
    address: str
    database_url: str
    clock: FakeClock

    # -- reading the chain (the node's own answers) --
    def tokens(self, address: str) -> int:
        """The token's ``balanceOf`` as the node answers it, in base units."""
        call = {"to": self.node.token, "data": encode_balance_of(address.lower())}
        return decode_uint256(bytes(self.node.w3.eth.call(call)))  # type: ignore[arg-type]

    def wei(self, address: str) -> int:
        return int(self.node.w3.eth.get_balance(Web3.to_checksum_address(address)))

    def nonce(self, block: str = "latest") -> int:
        """Transactions the node has from the custodial wallet (``pending``: mempool too)."""
        address = Web3.to_checksum_address(self.address)
        return int(self.node.w3.eth.get_transaction_count(address, block))  # type: ignore[arg-type]

    def transaction(self, tx_id: str | None) -> dict[str, Any]:
        assert tx_id is not None
        return dict(self.node.w3.eth.get_transaction(HexStr(tx_id)))

    def node_receipt(self, tx_id: str | None) -> dict[str, Any]:
        assert tx_id is not None
        return dict(self.node.w3.eth.get_transaction_receipt(HexStr(tx_id)))

    # -- reading Treasurer's records --
    def reopen(self) -> World:
        """What a new process builds from nothing but the database, the vault and the node."""
        gov = treasurer.open(self.database_url, clock=self.clock)
        vault = FileVault.open(self.vault.directory, PASSPHRASE, scrypt_n=2**4)
        pay = open_payments(gov, {NETWORK: _chain(self.node)}, vault)
        return World(self.node, gov, pay, vault, self.address, self.database_url, self.clock)

    def close(self) -> None:
        self.gov.close()
        self.vault.close()

    def authorization(self, payment_id: str) -> Any:
        payment = self.pay.get(payment_id)
        assert payment.authorization_id is not None
        return self.gov.store.get_authorization(payment.authorization_id)

    def balance_rows(self) -> dict[str, Any]:
        """The budget rows a payment of this agent claims, read from a dry-run decision."""
        check = self.gov.check(
            agent="agent_a", wallet="hot", amount="0.01", asset="DUSD", recipient=_recipient()
        )
        keys = [claim.key for claim in check.claims]
        assert len(keys) == 4  # wallet, agent, department, org
        return dict(self.gov.store.balances(keys))

    def captured_events(self) -> dict[str, int]:
        """How many ``authorization.captured`` audit events each authorization has."""
        counts: dict[str, int] = {}
        for event in self.gov.store.audit_events(10_000):
            if event["kind"] == "authorization.captured":
                subject = str(event["subject"])
                counts[subject] = counts.get(subject, 0) + 1
        return counts

    def unfinished(self) -> list[Payment]:
        states = frozenset({PaymentState.CREATED, PaymentState.BROADCAST})
        return self.pay.payments.unfinished(1000, states)


def _chain(node: Node) -> EvmChain:
    """The adapter as production builds it: over RPC, chain id checked, with timeouts."""
    return EvmChain.over_rpc(NETWORK, node.anvil.url, chain_id=node.anvil.chain_id, timeout_s=5)


def _recipient() -> str:
    return str(Account.create().address)


def _open_world(
    node: Node,
    database_url: str,
    clock: FakeClock,
    tmp_path: Path,
    *,
    tokens: int = FUNDED_DUSD,
) -> World:
    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    address = vault.create_key(ChainFamily.EVM)
    send_eth(node.anvil, node.w3, node.anvil.keys[GAS_FUNDER], address, ETH)
    mint(node.anvil, node.w3, node.token, address, tokens)
    gov = treasurer.open(database_url, clock=clock)
    gov.apply(anvil_org(address, node.token))
    gov.set_price(f"{NETWORK}:ETH", "3000.00")
    pay = open_payments(gov, {NETWORK: _chain(node)}, vault)
    return World(node, gov, pay, vault, address, database_url, clock)


@pytest.fixture
def world(node: Node, database_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[World]:
    """A wallet holding 10,000 DUSD and 1 ETH on the automining node."""
    built = _open_world(node, database_url, clock, tmp_path)
    yield built
    built.close()


def _confirmed(pay: PaymentService, payment_id: str) -> Payment:
    """Confirm until the payment is final (bounded: a stuck payment fails the test)."""
    deadline = time.monotonic() + CONFIRM_TIMEOUT_S
    while True:
        payment = pay.confirm(payment_id)
        if payment.done or time.monotonic() > deadline:
            return payment
        time.sleep(0.05)


# -- tests -----------------------------------------------------------------------------------


def test_instant_and_notify_confirm_and_balances_equal_captures(world: World) -> None:
    """$25 (instant) and $250 (notify) confirm; $1,500 is denied and sends nothing. On the node,
    the sender lost and the recipients gained exactly the captured base units, and the sender's
    ETH fell by exactly the fees the receipts report; each of the four budget rows posted the
    sum of the captured USD, with nothing left pending."""
    shop, vendor, too_far = _recipient(), _recipient(), _recipient()
    eth_before = world.wei(world.address)

    instant = world.pay.pay("agent_a", "hot", shop, "25.00", "DUSD", idempotency_key="i1")
    notify = world.pay.pay("agent_a", "hot", vendor, "250.00", "DUSD", idempotency_key="n1")
    sent = world.nonce("pending")
    denied = world.pay.pay("agent_a", "hot", too_far, "1500.00", "DUSD", idempotency_key="big")

    assert instant.state is PaymentState.BROADCAST, instant.payment.error
    assert notify.state is PaymentState.BROADCAST, notify.payment.error
    assert (instant.payment.tier, notify.payment.tier) == ("instant", "notify")
    assert denied.state is PaymentState.DENIED
    assert "agent_daily_budget_exceeded" in denied.codes
    assert denied.payment.tx_id is None
    assert world.nonce("pending") == sent == 2  # the denial sent nothing

    done = [_confirmed(world.pay, r.id) for r in (instant, notify)]
    assert [p.state for p in done] == [PaymentState.CONFIRMED, PaymentState.CONFIRMED]
    auths = [world.authorization(p.id) for p in done]
    assert [a.state for a in auths] == [AuthState.CAPTURED, AuthState.CAPTURED]
    assert [a.captured_amount for a in auths] == [25 * DUSD, 250 * DUSD]
    assert world.authorization(denied.id).state is AuthState.DENIED

    # The node's view: what moved is exactly what was captured.
    captured = sum(a.captured_amount for a in auths)
    assert world.tokens(shop) == 25 * DUSD
    assert world.tokens(vendor) == 250 * DUSD
    assert world.tokens(too_far) == 0
    assert world.tokens(world.address) == FUNDED_DUSD - captured
    receipts = [world.node_receipt(p.tx_id) for p in done]
    assert [r["status"] for r in receipts] == [1, 1]
    assert [world.transaction(p.tx_id)["nonce"] for p in done] == [0, 1]
    node_fees = [int(r["gasUsed"]) * int(r["effectiveGasPrice"]) for r in receipts]
    assert [p.fee_paid for p in done] == node_fees
    assert all(p.fee_quote is not None and p.fee_paid <= p.fee_quote for p in done)  # type: ignore[operator]
    assert world.wei(world.address) == eth_before - sum(node_fees)

    # The budgets: each row posted the captured USD (DUSD is pegged at $1), once.
    usd = sum(a.captured_usd_micros for a in auths)
    assert usd == 275_000_000
    for key, row in world.balance_rows().items():
        assert (row.posted_micros, row.pending_micros) == (usd, 0), key
    assert world.captured_events() == {a.id: 1 for a in auths}

    outbox = world.pay.payments.notifications(10)
    assert [row["kind"] for row in outbox] == ["payment.notify"]
    payload = outbox[0]["payload"]
    assert isinstance(payload, dict) and payload["payment"] == notify.id


def test_concurrent_payments_from_one_wallet_get_distinct_nonces_and_all_settle(
    world: World,
) -> None:
    """20 racing $60 payments from one wallet against a $1,000 daily budget: exactly 16 are
    broadcast (16 x $60 fits, 17 does not) and 4 denied; none fails. The node holds exactly 16
    transactions from the wallet, nonces 0..15, each mined with status 1. Two payment services
    then race to confirm: every broadcast payment ends ``confirmed``, each authorization is
    captured once, and budgets, balances and transfers agree to the unit."""
    to = _recipient()
    start = world.nonce()
    gate = threading.Barrier(CONCURRENT_PAYMENTS)

    def one(i: int) -> PaymentResult:
        gate.wait(timeout=30)
        return world.pay.pay("agent_a", "hot", to, "60.00", "DUSD", idempotency_key=f"c{i}")

    with ThreadPoolExecutor(max_workers=CONCURRENT_PAYMENTS) as pool:
        results = list(pool.map(one, range(CONCURRENT_PAYMENTS)))

    sent = [r for r in results if r.state is PaymentState.BROADCAST]
    denied = [r for r in results if r.state is PaymentState.DENIED]
    errors = [r.payment.error for r in results if r not in sent and r not in denied]
    assert errors == []
    assert (len(sent), len(denied)) == (16, 4)
    assert all("agent_daily_budget_exceeded" in r.codes for r in denied)

    # The node's view of what was sent: one transaction per sent payment, no gap, no repeat.
    nonces = sorted(int(world.transaction(r.payment.tx_id)["nonce"]) for r in sent)
    assert nonces == list(range(start, start + len(sent)))
    assert world.nonce("pending") == world.nonce() == start + len(sent)
    assert len({r.payment.tx_id for r in sent}) == len(sent)

    # Two services (as two processes would) race to confirm, bounded.
    other = world.reopen()
    try:
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        with ThreadPoolExecutor(max_workers=4) as pool:
            while world.unfinished() and time.monotonic() < deadline:
                list(pool.map(lambda s: s.confirm_pending(), [world.pay, other.pay] * 2))
    finally:
        other.close()

    assert world.unfinished() == []
    final = [world.pay.get(r.id) for r in sent]
    assert {p.state for p in final} == {PaymentState.CONFIRMED}
    assert {world.node_receipt(p.tx_id)["status"] for p in final} == {1}
    auths = [world.authorization(p.id) for p in final]
    assert world.captured_events() == {a.id: 1 for a in auths}
    assert all(a.captured_amount == 60 * DUSD for a in auths)
    assert world.tokens(to) == 60 * DUSD * len(sent)
    assert world.tokens(world.address) == FUNDED_DUSD - 60 * DUSD * len(sent)
    for key, row in world.balance_rows().items():
        assert (row.posted_micros, row.pending_micros) == (60_000_000 * len(sent), 0), key


def test_restart_between_broadcast_and_confirmation_confirms_exactly_once(
    held: Node, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """With mining held, a payment reaches ``broadcast`` and waits in the mempool. Its process
    goes away (governance, payment service, chain adapter and vault all closed). A fresh one,
    built from the database, the vault directory and the node, finds nothing to finish while
    the transaction is unmined; once a block is mined, ``confirm_pending`` confirms it: one
    capture, the budgets posted once. Confirming again, and another service (a second process
    or node) racing the fresh one, change nothing."""
    first = _open_world(held, database_url, clock, tmp_path)
    to = _recipient()
    result = first.pay.pay("agent_a", "hot", to, "30.00", "DUSD", idempotency_key="r1")
    assert result.state is PaymentState.BROADCAST, result.payment.error
    assert result.payment.raw_tx is not None
    assert held.anvil.mempool_size() == 1
    assert first.pay.confirm(result.id).state is PaymentState.BROADCAST  # not mined: pending
    assert first.nonce() == 0 and first.nonce("pending") == 1
    first.close()  # the process that broadcast it is gone

    fresh = first.reopen()
    racer = first.reopen()
    try:
        assert fresh.pay.confirm_pending() == 0  # still in the mempool: nothing to finish
        assert fresh.pay.get(result.id).state is PaymentState.BROADCAST

        held.anvil.mine()
        assert fresh.pay.confirm_pending() == 1
        done = fresh.pay.get(result.id)
        assert done.state is PaymentState.CONFIRMED
        assert fresh.node_receipt(done.tx_id)["status"] == 1
        auth = fresh.authorization(result.id)
        assert (auth.state, auth.captured_amount) == (AuthState.CAPTURED, 30 * DUSD)
        assert fresh.captured_events() == {auth.id: 1}
        rows = fresh.balance_rows()
        assert {(r.posted_micros, r.pending_micros) for r in rows.values()} == {(30_000_000, 0)}
        assert fresh.tokens(to) == 30 * DUSD
        assert fresh.tokens(fresh.address) == FUNDED_DUSD - 30 * DUSD

        assert fresh.pay.confirm_pending() == 0
        gate = threading.Barrier(8)

        def race(i: int) -> PaymentState:
            gate.wait(timeout=30)
            service = (fresh, racer)[i % 2].pay
            if i % 4 < 2:
                return service.confirm(result.id).state
            service.confirm_pending()
            return service.get(result.id).state

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert set(pool.map(race, range(8))) == {PaymentState.CONFIRMED}
        assert fresh.pay.get(result.id) == done
        assert fresh.authorization(result.id) == auth
        assert fresh.captured_events() == {auth.id: 1}
        assert fresh.balance_rows() == rows
        assert fresh.tokens(to) == 30 * DUSD
        assert fresh.nonce() == 1
    finally:
        fresh.close()
        racer.close()


def test_reverted_contract_call_voids_its_authorization(
    held: Node, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """A contract call that passes its fee estimate but reverts when mined: the wallet holds
    100 DUSD; an $80 transfer and then a raw ``call`` of the token's ``transfer(…, 50 DUSD)``
    are both broadcast while mining is held (each fits the balance alone); mined in nonce order
    in one block, the call reverts. Its authorization is voided, the payment fails with
    ``transaction_reverted`` and records the fee it paid anyway; the budgets post the $80 only.
    """
    world = _open_world(held, database_url, clock, tmp_path, tokens=100 * DUSD)
    try:
        shop, vendor = _recipient(), _recipient()
        eth_before = world.wei(world.address)
        drain = world.pay.pay("agent_a", "hot", shop, "80.00", "DUSD", idempotency_key="drain")
        calldata = "0x" + encode_transfer(vendor.lower(), 50 * DUSD).hex()
        call = world.pay.submit(
            PaymentInput(
                agent="agent_a", wallet="hot", kind="call", to=world.node.token, data=calldata
            ),
            idempotency_key="call",
        )
        assert drain.state is PaymentState.BROADCAST, drain.payment.error
        assert call.state is PaymentState.BROADCAST, call.payment.error
        assert held.anvil.mempool_size() == 2

        held.anvil.mine()
        settled = _confirmed(world.pay, drain.id)
        reverted = _confirmed(world.pay, call.id)

        assert settled.state is PaymentState.CONFIRMED
        assert reverted.state is PaymentState.FAILED
        assert reverted.error == "transaction_reverted"
        assert world.node_receipt(reverted.tx_id)["status"] == 0
        assert world.transaction(reverted.tx_id)["nonce"] == 1
        assert world.authorization(call.id).state is AuthState.VOIDED
        assert world.authorization(drain.id).state is AuthState.CAPTURED
        assert reverted.fee_paid is not None and reverted.fee_paid > 0
        assert settled.fee_paid is not None
        assert world.wei(world.address) == eth_before - settled.fee_paid - reverted.fee_paid
        assert (world.tokens(shop), world.tokens(vendor)) == (80 * DUSD, 0)
        assert world.tokens(world.address) == 20 * DUSD
        for key, row in world.balance_rows().items():
            assert (row.posted_micros, row.pending_micros) == (80_000_000, 0), key
        assert world.pay.confirm(call.id) == reverted  # confirming again changes nothing
    finally:
        world.close()
