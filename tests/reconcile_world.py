"""External wallets for the reconciliation tests: keys the *test* holds, never Treasurer.

An external wallet signs and submits its own transactions, as a wallet vendor's SDK would:

- :class:`EvmWallet` signs EIP-1559 transactions with an ``eth_account`` key and sends the raw
  bytes through a plain web3 client (the embedded EVM's or anvil's);
- :class:`SolanaWallet` builds and signs Solana transactions with its own keypair and submits
  them with ``SolanaLocal.submit_raw``, the embedded chain's ``sendTransaction``.

Both send the native coin and a token (the demo stablecoin), return the transaction id, and
know nothing of Treasurer. :func:`watched_org` is the org file the tests share: one agent with
an external wallet on each chain under test, an agent daily budget and the assets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction
from tests.fakes import FakeClock
from web3 import Web3

import treasurer
from treasurer.adapters.chains import solana_programs as programs
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.chains.solana import SolanaLocal
from treasurer.adapters.sql.reconcile_store import SqlReconcileStore
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.bootstrap.reconcile import open_reconciler
from treasurer.domain.calldata import encode_transfer
from treasurer.service.chain_ports import Chain
from treasurer.service.reconcile import Reconciler
from treasurer.service.reconcile_ports import TransferRecord, TransferStatus

RECEIPT_TIMEOUT_S = 10.0
DUSD = 10**6
EVM = "evm-local"
SOLANA = "solana-local"


class ExternalWallet(Protocol):
    """What the tests need of a wallet Treasurer does not hold."""

    @property
    def address(self) -> str: ...

    def send_native(self, to: str, amount: int) -> str: ...

    def send_token(self, to: str, amount: int) -> str: ...

    def call(self, to: str, data: bytes, value: int = 0) -> str: ...


class EvmWallet:
    """An EVM key held by the test; every send is mined before it returns."""

    def __init__(self, w3: Web3, token: str, account: LocalAccount | None = None) -> None:
        self.w3 = w3
        self.token = Web3.to_checksum_address(token)
        self.account: LocalAccount = account or Account.create()

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send_native(self, to: str, amount: int) -> str:
        return self._send({"to": Web3.to_checksum_address(to), "value": amount, "gas": 21_000})

    def send_token(self, to: str, amount: int) -> str:
        return self.call(self.token, encode_transfer(to.lower(), amount))

    def call(self, to: str, data: bytes, value: int = 0) -> str:
        return self._send(
            {"to": Web3.to_checksum_address(to), "value": value, "data": "0x" + data.hex()}
        )

    def _send(self, transaction: dict[str, Any]) -> str:
        w3 = self.w3
        transaction = {
            **transaction,
            "from": self.account.address,
            "nonce": w3.eth.get_transaction_count(self.account.address, "pending"),
            "chainId": w3.eth.chain_id,
            "type": 2,
        }
        if "gas" not in transaction:
            transaction["gas"] = w3.eth.estimate_gas(transaction)  # type: ignore[arg-type]
        base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
        transaction["maxFeePerGas"] = 2 * base_fee + 10**9
        transaction["maxPriorityFeePerGas"] = 10**9
        transaction.pop("from")
        raw = self.account.sign_transaction(transaction).raw_transaction
        tx_hash = w3.eth.send_raw_transaction(raw)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
        assert receipt["status"] == 1, f"transaction {tx_hash.hex()} reverted"
        return "0x" + bytes(tx_hash).hex()


class SolanaWallet:
    """A Solana keypair held by the test, submitting through ``SolanaLocal.submit_raw``."""

    def __init__(self, chain: SolanaLocal, mint: str | None = None) -> None:
        self.chain = chain
        self.keypair = Keypair()
        self.mint = Pubkey.from_string(mint or chain.demo_mint)

    @property
    def address(self) -> str:
        return str(self.keypair.pubkey())

    def send_native(self, to: str, amount: int) -> str:
        params = TransferParams(
            from_pubkey=self.keypair.pubkey(), to_pubkey=Pubkey.from_string(to), lamports=amount
        )
        return self._submit([transfer(params)])

    def send_token(self, to: str, amount: int) -> str:
        owner, recipient = self.keypair.pubkey(), Pubkey.from_string(to)
        return self._submit(
            [
                programs.create_token_account_idempotent(owner, recipient, self.mint),
                programs.transfer_checked(owner, self.mint, recipient, amount, 6),
            ]
        )

    def call(self, to: str, data: bytes, value: int = 0) -> str:
        raise NotImplementedError("Solana has no EVM calls")

    def _submit(self, instructions: list[Any]) -> str:
        blockhash = self.chain.latest_blockhash()
        message = Message.new_with_blockhash(instructions, self.keypair.pubkey(), blockhash)
        signed = Transaction([self.keypair], message, blockhash)
        signature = self.chain.submit_raw(bytes(signed))
        assert self.chain.receipt(signature).status.value == "confirmed", signature
        return signature


@dataclass(frozen=True)
class Network:
    """One chain in an org file: its name, its demo token and its native coin."""

    name: str
    token: str
    native_symbol: str
    native_decimals: int


def watched_org(
    networks: list[Network],
    wallets: dict[str, str],
    *,
    on_breach: tuple[str, ...] = ("block", "alert_finance"),
    agent_daily: str = "1000.00",
    custodial: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Agent ``agent_a`` with an external wallet ``ext-<network>`` at ``wallets[network]`` on
    each network (and a custodial ``hot-<network>`` per ``custodial``), a daily budget of
    ``agent_daily``, DUSD pegged at $1 and each native coin at a manual price."""
    assets: list[dict[str, Any]] = []
    agent_wallets: list[dict[str, Any]] = []
    for network in networks:
        assets.append(
            {
                "id": f"{network.name}:DUSD",
                "chain": network.name,
                "symbol": "DUSD",
                "decimals": 6,
                "address": network.token,
                "stablecoin": True,
                "price": {"source": "fixed", "usd": "1.00"},
            }
        )
        assets.append(
            {
                "id": f"{network.name}:{network.native_symbol}",
                "chain": network.name,
                "symbol": network.native_symbol,
                "decimals": network.native_decimals,
                "price": {"source": "manual", "max_age": "1h"},
            }
        )
        if network.name in wallets:
            agent_wallets.append(
                {
                    "id": f"ext-{network.name}",
                    "chain": network.name,
                    "address": wallets[network.name],
                    "custody": "external",
                    "vendor": "privy",
                }
            )
        if custodial and network.name in custodial:
            agent_wallets.append(
                {
                    "id": f"hot-{network.name}",
                    "chain": network.name,
                    "address": custodial[network.name],
                    "custody": "local",
                    "vendor": "treasurer",
                }
            )
    return {
        "version": 1,
        "org": {"id": "acme", "name": "Acme", "budgets": [{"window": "day", "limit_usd": "50000"}]},
        "settings": {"on_breach": list(on_breach)},
        "assets": assets,
        "departments": [{"id": "ops", "name": "Operations"}],
        "agents": [
            {
                "id": "agent_a",
                "name": "Agent A",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": agent_daily}],
                "wallets": agent_wallets,
            }
        ],
    }


# -- a world of one chain under test ---------------------------------------------------------
@dataclass
class Side:
    """One chain under test, with an external wallet on it funded with gas and 10,000 DUSD."""

    network: str
    chain: Chain
    wallet: ExternalWallet
    spec: Network

    def fresh_address(self) -> str:
        if self.network == SOLANA:
            return str(Keypair().pubkey())
        return str(Account.create().address)

    @property
    def token_asset(self) -> str:
        return f"{self.network}:DUSD"


def embedded_side(network: str, local_evm: LocalEvm) -> Side:
    """An external wallet on ``evm-local`` (the shared chain) or on a fresh ``solana-local``."""
    if network == EVM:
        wallet = EvmWallet(local_evm.w3, local_evm.token_address)
        local_evm.faucet(wallet.address, native_wei=10**18, token_units=10_000 * DUSD)
        spec = Network(EVM, local_evm.token_address, "ETH", 18)
        return Side(EVM, local_evm.chain, wallet, spec)
    solana = SolanaLocal()
    sol_wallet = SolanaWallet(solana)
    solana.airdrop(sol_wallet.address, 10 * 10**9)
    solana.mint_to(sol_wallet.address, 10_000 * DUSD)
    return Side(SOLANA, solana, sol_wallet, Network(SOLANA, solana.demo_mint, "SOL", 9))


@dataclass
class World:
    """One chain, its external wallet, the governance of ``watched_org`` and a watcher."""

    side: Side
    gov: EmbeddedGovernance
    watcher: Reconciler

    def settle(self) -> None:
        """Run the watcher until it has read everything the chain holds (bounded)."""
        for _ in range(20):
            report = self.watcher.run_once()
            if report.networks.get(self.side.network) == self.side.chain.head():
                return
        raise AssertionError("the watcher did not catch up")

    def transfers(self, status: TransferStatus | None = None) -> list[TransferRecord]:
        return SqlReconcileStore(self.gov.sql.db).transfers(self.side.network, status, 100)

    def captured_usd(self) -> int:
        rows = self.gov.spend(by="agent")
        return sum(r.captured_usd_micros for r in rows)

    def audits(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.gov.store.audit_events(1000) if e["kind"] == kind]


def build_world(
    network: str,
    local_evm: LocalEvm,
    database_url: str,
    clock: FakeClock,
    **org: Any,
) -> World:
    """A world on ``network`` whose watcher has taken its first tick (``org``: options of
    :func:`watched_org`)."""
    side = embedded_side(network, local_evm)
    gov = treasurer.open(database_url, clock=clock)
    gov.apply(watched_org([side.spec], {network: side.wallet.address}, **org))
    gov.set_price(f"{network}:{side.spec.native_symbol}", "100.00")
    watcher = open_reconciler(gov, {network: side.chain}, capture_grace_s=30)
    watcher.run_once()  # the first tick records the head: watching starts there
    return World(side, gov, watcher)


def authorize(world: World, amount: str, recipient: str) -> str:
    """An allowed authorization of ``amount`` DUSD to ``recipient``; its id."""
    wallet = f"ext-{world.side.network}"
    result = world.gov.authorize(
        agent="agent_a", wallet=wallet, amount=amount, asset="DUSD", recipient=recipient
    )
    assert result.allowed, result.codes
    return result.id
