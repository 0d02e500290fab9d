"""One agent, a custodial and an external wallet on two chains, and one budget over both.

The custodial wallet is on the embedded EVM with its key in a vault (Treasurer signs); the
external one is on the embedded Solana with its key held by the test. The agent's daily budget
counts both, whichever wallet asks; the watcher reconciles both chains (the custodial payment
as ``payment``, the external spend as ``matched``), and an unauthorized spend on either reaches
a webhook receiver on 127.0.0.1 as a signed ``spend.unauthorized`` notification.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from solders.keypair import Keypair
from tests.fakes import FakeClock
from tests.reconcile_world import DUSD, EVM, SOLANA, Network, SolanaWallet, watched_org
from tests.webhook_receiver import Receiver, running_receiver, until

from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.chains.solana import SolanaLocal
from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.reconcile_store import SqlReconcileStore
from treasurer.adapters.sql.webhook_store import SqlWebhookStore
from treasurer.adapters.vault import FileVault
from treasurer.adapters.webhook_sender import HttpxWebhookSender
from treasurer.bootstrap import EmbeddedGovernance, open_governance
from treasurer.bootstrap.reconcile import open_reconciler
from treasurer.domain.payment import PaymentState
from treasurer.service.audit import AuditTrail
from treasurer.service.chain_ports import ChainFamily
from treasurer.service.notify import Notifier
from treasurer.service.notify_admin import Webhooks
from treasurer.service.reconcile import Reconciler
from treasurer.service.reconcile_ports import TransferStatus

pytestmark = pytest.mark.timeout(120)

PASSPHRASE = "correct horse battery staple"
SHOP_EVM = "0x5555555555555555555555555555555555555555"


@pytest.fixture(scope="module")
def local_evm() -> LocalEvm:
    return LocalEvm()


@dataclass
class TwoChains:
    gov: EmbeddedGovernance
    watcher: Reconciler
    solana: SolanaLocal
    external: SolanaWallet
    vault: FileVault

    def spend(self) -> int:
        return sum(r.captured_usd_micros + r.pending_usd_micros for r in self.gov.spend())


@pytest.fixture
def two(
    local_evm: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> Iterator[TwoChains]:
    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    custodial = vault.create_key(ChainFamily.EVM)
    local_evm.faucet(custodial, native_wei=10**18, token_units=10_000 * DUSD)
    solana = SolanaLocal()
    external = SolanaWallet(solana)
    solana.airdrop(external.address, 10**10)
    solana.mint_to(external.address, 10_000 * DUSD)
    chains = {EVM: local_evm.chain, SOLANA: solana}
    gov = open_governance(database_url, clock=clock, chains=chains, vault=vault)
    networks = [
        Network(EVM, local_evm.token_address, "ETH", 18),
        Network(SOLANA, solana.demo_mint, "SOL", 9),
    ]
    gov.apply(watched_org(networks, {SOLANA: external.address}, custodial={EVM: custodial}))
    gov.set_price("evm-local:ETH", "2000.00")
    gov.set_price("solana-local:SOL", "100.00")
    watcher = open_reconciler(gov, chains)
    watcher.run_once()
    yield TwoChains(gov, watcher, solana, external, vault)
    watcher.close()
    gov.close()
    vault.close()


def test_the_daily_budget_spans_custodial_and_external_wallets_on_two_chains(
    two: TwoChains,
) -> None:
    """$600 paid from the custodial EVM wallet and $300 authorized on the external Solana
    wallet fit the $1,000 day; the next $200 is denied whichever wallet asks, and the denial
    names what each wallet already spent."""
    paid = two.gov.pay(
        agent="agent_a", wallet=f"hot-{EVM}", amount="600", asset="DUSD", recipient=SHOP_EVM
    )
    assert paid.state is PaymentState.BROADCAST, paid.payment.error
    assert two.gov.confirm_payments() == 1
    shop = str(Keypair().pubkey())
    external = two.gov.authorize(
        agent="agent_a", wallet=f"ext-{SOLANA}", amount="300", asset="DUSD", recipient=shop
    )
    assert external.allowed, external.codes
    tx_id = two.external.send_token(shop, 300 * DUSD)
    two.gov.capture(external.id, tx_hash=tx_id)

    denied = two.gov.authorize(
        agent="agent_a", wallet=f"ext-{SOLANA}", amount="200", asset="DUSD", recipient=shop
    )
    assert not denied.allowed and "agent_daily_budget_exceeded" in denied.codes
    (reason,) = [r for r in denied.reasons if r["code"] == "agent_daily_budget_exceeded"]
    assert "$900.00 already spent" in str(reason["message"])
    refused = two.gov.pay(
        agent="agent_a", wallet=f"hot-{EVM}", amount="200", asset="DUSD", recipient=SHOP_EVM
    )
    assert refused.state is PaymentState.DENIED
    assert refused.decision is not None
    assert "agent_daily_budget_exceeded" in {r["code"] for r in refused.decision["reasons"]}
    assert two.spend() == 900_000_000

    for _ in range(5):
        two.watcher.run_once()
    store = SqlReconcileStore(two.gov.sql.db)
    assert [r.status for r in store.transfers(EVM, None, 10)] == [TransferStatus.PAYMENT]
    assert [r.status for r in store.transfers(SOLANA, None, 10)] == [TransferStatus.MATCHED]
    assert two.spend() == 900_000_000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def test_an_unauthorized_spend_reaches_the_webhooks_as_spend_unauthorized(
    two: TwoChains, receiver: Receiver
) -> None:
    """The notifier turns the watcher's ``spend.unauthorized`` audit event into a signed
    webhook naming the agent, the wallet, the amount, its value and the transaction."""
    webhooks = Webhooks(SqlWebhookStore(two.gov.sql.db), two.gov.clock)
    endpoint = webhooks.create(receiver.url("/alerts"), events=["spend.unauthorized"])
    receiver.secrets["/alerts"] = endpoint.secret
    tx_id = two.external.send_token(str(Keypair().pubkey()), 42 * DUSD)
    two.watcher.run_once()
    notifier = Notifier(
        SqlWebhookStore(two.gov.sql.db),
        HttpxWebhookSender(timeout_s=2.0),
        two.gov.clock,
        seal=AuditTrail(SqlAuditLog(two.gov.sql.db), two.gov.clock).seal,
        rand=lambda: 0.0,
    )
    try:
        until(lambda: len(receiver.on("/alerts")) == 1, notifier.run_once)
    finally:
        notifier.close()
    (post,) = receiver.on("/alerts")
    assert post.signed and post.event == "spend.unauthorized"
    data = post.json["data"]
    assert (data["agent"], data["wallet"], data["chain"]) == ("agent_a", f"ext-{SOLANA}", SOLANA)
    assert (data["amount"], data["value_usd"], data["tx_id"]) == ("42", "42.00", tx_id)
