"""Reconciliation over JSON-RPC against a real node (anvil, from npm), in real time.

The watcher runs as ``treasurer serve`` runs it: a background loop (here every 0.2 s) over an
:class:`~treasurer.adapters.chains.evm.EvmChain` reached by HTTP, reading blocks with their
transactions (``eth_getBlockByNumber``) and ERC-20 logs (``eth_getLogs``). The external
wallet's key is the test's: it signs and broadcasts itself with a plain web3 client. What the
tests assert about time is wall-clock time: an unauthorized transfer is recorded, counted,
notified (a signed webhook on 127.0.0.1) and has frozen the agent within a few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from tests.anvil import AnvilNode, deploy_stablecoin, mint, running_anvil, send_eth
from tests.reconcile_world import DUSD, EvmWallet, Network, watched_org
from tests.webhook_receiver import Receiver, running_receiver, until
from web3 import Web3

import treasurer
from treasurer.adapters.chains import EvmChain
from treasurer.adapters.sql.reconcile_store import SqlReconcileStore
from treasurer.adapters.sql.webhook_store import SqlWebhookStore
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.bootstrap.reconcile import open_reconciler
from treasurer.bootstrap.server import open_notifier, run_every
from treasurer.domain.org import Scope, ScopeKind
from treasurer.service.notify_admin import Webhooks
from treasurer.service.reconcile_ports import TransferRecord, TransferStatus

pytestmark = pytest.mark.timeout(180)

NETWORK = "anvil"
WATCH_EVERY_S = 0.2
#: "Within a few seconds": from the transfer's receipt to the recorded verdict.
DETECTION_LIMIT_S = 5.0


@dataclass(frozen=True)
class Node:
    anvil: AnvilNode
    w3: Web3
    token: str


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    with running_anvil() as anvil:
        w3 = anvil.web3()
        yield Node(anvil, w3, deploy_stablecoin(anvil, w3))


@dataclass
class Watched:
    """Governance over the org, a watcher loop over anvil, and the test's external wallet."""

    gov: EmbeddedGovernance
    wallet: EvmWallet
    store: SqlReconcileStore

    def records(self) -> list[TransferRecord]:
        return self.store.transfers(NETWORK, None, 100)

    def wait_for(self, condition: Callable[[list[TransferRecord]], bool]) -> float:
        """Seconds until the recorded transfers satisfy ``condition`` (bounded)."""
        start = time.monotonic()
        while not condition(self.records()):
            elapsed = time.monotonic() - start
            assert elapsed < DETECTION_LIMIT_S, f"not seen within {DETECTION_LIMIT_S} s"
            time.sleep(0.05)
        return time.monotonic() - start

    def authorize(self, amount: str, recipient: str, **extra: Any) -> str:
        result = self.gov.authorize(
            agent="agent_a",
            wallet=f"ext-{NETWORK}",
            amount=amount,
            asset="DUSD",
            recipient=recipient,
            **extra,
        )
        assert result.allowed, result.codes
        return result.id


@pytest.fixture
def watched(node: Node, database_url: str) -> Iterator[Watched]:
    wallet = EvmWallet(node.w3, node.token)
    send_eth(node.anvil, node.w3, node.anvil.keys[1], wallet.address, 10**18)
    mint(node.anvil, node.w3, node.token, wallet.address, 10_000 * DUSD)
    gov = treasurer.open(database_url)
    org = watched_org(
        [Network(NETWORK, node.token, "ETH", 18)],
        {NETWORK: wallet.address},
        on_breach=("block", "alert_finance", "freeze_agent"),
    )
    gov.apply(org)
    gov.set_price(f"{NETWORK}:ETH", "2000.00")
    chain = EvmChain.over_rpc(NETWORK, node.anvil.url, chain_id=node.anvil.chain_id)
    watcher = open_reconciler(gov, {NETWORK: chain}, capture_grace_s=2.0)
    watcher.run_once()  # watching starts at the current head
    stop = threading.Event()
    loop = run_every(WATCH_EVERY_S, stop, watcher.run_once, "reconciliation-test")
    try:
        yield Watched(gov, wallet, SqlReconcileStore(gov.sql.db))
    finally:
        stop.set()
        loop.join(10)
        watcher.close()
        gov.close()


def _someone() -> str:
    return str(Account.create().address)


def test_authorize_send_capture_on_anvil_is_matched(watched: Watched) -> None:
    """The governance flow over RPC: the watcher matches the transfer to its authorization."""
    shop = _someone()
    auth_id = watched.authorize("12.50", shop)
    tx_id = watched.wallet.send_token(shop, 12_500_000)
    watched.gov.capture(auth_id, tx_hash=tx_id)
    watched.wait_for(
        lambda rs: len(rs) == 1 and rs[0].status is not TransferStatus.AWAITING_CAPTURE
    )
    (record,) = watched.records()
    assert (record.status, record.authorization_id) == (TransferStatus.MATCHED, auth_id)
    assert record.transfer.tx_id == tx_id
    assert sum(r.captured_usd_micros for r in watched.gov.spend()) == 12_500_000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def test_an_unauthorized_transfer_on_anvil_is_caught_within_seconds(
    watched: Watched, receiver: Receiver
) -> None:
    """Sent behind Treasurer's back: within a few seconds it is recorded as unauthorized,
    counted in spend, the agent is frozen (on_breach: freeze_agent), and a signed
    spend.unauthorized webhook reaches the receiver."""
    webhooks = Webhooks(SqlWebhookStore(watched.gov.sql.db), watched.gov.clock)
    endpoint = webhooks.create(receiver.url("/alerts"), events=["spend.unauthorized"])
    receiver.secrets["/alerts"] = endpoint.secret
    tx_id = watched.wallet.send_token(_someone(), 700 * DUSD)
    elapsed = watched.wait_for(lambda rs: [r.status for r in rs] == [TransferStatus.UNAUTHORIZED])
    assert elapsed < DETECTION_LIMIT_S
    assert sum(r.captured_usd_micros for r in watched.gov.spend()) == 700 * 1_000_000
    # The freeze follows the record in the same watcher tick (its own transaction).
    deadline = time.monotonic() + DETECTION_LIMIT_S
    while Scope(ScopeKind.AGENT, "agent_a") not in watched.gov.cache.get().frozen:
        assert time.monotonic() < deadline, "the agent was not frozen"
        time.sleep(0.05)
    denied = watched.gov.authorize(
        agent="agent_a", wallet=f"ext-{NETWORK}", amount="1", asset="DUSD", recipient=_someone()
    )
    assert "agent_frozen" in denied.codes
    notifier = open_notifier(watched.gov)
    try:
        until(lambda: len(receiver.on("/alerts")) == 1, notifier.run_once, timeout_s=10)
    finally:
        notifier.close()
    (post,) = receiver.on("/alerts")
    assert post.signed and post.event == "spend.unauthorized"
    assert post.json["data"]["tx_id"] == tx_id and post.json["data"]["value_usd"] == "700.00"


def test_native_coin_sent_unasked_on_anvil_is_caught(watched: Watched) -> None:
    """0.05 ETH at $2,000 from the wallet, read from the block's transactions: $100 counted."""
    tx_id = watched.wallet.send_native(_someone(), 5 * 10**16)
    watched.wait_for(lambda rs: [r.status for r in rs] == [TransferStatus.UNAUTHORIZED])
    (record,) = watched.records()
    assert (record.transfer.tx_id, record.transfer.token) == (tx_id, None)
    assert sum(r.captured_usd_micros for r in watched.gov.spend()) == 100 * 1_000_000


def test_a_capture_contradicted_by_anvil_is_flagged(watched: Watched) -> None:
    """Authorized $10 to the shop; the wallet sent $10 elsewhere and captured with that hash:
    flagged as a mismatch on the recipient (nothing beyond the capture to count)."""
    shop, elsewhere = _someone(), _someone()
    auth_id = watched.authorize("10", shop)
    tx_id = watched.wallet.send_token(elsewhere, 10 * DUSD)
    watched.gov.capture(auth_id, tx_hash=tx_id)
    watched.wait_for(lambda rs: [r.status for r in rs] == [TransferStatus.MISMATCH])
    (record,) = watched.records()
    assert record.authorization_id == auth_id and record.detail["differences"] == ["recipient"]
    events = [e for e in watched.gov.store.audit_events(1000) if e["kind"] == "spend.mismatch"]
    assert len(events) == 1 and events[0]["subject"] == auth_id
    assert sum(r.captured_usd_micros for r in watched.gov.spend()) == 10 * 1_000_000
