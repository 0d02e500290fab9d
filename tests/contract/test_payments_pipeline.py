"""The custodial payment pipeline on the embedded EVM, against every store.

One ``LocalEvm`` serves the module (starting one deploys two contracts); every test creates its
own custodial key in a fresh vault and funds it from the faucet, so nonces and balances never
leak between tests. Payments go through the real pipeline: governance decides and reserves,
the vault signs, eth-tester mines, the confirmer captures or voids.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_typing import HexStr
from tests.fakes import FakeClock

import treasurer
from treasurer.adapters.chains import CallReverted
from treasurer.adapters.chains.evm_artifacts import DEMO_STABLECOIN, load_artifact
from treasurer.adapters.chains.evm_local import DEMO_ASSET_DECIMALS, DEMO_ASSET_SYMBOL, LocalEvm
from treasurer.adapters.vault import FileVault
from treasurer.bootstrap import EmbeddedGovernance, open_payments
from treasurer.domain.authorization import AuthState
from treasurer.domain.calldata import encode_approve, encode_transfer
from treasurer.domain.errors import IdempotencyConflict, InvalidRequest
from treasurer.domain.money import MAX_UINT256, format_amount
from treasurer.domain.payment import PaymentState
from treasurer.service.chain_ports import (
    ChainFamily,
    FeeQuote,
    Receipt,
    ReceiptStatus,
    Signer,
    Transfer,
)
from treasurer.service.payments import PaymentInput, PaymentPreview, PaymentService

ETH = 10**18
GWEI = 10**9
DUSD = 10**DEMO_ASSET_DECIMALS
SHOP = "0x5555555555555555555555555555555555555555"
EXTERNAL = "0x1111111111111111111111111111111111111111"
PASSPHRASE = "correct horse battery staple"
CONCURRENT_PAYMENTS = 20


def custodial_org(
    address: str,
    token: str,
    *,
    agent_daily: str = "1000.00",
    policies: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Agent ``agent_a`` with a custodial wallet on ``evm-local`` and the demo stablecoin.

    Tiers: instant up to $100, notify up to $1,000, delay up to $5,000, approval above.
    """
    return {
        "version": 1,
        "org": {"id": "acme", "name": "Acme", "budgets": [{"window": "day", "limit_usd": "50000"}]},
        "assets": [
            {
                "id": f"evm-local:{DEMO_ASSET_SYMBOL}",
                "chain": "evm-local",
                "symbol": DEMO_ASSET_SYMBOL,
                "decimals": DEMO_ASSET_DECIMALS,
                "address": token,
                "stablecoin": True,
                "price": {"source": "fixed", "usd": "1.00"},
            },
            {
                "id": "evm-local:ETH",
                "chain": "evm-local",
                "symbol": "ETH",
                "decimals": 18,
                "price": {"source": "manual", "max_age": "1h"},
            },
        ],
        "departments": [{"id": "ops", "name": "Operations"}],
        "agents": [
            {
                "id": "agent_a",
                "name": "Agent A",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": agent_daily}],
                "tiers": {
                    "instant_max_usd": "100.00",
                    "notify_max_usd": "1000.00",
                    "delay_max_usd": "5000.00",
                    "delay_seconds": 3600,
                },
                "wallets": [
                    {
                        "id": "hot",
                        "chain": "evm-local",
                        "address": address,
                        "custody": "local",
                        "vendor": "treasurer",
                    },
                    {
                        "id": "ext",
                        "chain": "evm-local",
                        "address": EXTERNAL,
                        "custody": "external",
                        "vendor": "privy",
                    },
                ],
            }
        ],
        "policies": policies or [],
    }


@dataclass
class World:
    """Everything a payment test touches."""

    local: LocalEvm
    gov: EmbeddedGovernance
    pay: PaymentService
    vault: FileVault
    address: str
    database_url: str

    def token_balance(self, address: str) -> int:
        return self.local.chain.balance(address, self.local.token_address)

    def authorization(self, payment_id: str) -> Any:
        payment = self.pay.get(payment_id)
        assert payment.authorization_id is not None
        return self.gov.store.get_authorization(payment.authorization_id)

    def pending_micros(self) -> int:
        return sum(b.pending_micros for b in self.gov.store.balances(self._keys()).values())

    def posted_micros(self) -> int:
        """Posted on the agent's daily budget row."""
        keys = [c.key for c in self._claims() if c.scope.kind.value == "agent"]
        return sum(b.posted_micros for b in self.gov.store.balances(keys).values())

    def _claims(self) -> tuple[Any, ...]:
        """The budget rows a payment of this agent claims (read from a dry-run decision)."""
        check = self.gov.check(
            agent="agent_a", wallet="hot", amount="0.01", asset="DUSD", recipient=SHOP
        )
        return check.claims

    def _keys(self) -> list[str]:
        return [c.key for c in self._claims()]


@pytest.fixture(scope="module")
def local() -> LocalEvm:
    """One embedded chain with the demo token deployed."""
    return LocalEvm()


def _world(
    local: LocalEvm,
    database_url: str,
    clock: FakeClock,
    tmp_path: Path,
    *,
    agent_daily: str = "1000.00",
    policies: list[dict[str, Any]] | None = None,
    eth_price: str | None = "3000.00",
) -> World:
    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    address = vault.create_key(ChainFamily.EVM)
    local.faucet(address, native_wei=ETH, token_units=10_000 * DUSD)
    gov = treasurer.open(database_url, clock=clock)
    org = custodial_org(address, local.token_address, agent_daily=agent_daily, policies=policies)
    gov.apply(org)
    if eth_price is not None:
        gov.set_price("evm-local:ETH", eth_price)
    pay = open_payments(gov, {"evm-local": local.chain}, vault)
    return World(local, gov, pay, vault, address, database_url)


@pytest.fixture
def world(local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[World]:
    """A funded custodial wallet under the default org, on the backend under test."""
    built = _world(local, database_url, clock, tmp_path)
    yield built
    built.gov.close()


def _recipient() -> str:
    from eth_account import Account  # noqa: PLC0415

    return str(Account.create().address)


def test_instant_payment_confirms_and_captures_exactly(world: World) -> None:
    """$25 of DUSD within policy: broadcast, confirmed, captured at the transfer amount, and
    the chain's balances moved by exactly the amount (tokens) and the fee paid (ETH)."""
    to = _recipient()
    eth_before = world.local.chain.balance(world.address)
    sender_before = world.token_balance(world.address)
    result = world.pay.pay("agent_a", "hot", to, "25.00", "DUSD", idempotency_key="k1")
    assert result.state is PaymentState.BROADCAST, result.payment.error
    assert result.payment.tier == "instant"
    assert result.payment.raw_tx is not None and result.payment.raw_tx.startswith("0x02")
    assert result.payment.fee_quote_usd_micros is not None
    assert world.pay.confirm_pending() == 1
    done = world.pay.get(result.id)
    assert done.state is PaymentState.CONFIRMED
    auth = world.authorization(result.id)
    assert auth.state is AuthState.CAPTURED
    assert auth.captured_amount == 25 * DUSD
    assert auth.tx_hash == done.tx_id
    assert world.token_balance(to) == 25 * DUSD
    assert world.token_balance(world.address) == sender_before - 25 * DUSD
    assert done.fee_paid is not None and done.fee_paid > 0
    assert done.fee_quote is not None and done.fee_paid <= done.fee_quote
    assert world.local.chain.balance(world.address) == eth_before - done.fee_paid
    assert done.fee_paid_usd_micros is not None and done.fee_paid_usd_micros > 0
    assert world.posted_micros() == 25_000_000
    assert world.pending_micros() == 0
    assert world.pay.payments.notifications(10) == []  # instant: no notification


def test_notify_payment_confirms_and_writes_outbox(world: World) -> None:
    """$250 is notify tier: it executes now, and an outbox row announces it."""
    to = _recipient()
    result = world.pay.pay("agent_a", "hot", to, "250.00", "DUSD", idempotency_key="n1")
    assert result.payment.tier == "notify"
    assert world.pay.confirm(result.id).state is PaymentState.CONFIRMED
    rows = world.pay.payments.notifications(10)
    assert [r["kind"] for r in rows] == ["payment.notify"]
    payload = rows[0]["payload"]
    assert isinstance(payload, dict)
    assert payload["payment"] == result.id and payload["tx_id"] == result.payment.tx_id
    assert world.token_balance(to) == 250 * DUSD


def test_payment_above_budget_is_denied_and_nothing_is_sent(world: World) -> None:
    """$1,500 against a $1,000 daily budget: denied with the reason, no transaction."""
    to = _recipient()
    nonce_before = world.local.w3.eth.get_transaction_count(world.address)  # type: ignore[arg-type]
    result = world.pay.pay("agent_a", "hot", to, "1500.00", "DUSD", idempotency_key="big")
    assert result.state is PaymentState.DENIED
    assert "agent_daily_budget_exceeded" in result.codes
    assert result.payment.tx_id is None
    assert world.token_balance(to) == 0
    assert world.local.w3.eth.get_transaction_count(world.address) == nonce_before  # type: ignore[arg-type]
    assert world.pending_micros() == 0


def test_idempotent_retry_returns_the_same_payment(world: World) -> None:
    """A retry with the same key returns the first payment and sends nothing new; the same
    key for another payment is a conflict."""
    to = _recipient()
    first = world.pay.pay("agent_a", "hot", to, "10.00", "DUSD", idempotency_key="same")
    again = world.pay.pay("agent_a", "hot", to, "10.00", "DUSD", idempotency_key="same")
    assert again.replayed and again.id == first.id and again.payment.tx_id == first.payment.tx_id
    assert again.decision == first.decision
    with pytest.raises(IdempotencyConflict):
        world.pay.pay("agent_a", "hot", to, "11.00", "DUSD", idempotency_key="same")
    world.pay.confirm_pending()
    assert world.token_balance(to) == 10 * DUSD


class RevertingChain:
    """The embedded chain, except that every receipt says the transaction reverted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def network(self) -> str:
        return str(self.inner.network)

    def receipt(self, tx_id: str) -> Receipt:
        real = self.inner.receipt(tx_id)
        return Receipt(tx_id, ReceiptStatus.REVERTED, real.fee_paid, real.block)


def test_reverted_transaction_voids_and_fails(world: World) -> None:
    """A receipt that says reverted releases the reservation (void) and fails the payment,
    recording the fee that was paid anyway; confirming again changes nothing."""
    to = _recipient()
    result = world.pay.pay("agent_a", "hot", to, "15.00", "DUSD", idempotency_key="rv")
    confirmer = open_payments(
        world.gov, {"evm-local": RevertingChain(world.local.chain)}, world.vault
    )
    failed = confirmer.confirm(result.id)
    assert failed.state is PaymentState.FAILED
    assert failed.error == "transaction_reverted"
    assert failed.fee_paid is not None and failed.fee_paid > 0
    assert world.authorization(result.id).state is AuthState.VOIDED
    assert world.pending_micros() == 0 and world.posted_micros() == 0
    assert confirmer.confirm(result.id) == failed
    assert world.pay.confirm_pending() == 0


class FreezingVault:
    """A vault that freezes the agent when the pipeline asks for the signer: the freeze lands
    after the decision and before signing."""

    def __init__(self, inner: FileVault, gov: EmbeddedGovernance) -> None:
        self.inner = inner
        self.gov = gov

    def create_key(self, family: ChainFamily) -> str:
        return self.inner.create_key(family)

    def addresses(self) -> list[tuple[ChainFamily, str]]:
        return self.inner.addresses()

    def signer(self, address: str) -> Signer:
        self.gov.freeze("agent:agent_a", reason="incident")
        return self.inner.signer(address)


def test_agent_frozen_between_decision_and_signing_is_not_sent(world: World) -> None:
    """A freeze that lands after the decision wins: nothing is signed, the reservation is
    released, the payment fails with ``frozen_before_signing``."""
    to = _recipient()
    pay = open_payments(
        world.gov, {"evm-local": world.local.chain}, FreezingVault(world.vault, world.gov)
    )
    nonce_before = world.local.w3.eth.get_transaction_count(world.address)  # type: ignore[arg-type]
    result = pay.pay("agent_a", "hot", to, "20.00", "DUSD", idempotency_key="f1")
    assert result.state is PaymentState.FAILED
    assert result.payment.error is not None
    assert result.payment.error.startswith("frozen_before_signing")
    assert world.authorization(result.id).state is AuthState.VOIDED
    assert world.pending_micros() == 0
    assert world.local.w3.eth.get_transaction_count(world.address) == nonce_before  # type: ignore[arg-type]
    assert world.token_balance(to) == 0


def test_missing_key_fails_and_releases_the_reservation(world: World, tmp_path: Path) -> None:
    """A vault without the wallet's key cannot sign: the payment fails at once and its
    reservation is released instead of being held until it expires."""
    empty = FileVault.open(tmp_path / "other-vault", PASSPHRASE, scrypt_n=2**4)
    pay = open_payments(world.gov, {"evm-local": world.local.chain}, empty)
    result = pay.pay("agent_a", "hot", _recipient(), "20.00", "DUSD", idempotency_key="nokey")
    assert result.state is PaymentState.FAILED
    assert result.payment.error is not None
    assert result.payment.error.startswith("signer_unavailable")
    assert world.authorization(result.id).state is AuthState.VOIDED
    assert world.pending_micros() == 0


def test_broadcast_payment_is_confirmed_by_a_fresh_process(world: World) -> None:
    """A payment left in ``broadcast`` (its process gone) is finished by a new service built
    from nothing but the database, the chain and the vault."""
    to = _recipient()
    result = world.pay.pay("agent_a", "hot", to, "30.00", "DUSD", idempotency_key="r1")
    assert result.state is PaymentState.BROADCAST
    with treasurer.open(world.database_url, clock=world.gov.clock) as fresh_gov:  # type: ignore[arg-type]
        fresh = open_payments(fresh_gov, {"evm-local": world.local.chain}, world.vault)
        assert fresh.confirm_pending() == 1
        assert fresh.confirm_pending() == 0  # exactly once
        assert fresh.get(result.id).state is PaymentState.CONFIRMED
    assert world.pay.confirm(result.id).state is PaymentState.CONFIRMED  # harmless repeat
    assert world.authorization(result.id).captured_amount == 30 * DUSD
    assert world.posted_micros() == 30_000_000


def test_concurrent_payments_get_distinct_nonces_and_exact_budgets(world: World) -> None:
    """20 racing $60 payments from one wallet against a $1,000 budget: 16 fit; the others are
    denied; every sent one has its own nonce and confirms; posted equals the sum confirmed."""
    to = _recipient()

    def one(i: int) -> Any:
        return world.pay.pay("agent_a", "hot", to, "60.00", "DUSD", idempotency_key=f"c{i}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(CONCURRENT_PAYMENTS)))
    sent = [r for r in results if r.state is PaymentState.BROADCAST]
    denied = [r for r in results if r.state is PaymentState.DENIED]
    assert len(sent) + len(denied) == CONCURRENT_PAYMENTS
    assert len(sent) == 16
    nonces = {
        int(world.local.w3.eth.get_transaction(HexStr(r.payment.tx_id))["nonce"]) for r in sent
    }
    assert len(nonces) == len(sent)
    assert world.pay.confirm_pending() == len(sent)
    confirmed = [world.pay.get(r.id) for r in sent]
    assert all(p.state is PaymentState.CONFIRMED for p in confirmed)
    assert world.posted_micros() == 60_000_000 * len(confirmed)
    assert world.token_balance(to) == 60 * DUSD * len(confirmed)
    assert world.pending_micros() == 0


def test_delay_tier_is_queued_with_its_reservation(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """$2,000 is delay tier: recorded as queued, reserved, nothing sent yet."""
    w = _world(local, database_url, clock, tmp_path, agent_daily="10000.00")
    try:
        to = _recipient()
        result = w.pay.pay("agent_a", "hot", to, "2000.00", "DUSD", idempotency_key="d1")
        assert result.state is PaymentState.QUEUED
        assert result.payment.tier == "delay"
        assert w.authorization(result.id).state is AuthState.DELAYED
        assert w.pending_micros() > 0
        assert w.token_balance(to) == 0
        assert w.pay.confirm_pending() == 0
    finally:
        w.gov.close()


def test_fee_above_the_callers_cap_voids_the_authorization(world: World) -> None:
    """A ``max_fee_usd`` below the quote fails the payment; the reservation is released."""
    to = _recipient()
    result = world.pay.pay(
        "agent_a", "hot", to, "5.00", "DUSD", idempotency_key="cap", max_fee_usd="0.000001"
    )
    assert result.state is PaymentState.FAILED
    assert result.payment.error is not None and result.payment.error.startswith("fee_above_cap")
    assert world.authorization(result.id).state is AuthState.VOIDED
    assert world.pending_micros() == 0
    assert world.token_balance(to) == 0


def test_fee_limit_without_a_native_price_fails_closed(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """With a fee limit in force and no ETH price, the fee cannot be valued: ``fee_unknown``."""
    fee_limit = {
        "id": "fees",
        "type": "fee_limit",
        "scope": "org:acme",
        "params": {"max_fee_usd": "5.00"},
    }
    w = _world(local, database_url, clock, tmp_path, policies=[fee_limit], eth_price=None)
    try:
        result = w.pay.pay("agent_a", "hot", _recipient(), "5.00", "DUSD", idempotency_key="u")
        assert result.state is PaymentState.DENIED
        assert "fee_unknown" in result.codes
        w.gov.set_price("evm-local:ETH", "3000.00")
        priced = w.pay.pay("agent_a", "hot", _recipient(), "5.00", "DUSD", idempotency_key="p")
        assert priced.state is PaymentState.BROADCAST
    finally:
        w.gov.close()


def test_dry_run_decides_quotes_and_simulates_without_reserving(world: World) -> None:
    """A dry run returns the decision, the fee and a simulation; nothing is recorded."""
    preview = world.pay.pay(
        "agent_a", "hot", _recipient(), "40.00", "DUSD", idempotency_key="dry", dry_run=True
    )
    assert isinstance(preview, PaymentPreview)
    assert preview.decision.allowed and preview.simulation.ok
    assert preview.fee is not None and preview.fee.max_fee > 0
    assert preview.fee_usd_micros is not None
    assert world.pay.payments.find_by_idempotency_key("agent_a", "dry") is None
    assert world.gov.spend(by="agent") == []
    too_much = world.pay.pay(
        "agent_a", "hot", _recipient(), "20000.00", "DUSD", idempotency_key="x", dry_run=True
    )
    assert not too_much.simulation.ok  # the wallet holds 10,000 DUSD
    assert too_much.fee is None  # a call that reverts has no fee to quote


def test_external_wallet_is_refused(world: World) -> None:
    """Treasurer signs only for wallets whose key it holds."""
    with pytest.raises(InvalidRequest) as raised:
        world.pay.pay("agent_a", "ext", SHOP, "1.00", "DUSD", idempotency_key="e")
    assert raised.value.code == "wallet_not_custodial"


def test_slow_confirmation_still_captures(world: World, clock: FakeClock) -> None:
    """Broadcast holds the reservation: a receipt read an hour later (past the 15-minute
    authorization lifetime, with the expiry sweeper running) still captures it."""
    to = _recipient()
    result = world.pay.pay("agent_a", "hot", to, "40.00", "DUSD", idempotency_key="slow")
    assert result.state is PaymentState.BROADCAST
    clock.advance(hours=1)
    assert world.gov.expire_stale() == 0
    assert world.pay.confirm_pending() == 1
    assert world.pay.get(result.id).state is PaymentState.CONFIRMED
    assert world.authorization(result.id).state is AuthState.CAPTURED
    assert world.posted_micros() == 40_000_000


# -- approvals and raw contract calls ---------------------------------------------------------

OPAQUE = b"\xde\xad\xbe\xef"  # a selector no contract here implements: the Reverter's fallback


def _call(to: str, data: bytes, **fields: Any) -> PaymentInput:
    """A raw contract call of ``data`` (sent as hex) to ``to``."""
    return PaymentInput("agent_a", "hot", kind="call", to=to, data="0x" + data.hex(), **fields)


def _approve(spender: str, amount: str) -> PaymentInput:
    return PaymentInput(
        "agent_a", "hot", kind="approve", recipient=spender, amount=amount, asset="DUSD"
    )


def _allowance(local: LocalEvm, owner: str, spender: str) -> int:
    token = local.w3.eth.contract(
        address=local.token_address, abi=load_artifact(DEMO_STABLECOIN).abi
    )
    return int(token.functions.allowance(owner, spender).call())


def _nonce(w: World) -> int:
    return int(w.local.w3.eth.get_transaction_count(w.address))  # type: ignore[arg-type]


def _policy(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"id": kind, "type": kind, "scope": "agent:agent_a", "params": params}


def test_raw_token_transfer_is_decided_on_the_recipient_in_its_calldata(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """ERC-20 ``transfer`` calldata sent to the token contract: the recipients allowlist checks
    the recipient hidden in the calldata. A stranger is denied and nothing is sent; the
    allowlisted recipient is paid exactly, and the budget posts exactly its USD value."""
    friend, stranger = _recipient(), _recipient()
    book = _policy("recipients", {"allow": [{"address": friend, "label": "friend"}]})
    w = _world(local, database_url, clock, tmp_path, policies=[book])
    try:
        token, nonce_before = local.token_address, _nonce(w)
        denied = w.pay.submit(
            _call(token, encode_transfer(stranger.lower(), 25 * DUSD)), idempotency_key="s"
        )
        assert denied.state is PaymentState.DENIED
        assert "recipient_not_allowed" in denied.codes
        assert denied.payment.tx_id is None and _nonce(w) == nonce_before
        assert w.token_balance(stranger) == 0 and w.pending_micros() == 0

        sender_before = w.token_balance(w.address)
        sent = w.pay.submit(
            _call(token, encode_transfer(friend.lower(), 25 * DUSD)), idempotency_key="f"
        )
        assert sent.state is PaymentState.BROADCAST, sent.payment.error
        assert (sent.payment.asset_id, sent.payment.amount) == ("evm-local:DUSD", 25 * DUSD)
        assert sent.payment.recipient == friend.lower()
        assert w.pay.confirm(sent.id).state is PaymentState.CONFIRMED
        assert w.token_balance(friend) == 25 * DUSD
        assert w.token_balance(w.address) == sender_before - 25 * DUSD
        assert w.authorization(sent.id).captured_amount == 25 * DUSD
        assert w.posted_micros() == 25_000_000
        assert w.pending_micros() == 0
    finally:
        w.gov.close()


def test_unlimited_approvals_are_denied_however_they_are_sent(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """An allowance of 2^256-1 is denied as kind approve and as raw approve calldata, even
    for a spender the token_approvals policy knows; nothing is sent or reserved."""
    spender = _recipient()
    approvals = _policy(
        "token_approvals", {"allow": [{"spender": spender, "asset": "DUSD", "max_amount": "500"}]}
    )
    w = _world(local, database_url, clock, tmp_path, policies=[approvals])
    try:
        nonce_before = _nonce(w)
        unlimited = format_amount(MAX_UINT256, DEMO_ASSET_DECIMALS)
        as_kind = w.pay.submit(_approve(spender, unlimited), idempotency_key="u1")
        raw = encode_approve(spender.lower(), MAX_UINT256)
        as_data = w.pay.submit(_call(local.token_address, raw), idempotency_key="u2")
        for result in (as_kind, as_data):
            assert result.state is PaymentState.DENIED
            assert "token_approval_unlimited" in result.codes
            assert result.payment.tx_id is None
        assert _nonce(w) == nonce_before
        assert _allowance(local, w.address, spender) == 0
        assert w.pending_micros() == 0
    finally:
        w.gov.close()


def test_an_approval_within_policy_executes_and_counts_at_its_full_amount(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """An approve inside token_approvals is sent, sets exactly that allowance on chain, and
    posts its whole amount to the budget, though no token has moved yet; the same through raw
    calldata; above the policy's max_amount it is denied."""
    spender = _recipient()
    approvals = _policy(
        "token_approvals", {"allow": [{"spender": spender, "asset": "DUSD", "max_amount": "500"}]}
    )
    w = _world(local, database_url, clock, tmp_path, policies=[approvals])
    try:
        kind = w.pay.submit(_approve(spender, "50.00"), idempotency_key="a1")
        assert kind.state is PaymentState.BROADCAST, kind.payment.error
        assert w.pay.confirm(kind.id).state is PaymentState.CONFIRMED
        assert _allowance(local, w.address, spender) == 50 * DUSD
        assert w.authorization(kind.id).captured_amount == 50 * DUSD
        assert w.posted_micros() == 50_000_000

        raw = encode_approve(spender.lower(), 60 * DUSD)
        data = w.pay.submit(_call(local.token_address, raw), idempotency_key="a2")
        assert data.state is PaymentState.BROADCAST, data.payment.error
        assert w.pay.confirm(data.id).state is PaymentState.CONFIRMED
        assert _allowance(local, w.address, spender) == 60 * DUSD
        assert w.posted_micros() == 110_000_000

        too_much = w.pay.submit(_approve(spender, "600"), idempotency_key="a3")
        assert too_much.state is PaymentState.DENIED
        assert "token_approval_not_allowed" in too_much.codes
        assert w.token_balance(spender) == 0 and w.pending_micros() == 0
    finally:
        w.gov.close()


def test_an_approval_in_the_delay_tier_is_queued_with_its_request(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """An approve in the delay tier waits like a transfer: queued, reserved, nothing sent,
    and its kind kept so the queue executes it as asked (tests/contract/test_payment_queue.py
    runs it)."""
    spender = _recipient()
    approvals = _policy("token_approvals", {"allow": [{"spender": spender}]})
    w = _world(local, database_url, clock, tmp_path, agent_daily="10000.00", policies=[approvals])
    try:
        result = w.pay.submit(_approve(spender, "2000"), idempotency_key="q")
        assert result.payment.tier == "delay"
        assert result.state is PaymentState.QUEUED
        assert w.pay.get(result.id).kind == "approve"
        assert w.authorization(result.id).state is AuthState.DELAYED
        assert w.pending_micros() > 0
        assert _allowance(local, w.address, spender) == 0
    finally:
        w.gov.close()


class RacingChain:
    """The embedded chain, as if the state changed between the quote and the block: a call
    that reverts now is still quoted (100,000 gas at 5 gwei), so it gets broadcast and mined
    with status 0, as a call that started reverting after its estimate would be."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def network(self) -> str:
        return str(self.inner.network)

    def quote_fee(self, transfer: Transfer) -> FeeQuote:
        try:
            return self.inner.quote_fee(transfer)  # type: ignore[no-any-return]
        except CallReverted:
            return FeeQuote(100_000 * 5 * GWEI, 100_000, 5 * GWEI, GWEI)


def test_a_call_that_reverts_on_chain_is_voided(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """A call allowed by a contracts entry, to a contract that reverts: broadcast, mined as
    reverted, its authorization voided, the budgets back to zero; only the fee left the
    wallet. A dry run would have said why it fails."""
    reverter = local.reverter_address
    entry = {"address": reverter, "methods": ["0xdeadbeef"], "max_usd_per_call": "10.00"}
    w = _world(
        local, database_url, clock, tmp_path, policies=[_policy("contracts", {"allow": [entry]})]
    )
    try:
        request = _call(reverter, OPAQUE, value="0.001")  # $3 of ETH to a non-payable fallback
        preview = w.pay.submit(request, idempotency_key="dry", dry_run=True)
        assert preview.decision.allowed and preview.fee is None
        assert not preview.simulation.ok
        assert preview.simulation.error is not None and "reverted" in preview.simulation.error

        pay = open_payments(w.gov, {"evm-local": RacingChain(local.chain)}, w.vault)
        eth_before = local.chain.balance(w.address)
        result = pay.submit(request, idempotency_key="rv")
        assert result.state is PaymentState.BROADCAST, result.payment.error
        assert (result.payment.asset_id, result.payment.amount) == ("evm-local:ETH", ETH // 1000)
        assert w.pending_micros() > 0
        failed = pay.confirm(result.id)
        assert failed.state is PaymentState.FAILED
        assert failed.error == "transaction_reverted"
        assert w.authorization(result.id).state is AuthState.VOIDED
        assert w.pending_micros() == 0 and w.posted_micros() == 0
        assert failed.fee_paid is not None and failed.fee_paid > 0
        assert local.chain.balance(w.address) == eth_before - failed.fee_paid
    finally:
        w.gov.close()


def test_a_call_without_a_contracts_entry_is_denied(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Default deny for calls: another contract, or another method of an allowed one, is
    denied with its own code, and nothing is sent."""
    allowed = _recipient()  # an account: calls to it would succeed, so only policy says no
    entry = {"address": allowed, "methods": ["0xdeadbeef"]}
    policies = [_policy("contracts", {"allow": [entry]})]
    w = _world(local, database_url, clock, tmp_path, policies=policies)
    try:
        nonce_before = _nonce(w)
        elsewhere = w.pay.submit(_call(_recipient(), OPAQUE, value="0.001"), idempotency_key="c1")
        assert elsewhere.state is PaymentState.DENIED
        assert "contract_not_allowed" in elsewhere.codes
        other_method = w.pay.submit(
            _call(allowed, b"\x12\x34\x56\x78", value="0.001"), idempotency_key="c2"
        )
        assert other_method.state is PaymentState.DENIED
        assert "contract_method_not_allowed" in other_method.codes
        assert _nonce(w) == nonce_before and w.pending_micros() == 0
        assert local.chain.balance(allowed) == 0
    finally:
        w.gov.close()


def test_without_any_contracts_policy_calls_are_denied(world: World) -> None:
    result = world.pay.submit(_call(_recipient(), OPAQUE, value="0.001"), idempotency_key="n")
    assert result.state is PaymentState.DENIED
    assert "contract_not_allowed" in result.codes


def test_a_zero_value_call_is_decided_at_zero_dollars(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Most contract calls send no native coin: such a call is valued at $0 and executes."""
    target = _recipient()  # an account: any calldata sent to it succeeds
    entry = {"address": target, "methods": ["0xdeadbeef"]}
    w = _world(
        local, database_url, clock, tmp_path, policies=[_policy("contracts", {"allow": [entry]})]
    )
    try:
        result = w.pay.submit(_call(target, OPAQUE), idempotency_key="z")
        assert result.state is PaymentState.BROADCAST, result.payment.error
        assert w.pay.confirm(result.id).state is PaymentState.CONFIRMED
        assert w.posted_micros() == 0
    finally:
        w.gov.close()


def test_a_retry_with_other_calldata_is_a_conflict(world: World) -> None:
    """The same key replays the same call; another amount, recipient, or the same movement
    asked as a plain transfer, under that key, is ``idempotency_key_reused``."""
    to, token = _recipient(), world.local.token_address
    first = world.pay.submit(
        _call(token, encode_transfer(to.lower(), 5 * DUSD)), idempotency_key="k"
    )
    again = world.pay.submit(
        _call(token, encode_transfer(to.lower(), 5 * DUSD)), idempotency_key="k"
    )
    assert again.replayed and again.id == first.id and again.payment.tx_id == first.payment.tx_id
    others = [
        _call(token, encode_transfer(to.lower(), 6 * DUSD)),
        _call(token, encode_transfer(_recipient().lower(), 5 * DUSD)),
        _call(token, encode_approve(to.lower(), 5 * DUSD)),
        PaymentInput("agent_a", "hot", recipient=to, amount="5", asset="DUSD"),
    ]
    for other in others:
        with pytest.raises(IdempotencyConflict):
            world.pay.submit(other, idempotency_key="k")
    world.pay.confirm_pending()
    assert world.token_balance(to) == 5 * DUSD


def test_a_call_moving_an_unregistered_token_is_refused(world: World) -> None:
    """ERC-20 calldata to a contract that is no registered asset cannot be valued: refused
    before anything is recorded."""
    data = encode_transfer(_recipient().lower(), 1)
    with pytest.raises(InvalidRequest) as raised:
        world.pay.submit(_call(world.local.reverter_address, data), idempotency_key="unk")
    assert (raised.value.code, raised.value.field) == ("unknown_asset", "to")
    assert world.pay.payments.find_by_idempotency_key("agent_a", "unk") is None
