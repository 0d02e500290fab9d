"""A custodial org on both embedded chains, served over HTTP: shared by the HTTP, SDK and CLI
payment tests.

Agents ``agent_a`` and ``agent_b`` (department ``ops``) each hold a custodial wallet on
``evm-local`` and on ``solana-local``, funded from the faucets with native coin and 10,000 of
each chain's demo stablecoin (pegged at $1.00); ``agent_a`` also has an external wallet on
``base``, a chain this node does not connect to. ``agent_a``: $1,000 a day; tiers instant to
$100, notify to $1,000, delay to $5,000, approval above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from eth_account import Account
from fastapi import FastAPI
from fastapi.testclient import TestClient
from solders.keypair import Keypair
from tests.fakes import FakeClock

from treasurer.adapters.chains.evm_local import DEMO_ASSET_DECIMALS, DEMO_ASSET_SYMBOL, LocalEvm
from treasurer.adapters.chains.solana import DEMO_DECIMALS, SolanaLocal
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.vault import FileVault
from treasurer.bootstrap import EmbeddedGovernance, open_governance, open_payments
from treasurer.interfaces.http import HttpSettings, create_app
from treasurer.service.chain_ports import Chain, ChainFamily
from treasurer.service.credentials import create_admin_key
from treasurer.service.payments import PaymentService

PASSPHRASE = "correct horse battery staple"
ETH = 10**18
SOL = 10**9
FUNDED_TOKENS = 10_000
EXTERNAL_BASE = "0x1111111111111111111111111111111111111111"
Headers = dict[str, str]


@dataclass(frozen=True)
class ChainCase:
    """One embedded chain as the tests see it: names, units and how to read balances."""

    network: str
    native: str
    native_decimals: int
    token_decimals: int

    @property
    def token_asset(self) -> str:
        return f"{self.network}:{DEMO_ASSET_SYMBOL}"

    @property
    def wallet(self) -> str:
        return f"a-{self.network}"

    def units(self, text: str) -> int:
        """A decimal string in token units as exact base units."""
        scaled = Decimal(text) * 10**self.token_decimals
        assert scaled == scaled.to_integral_value()
        return int(scaled)


EVM = ChainCase("evm-local", "ETH", 18, DEMO_ASSET_DECIMALS)
SOLANA = ChainCase("solana-local", "SOL", 9, DEMO_DECIMALS)
CASES = {case.network: case for case in (EVM, SOLANA)}


def fresh_recipient(network: str) -> str:
    """An address nobody has used: nothing on it but what the test sends."""
    if network == SOLANA.network:
        return str(Keypair().pubkey())
    return str(Account.create().address)


def _wallet(wallet_id: str, network: str, address: str) -> dict[str, str]:
    return {
        "id": wallet_id,
        "chain": network,
        "address": address,
        "custody": "local",
        "vendor": "treasurer",
    }


def custodial_org(
    evm_token: str, solana_mint: str, addresses: dict[str, str], *, agent_daily: str = "1000.00"
) -> dict[str, Any]:
    """The org of the module docstring; ``addresses`` maps wallet ids to vault keys."""

    def stable(network: str, token: str, decimals: int) -> dict[str, Any]:
        return {
            "id": f"{network}:{DEMO_ASSET_SYMBOL}",
            "chain": network,
            "symbol": DEMO_ASSET_SYMBOL,
            "decimals": decimals,
            "address": token,
            "stablecoin": True,
            "price": {"source": "fixed", "usd": "1.00"},
        }

    def native(network: str, symbol: str, decimals: int) -> dict[str, Any]:
        return {
            "id": f"{network}:{symbol}",
            "chain": network,
            "symbol": symbol,
            "decimals": decimals,
            "price": {"source": "manual", "max_age": "1h"},
        }

    tiers = {
        "instant_max_usd": "100.00",
        "notify_max_usd": "1000.00",
        "delay_max_usd": "5000.00",
        "delay_seconds": 3600,
    }
    return {
        "version": 1,
        "org": {"id": "acme", "name": "Acme", "budgets": [{"window": "day", "limit_usd": "50000"}]},
        "assets": [
            stable(EVM.network, evm_token, EVM.token_decimals),
            native(EVM.network, EVM.native, EVM.native_decimals),
            stable(SOLANA.network, solana_mint, SOLANA.token_decimals),
            native(SOLANA.network, SOLANA.native, SOLANA.native_decimals),
            {
                "id": "base:USDC",
                "chain": "base",
                "symbol": "USDC",
                "decimals": 6,
                "address": "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
                "stablecoin": True,
                "price": {"source": "fixed", "usd": "1.00"},
            },
        ],
        "departments": [{"id": "ops", "name": "Operations"}, {"id": "sales", "name": "Sales"}],
        "agents": [
            {
                "id": "agent_a",
                "name": "Agent A",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": agent_daily}],
                "tiers": tiers,
                "wallets": [
                    _wallet(EVM.wallet, EVM.network, addresses[EVM.wallet]),
                    _wallet(SOLANA.wallet, SOLANA.network, addresses[SOLANA.wallet]),
                    {
                        "id": "a-base",
                        "chain": "base",
                        "address": EXTERNAL_BASE,
                        "custody": "external",
                        "vendor": "privy",
                    },
                ],
            },
            {
                "id": "agent_b",
                "name": "Agent B",
                "department": "sales",
                "budgets": [{"window": "day", "limit_usd": "1000.00"}],
                "tiers": tiers,
                "wallets": [_wallet("b-evm-local", EVM.network, addresses["b-evm-local"])],
            },
        ],
        "policies": [],
    }


@dataclass
class World:
    """The app and everything behind it, for one test."""

    gov: EmbeddedGovernance
    payments: PaymentService
    vault: FileVault
    evm: LocalEvm
    solana: SolanaLocal
    app: FastAPI
    clock: FakeClock
    admin_token: str
    addresses: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def chain(self, network: str) -> Chain:
        return self.payments.chains.get(network)

    def token_of(self, network: str) -> str:
        return self.evm.token_address if network == EVM.network else self.solana.demo_mint

    def token_balance(self, network: str, address: str) -> int:
        return self.chain(network).balance(address, self.token_of(network))

    def native_balance(self, network: str, address: str) -> int:
        return self.chain(network).balance(address)

    def key(self, role: str, department: str | None = None) -> str:
        store = self.app.state.treasurer.credentials.store
        _key, token = create_admin_key(store, role, role, department, now=self.clock.now())
        return token

    def session(self, http: TestClient, agent: str) -> str:
        created = http.post(
            f"/v1/agents/{agent}/sessions", json={"name": "test"}, headers=bearer(self.admin_token)
        )
        assert created.status_code == 201, created.text
        return str(created.json()["token"])

    def close(self) -> None:
        self.gov.close()


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def build_world(
    database_url: str,
    clock: FakeClock,
    tmp_path: Path,
    evm: LocalEvm,
    *,
    with_payments: bool = True,
) -> World:
    """Fund fresh vault keys on both chains, apply the org, build the app (not yet started)."""
    solana = SolanaLocal()
    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    addresses = {
        EVM.wallet: vault.create_key(ChainFamily.EVM),
        SOLANA.wallet: vault.create_key(ChainFamily.SOLANA),
        "b-evm-local": vault.create_key(ChainFamily.EVM),
    }
    for wallet in (EVM.wallet, "b-evm-local"):
        evm.faucet(addresses[wallet], native_wei=ETH, token_units=FUNDED_TOKENS * 10**6)
    solana.airdrop(addresses[SOLANA.wallet], 10 * SOL)
    solana.mint_to(addresses[SOLANA.wallet], FUNDED_TOKENS * 10**DEMO_DECIMALS)
    gov = open_governance(database_url, clock=clock)
    gov.apply(custodial_org(evm.token_address, solana.demo_mint, addresses))
    gov.set_price(f"{EVM.network}:{EVM.native}", "3000.00")
    gov.set_price(f"{SOLANA.network}:{SOLANA.native}", "150.00")
    payments = open_payments(gov, {EVM.network: evm.chain, SOLANA.network: solana}, vault)
    credentials = SqlCredentialStore(gov.sql.db)
    app = create_app(
        gov,
        credentials,
        settings=HttpSettings(auth_max_failures=100_000),
        payments=payments if with_payments else None,
    )
    _key, admin_token = create_admin_key(credentials, "root", "admin", now=clock.now())
    return World(gov, payments, vault, evm, solana, app, clock, admin_token, addresses)
