"""The auditor's question over both modes: "all agent spending for Q2", against every store.

:mod:`tests.contract.test_q2_report` asks it of governance-mode traffic only. Here the same
quarter mixes both modes, because an agent's budget and its spend report span its external
and its custodial wallets alike:

- **governance mode**: authorize on an external wallet, then capture, capture in part, void,
  leave open, or be denied;
- **custodial mode**: Treasurer holds the key, signs and sends on the embedded chains
  (``evm-local`` and ``solana-local``, in-process, as the payment contract tests use them).
  A payment is confirmed, denied, reverted on chain, failed before sending (fee above the
  caller's cap), queued in the delay tier and cancelled, or queued and sent once the delay
  has passed.

The expected report is summed here from what the generator did and from each payment's own
amount and price, never from the store's query: captured authorizations plus confirmed
payments, to the micro-dollar, per org, department, agent, wallet, chain, asset and vendor,
and per asset in token base units. Denied, voided, failed and cancelled spends are in the
audit log but not in spend.

Network fees: a confirmed payment's fee is recorded on the payment (``fee_paid``,
``fee_paid_usd_micros``) and is not spend. The reservation and the capture are the payment's
amount only (``fee_usd`` reaches the decision for ``fee_limit`` policies, nothing else), so the
report counts the amount and leaves the fee out; the test pins that.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair
from tests.fakes import FakeClock

import treasurer
from treasurer.adapters.chains.evm_local import DEMO_ASSET_DECIMALS, DEMO_ASSET_SYMBOL, LocalEvm
from treasurer.adapters.chains.solana import DEMO_DECIMALS, SolanaLocal
from treasurer.adapters.vault import FileVault
from treasurer.bootstrap import EmbeddedGovernance, open_payments
from treasurer.domain.authorization import AuthState
from treasurer.domain.payment import PaymentState
from treasurer.service.chain_ports import ChainFamily, Receipt, ReceiptStatus
from treasurer.service.payments import PaymentService

Q2_START = datetime(2026, 4, 1, tzinfo=UTC)
Q2_END = datetime(2026, 7, 1, tzinfo=UTC)
PASSPHRASE = "correct horse battery staple"
SHOP = "0x5555555555555555555555555555555555555555"
MICROS = 1_000_000
DELAY_S = 3600
AGENT_DAILY = Decimal("3000.00")
#: Prices set before every custodial payment (natives are manual, fresh for an hour).
NATIVE_PRICE = {"evm-local:ETH": Decimal("3000.00"), "solana-local:SOL": Decimal("150.00")}
DUSD = {
    "evm-local": f"evm-local:{DEMO_ASSET_SYMBOL}",
    "solana-local": f"solana-local:{DEMO_ASSET_SYMBOL}",
}
DECIMALS = {
    "base:USDC": 6,
    "ethereum:USDC": 6,
    "evm-local:DUSD": DEMO_ASSET_DECIMALS,
    "solana-local:DUSD": DEMO_DECIMALS,
    "evm-local:ETH": 18,
}
#: Price of one token unit of each spent asset, as the org file and set_price give it.
PRICE = {
    "base:USDC": Decimal(1),
    "ethereum:USDC": Decimal(1),
    "evm-local:DUSD": Decimal(1),
    "solana-local:DUSD": Decimal(1),
    "evm-local:ETH": NATIVE_PRICE["evm-local:ETH"],
}


@dataclass(frozen=True)
class WalletSpec:
    id: str
    agent: str
    chain: str
    vendor: str
    custodial: bool


WALLETS = (
    WalletSpec("w1", "agent_a", "base", "coinbase-cdp", False),
    WalletSpec("w2", "agent_a", "ethereum", "metamask", False),
    WalletSpec("a-evm", "agent_a", "evm-local", "treasurer", True),
    WalletSpec("a-sol", "agent_a", "solana-local", "treasurer", True),
    WalletSpec("w3", "agent_b", "base", "privy", False),
    WalletSpec("b-evm", "agent_b", "evm-local", "treasurer", True),
    WalletSpec("w4", "agent_c", "ethereum", "fireblocks", False),
    WalletSpec("c-sol", "agent_c", "solana-local", "treasurer", True),
)
WALLET = {w.id: w for w in WALLETS}
DEPARTMENT = {"agent_a": "ops", "agent_b": "ops", "agent_c": "growth"}
AGENTS = sorted(DEPARTMENT)


@dataclass(frozen=True)
class Done:
    """One spend as the generator saw it end.

    ``mode`` is ``governance`` or ``custodial``; ``state`` the authorization's state (governance)
    or the payment's (custodial). ``units`` is the amount asked, in base units of ``asset``;
    ``captured_units`` what was captured (0 unless it counts as spend).
    """

    mode: str
    auth_id: str
    payment_id: str | None
    agent: str
    wallet: str
    asset: str
    at: datetime
    units: int
    captured_units: int
    state: str
    outcome: str  # what the generator meant to happen (custodial), or the state (governance)

    @property
    def counted(self) -> bool:
        if self.mode == "governance":
            return self.state == AuthState.CAPTURED.value
        return self.state == PaymentState.CONFIRMED.value


def usd_micros(asset: str, units: int) -> int:
    """The USD value of ``units`` base units of ``asset``, which the test keeps exact."""
    value = Decimal(units) * PRICE[asset] * MICROS / Decimal(10) ** DECIMALS[asset]
    assert value == value.to_integral_value(), (asset, units)
    return int(value)


def to_units(amount: Decimal, asset: str) -> int:
    scaled = amount * Decimal(10) ** DECIMALS[asset]
    assert scaled == scaled.to_integral_value()
    return int(scaled)


class RevertChosen:
    """An embedded chain whose receipts say *reverted* for the transactions named in
    ``doomed``; everything else goes to the real chain (the transfer still happens there,
    which is what a revert after inclusion looks like from Treasurer's side: a fee, no spend)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.doomed: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def network(self) -> str:
        return str(self.inner.network)

    @property
    def family(self) -> ChainFamily:
        family: ChainFamily = self.inner.family
        return family

    def receipt(self, tx_id: str) -> Receipt:
        real: Receipt = self.inner.receipt(tx_id)
        if tx_id not in self.doomed:
            return real
        return Receipt(tx_id, ReceiptStatus.REVERTED, real.fee_paid, real.block)


def _org(evm_token: str, solana_mint: str, addresses: dict[str, str]) -> dict[str, Any]:
    def usdc(chain: str) -> dict[str, Any]:
        return {
            "id": f"{chain}:USDC",
            "chain": chain,
            "symbol": "USDC",
            "decimals": 6,
            "address": "0x" + chain.encode().hex().ljust(40, "0")[:40],
            "stablecoin": True,
            "price": {"source": "fixed", "usd": "1.00"},
        }

    def dusd(chain: str, token: str, decimals: int) -> dict[str, Any]:
        return {
            "id": f"{chain}:{DEMO_ASSET_SYMBOL}",
            "chain": chain,
            "symbol": DEMO_ASSET_SYMBOL,
            "decimals": decimals,
            "address": token,
            "stablecoin": True,
            "price": {"source": "fixed", "usd": "1.00"},
        }

    def native(asset_id: str, decimals: int) -> dict[str, Any]:
        chain, symbol = asset_id.split(":")
        return {
            "id": asset_id,
            "chain": chain,
            "symbol": symbol,
            "decimals": decimals,
            "price": {"source": "manual", "max_age": "1h"},
        }

    def wallet(spec: WalletSpec) -> dict[str, Any]:
        address = addresses[spec.id]
        custody = "local" if spec.custodial else "external"
        return {
            "id": spec.id,
            "chain": spec.chain,
            "address": address,
            "custody": custody,
            "vendor": spec.vendor,
        }

    tiers = {
        "instant_max_usd": "100.00",
        "notify_max_usd": "1000.00",
        "delay_max_usd": "5000.00",
        "delay_seconds": DELAY_S,
    }
    return {
        "version": 1,
        "org": {
            "id": "acme",
            "name": "Acme",
            "timezone": "America/New_York",
            "budgets": [{"window": "day", "limit_usd": "50000.00"}],
        },
        "assets": [
            usdc("base"),
            usdc("ethereum"),
            dusd("evm-local", evm_token, DEMO_ASSET_DECIMALS),
            dusd("solana-local", solana_mint, DEMO_DECIMALS),
            native("evm-local:ETH", 18),
            native("solana-local:SOL", 9),
        ],
        "departments": [
            {
                "id": "ops",
                "name": "Operations",
                "budgets": [{"window": "day", "limit_usd": "8000.00"}],
            },
            {"id": "growth", "name": "Growth"},
        ],
        "agents": [
            {
                "id": agent,
                "name": agent.replace("_", " ").title(),
                "department": DEPARTMENT[agent],
                "budgets": [{"window": "day", "limit_usd": str(AGENT_DAILY)}],
                "tiers": tiers,
                "wallets": [wallet(w) for w in WALLETS if w.agent == agent],
            }
            for agent in AGENTS
        ],
    }


@dataclass
class World:
    gov: EmbeddedGovernance
    pay: PaymentService
    clock: FakeClock
    chains: dict[str, RevertChosen]
    solana_shop: str


@pytest.fixture(scope="module")
def local() -> LocalEvm:
    """One embedded EVM for the module; every test funds fresh keys on it."""
    return LocalEvm()


@pytest.fixture
def world(local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[World]:
    solana = SolanaLocal()
    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    addresses = {
        "w1": "0x1111111111111111111111111111111111111111",
        "w2": "0x2222222222222222222222222222222222222222",
        "w3": "0x3333333333333333333333333333333333333333",
        "w4": "0x4444444444444444444444444444444444444444",
    }
    for spec in WALLETS:
        if spec.custodial and spec.chain == "evm-local":
            addresses[spec.id] = vault.create_key(ChainFamily.EVM)
            local.faucet(addresses[spec.id], native_wei=1000 * 10**18, token_units=10**6 * 10**6)
        elif spec.custodial:
            addresses[spec.id] = vault.create_key(ChainFamily.SOLANA)
            solana.airdrop(addresses[spec.id], 100 * 10**9)
            solana.mint_to(addresses[spec.id], 10**6 * 10**DEMO_DECIMALS)
    gov = treasurer.open(database_url, clock=clock)
    gov.apply(_org(local.token_address, solana.demo_mint, addresses))
    chains = {"evm-local": RevertChosen(local.chain), "solana-local": RevertChosen(solana)}
    pay = open_payments(gov, dict(chains), vault)
    yield World(gov, pay, clock, chains, str(Keypair().pubkey()))
    gov.close()


def _governance(w: World, rng: random.Random, agent: str) -> Done:
    """Authorize on an external wallet, then capture, capture a third, void or leave open."""
    wallet = rng.choice([s.id for s in WALLETS if s.agent == agent and not s.custodial])
    asset = f"{WALLET[wallet].chain}:USDC"
    # Up to $1,000 (instant or notify tier, capturable at once); now and then above the
    # agent's $3,000 day, which is denied.
    low, high = (300_001, 400_000) if rng.random() < 0.12 else (100, 100_000)
    amount = Decimal(rng.randint(low, high)) / 100
    result = w.gov.authorize(
        agent=agent, wallet=wallet, amount=str(amount), asset="USDC", recipient=SHOP
    )
    captured, state = Decimal(0), result.state.value
    if result.allowed:
        roll = rng.random()
        if roll < 0.6:
            captured, state = amount, w.gov.capture(result.id).state.value
        elif roll < 0.75:
            captured = (amount / 3).quantize(Decimal("0.000001"))
            state = w.gov.capture(result.id, amount=str(captured)).state.value
        elif roll < 0.9:
            state = w.gov.void(result.id).state.value
    return Done(
        "governance",
        result.id,
        None,
        agent,
        wallet,
        asset,
        w.clock.now(),
        to_units(amount, asset),
        to_units(captured, asset) if state == AuthState.CAPTURED.value else 0,
        state,
        state,
    )


#: Custodial outcomes the generator aims for, with their odds (cumulative below).
OUTCOMES = (
    ("confirm", 0.40),
    ("confirm_native", 0.08),
    ("revert", 0.12),
    ("fee_cap", 0.08),
    ("cancel", 0.12),
    ("delay_then_send", 0.08),
    ("deny", 0.12),
)


def _pick(rng: random.Random) -> str:
    roll, total = rng.random(), 0.0
    for name, odds in OUTCOMES:
        total += odds
        if roll < total:
            return name
    return OUTCOMES[-1][0]


def _set_prices(w: World) -> None:
    for asset, price in NATIVE_PRICE.items():
        w.gov.set_price(asset, str(price))


def _custodial(w: World, rng: random.Random, agent: str, key: str) -> Done:
    """One custodial payment, steered towards an outcome; returns how it really ended."""
    outcome = _pick(rng)
    wallets = [s for s in WALLETS if s.agent == agent and s.custodial]
    if outcome == "confirm_native":
        wallets = [s for s in wallets if s.chain == "evm-local"] or wallets
    spec = rng.choice(wallets)
    recipient = SHOP if spec.chain == "evm-local" else w.solana_shop
    if outcome == "confirm_native" and spec.chain == "evm-local":
        asset, symbol = "evm-local:ETH", "ETH"
        amount = Decimal(rng.randint(1_000, 300_000)) / 10**6  # 0.001 to 0.3 ETH: $3 to $900
    else:
        asset, symbol = DUSD[spec.chain], DEMO_ASSET_SYMBOL
        low, high = {
            "cancel": (100_001, 250_000),  # the delay tier: queued
            "delay_then_send": (100_001, 250_000),
            "deny": (300_001, 400_000),  # above the agent's $3,000 day
        }.get(outcome, (100, 100_000))
        amount = Decimal(rng.randint(low, high)) / 100
    _set_prices(w)
    at = w.clock.now()
    result = w.pay.pay(
        agent,
        spec.id,
        recipient,
        format(amount, "f"),
        symbol,
        idempotency_key=key,
        max_fee_usd="0.000001" if outcome == "fee_cap" else None,
    )
    payment = result.payment
    if payment.state is PaymentState.BROADCAST:
        assert payment.tx_id is not None
        if outcome == "revert":
            w.chains[spec.chain].doomed.add(payment.tx_id)
        w.pay.confirm(payment.id)
    elif payment.state is PaymentState.QUEUED and outcome == "delay_then_send":
        w.clock.advance(seconds=DELAY_S + 1)
        _set_prices(w)
        w.gov.release_due()
        w.pay.execute_ready()
        w.pay.confirm(payment.id)
    elif payment.state is PaymentState.QUEUED:
        w.pay.cancel(payment.id, actor="admin:finance")
    final = w.pay.get(payment.id)
    assert final.authorization_id is not None
    units = to_units(amount, asset)
    confirmed = final.state is PaymentState.CONFIRMED
    return Done(
        "custodial",
        final.authorization_id,
        final.id,
        agent,
        spec.id,
        asset,
        at,
        units,
        units if confirmed else 0,
        final.state.value,
        outcome,
    )


def _traffic(w: World) -> list[Done]:
    rng = random.Random(2026_2)
    w.clock.set(datetime(2026, 3, 30, 12, tzinfo=UTC))
    done: list[Done] = []
    while w.clock.now() < datetime(2026, 7, 3, tzinfo=UTC):
        w.clock.advance(hours=rng.randint(5, 30))
        agent = rng.choice(AGENTS)
        if rng.random() < 0.5:
            done.append(_governance(w, rng, agent))
        else:
            done.append(_custodial(w, rng, agent, key=f"q2-{len(done)}"))
    return done


KEYS: dict[str, Callable[[Done], str]] = {
    "org": lambda d: "org",
    "department": lambda d: DEPARTMENT[d.agent],
    "agent": lambda d: d.agent,
    "wallet": lambda d: d.wallet,
    "chain": lambda d: WALLET[d.wallet].chain,
    "asset": lambda d: d.asset,
    "vendor": lambda d: WALLET[d.wallet].vendor,
}


def test_q2_report_counts_captures_and_confirmed_payments_cent_for_cent(world: World) -> None:
    w = world
    done = _traffic(w)
    in_q2 = [d for d in done if Q2_START <= d.at < Q2_END]
    assert len(in_q2) < len(done), "traffic must straddle the quarter"
    governance = {d.state for d in in_q2 if d.mode == "governance"}
    assert governance >= {"captured", "voided", "denied", "pending"}
    custodial = {(d.outcome, d.state) for d in in_q2 if d.mode == "custodial"}
    assert custodial >= {
        ("confirm", "confirmed"),
        ("confirm_native", "confirmed"),
        ("revert", "failed"),
        ("fee_cap", "failed"),
        ("cancel", "cancelled"),
        ("delay_then_send", "confirmed"),
        ("deny", "denied"),
    }, custodial
    assert {d.asset for d in in_q2 if d.counted} == set(PRICE)
    assert {WALLET[d.wallet].chain for d in in_q2 if d.counted} == {
        "base",
        "ethereum",
        "evm-local",
        "solana-local",
    }

    for by, key in KEYS.items():
        expected: dict[str, int] = defaultdict(int)
        counts: dict[str, int] = defaultdict(int)
        units: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for d in in_q2:
            if d.counted:
                expected[key(d)] += usd_micros(d.asset, d.captured_units)
                counts[key(d)] += 1
                units[key(d)][d.asset] += d.captured_units
        rows = w.gov.spend(by=by, since=Q2_START, until=Q2_END)
        counted = [r for r in rows if r.captured_count]
        assert {r.group: r.captured_usd_micros for r in counted} == dict(expected), by
        assert {r.group: r.captured_count for r in counted} == dict(counts), by
        assert {
            r.group: {asset: amount for asset, amount, _dec in r.captured_amounts} for r in counted
        } == {group: dict(per_asset) for group, per_asset in units.items()}, by
        # Both modes are in one report: a custodial and a governance spend of one agent add up.
        if by == "agent":
            for agent in AGENTS:
                modes = {d.mode for d in in_q2 if d.counted and d.agent == agent}
                assert modes == {"governance", "custodial"}, agent

    [org] = w.gov.spend(by="org", since=Q2_START, until=Q2_END)
    total = sum(usd_micros(d.asset, d.captured_units) for d in in_q2 if d.counted)
    assert org.captured_usd_micros == total
    # Only governance spends are left open: every payment ended (confirmed, failed, ...).
    reserved = 0
    for d in in_q2:
        if d.mode == "governance" and d.state == AuthState.PENDING.value:
            auth = w.gov.store.get_authorization(d.auth_id)
            assert auth is not None and auth.state is AuthState.PENDING
            reserved += usd_micros(d.asset, d.units)
    assert org.pending_usd_micros == reserved
    assert reserved > 0


def test_denied_failed_and_cancelled_spends_are_audited_but_not_spend(world: World) -> None:
    w = world
    done = _traffic(w)
    kinds: dict[str, set[str]] = defaultdict(set)
    for event in w.gov.store.audit_events(1_000_000):
        kinds[str(event["subject"])].add(str(event["kind"]))
    expected_kinds = {
        "captured": {"authorization.captured"},
        "voided": {"authorization.voided"},
        "denied": {"authorization.denied"},
        "confirmed": {"authorization.captured"},
        "failed": {"authorization.voided"},
        "cancelled": {"authorization.voided"},
    }
    seen: set[str] = set()
    for d in done:
        assert expected_kinds.get(d.state, set()) <= kinds[d.auth_id], d
        if d.payment_id is not None:
            assert f"payment.{d.state}" in kinds[d.payment_id], d
        auth = w.gov.store.get_authorization(d.auth_id)
        assert auth is not None
        if not d.counted:
            assert auth.state is not AuthState.CAPTURED, d
            assert auth.captured_usd_micros in (None, 0), d
        seen.add(d.state)
    assert seen >= {"voided", "denied", "failed", "cancelled"}
    # Per wallet, over all time: what did not count is absent from spend, however it ended.
    for wallet in WALLET:
        rows = w.gov.spend(by="wallet", wallet=wallet)
        counted = sum(usd_micros(d.asset, d.captured_units) for d in done if d.wallet == wallet)
        assert sum(r.captured_usd_micros for r in rows) == counted, wallet


def test_a_confirmed_payments_network_fee_is_not_spend(world: World) -> None:
    """The fee a confirmed payment paid is recorded on the payment, valued in USD, and not
    counted in spend: the report and the captured authorization hold the amount alone."""
    w = world
    done = _traffic(w)
    confirmed = [d for d in done if d.mode == "custodial" and d.state == "confirmed"]
    assert {WALLET[d.wallet].chain for d in confirmed} == {"evm-local", "solana-local"}
    fees = 0
    for d in confirmed:
        assert d.payment_id is not None
        payment = w.pay.get(d.payment_id)
        assert payment.fee_paid is not None and payment.fee_paid > 0, d
        assert payment.fee_paid_usd_micros is not None and payment.fee_paid_usd_micros > 0, d
        fees += payment.fee_paid_usd_micros
        auth = w.gov.store.get_authorization(d.auth_id)
        assert auth is not None
        assert auth.captured_usd_micros == usd_micros(d.asset, d.units) == auth.value_usd_micros
        assert auth.captured_amount == d.units
        # The payment's own wallet, in a window holding this payment alone.
        [row] = w.gov.spend(by="wallet", wallet=d.wallet, since=d.at, until=_next(done, d))
        assert row.captured_usd_micros == usd_micros(d.asset, d.units), d
    total = sum(usd_micros(d.asset, d.captured_units) for d in done if d.counted)
    [org] = w.gov.spend(by="org")
    assert fees > 0
    assert org.captured_usd_micros == total != total + fees


def _next(done: list[Done], d: Done) -> datetime:
    """When the spend after ``d`` started (the generator's clock only moves forward)."""
    later = [other.at for other in done if other.at > d.at]
    return min(later) if later else datetime(2100, 1, 1, tzinfo=UTC)
