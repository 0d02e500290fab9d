"""Reconciliation on the embedded EVM and the embedded Solana, against every store.

An external wallet (its key held by the test, never by Treasurer) spends through the
governance flow (authorize → sign and send itself → capture) or behind Treasurer's back, and
the watcher (:class:`~treasurer.service.reconcile.Reconciler`) reads the chain and accounts for
every transfer: matched, unauthorized (counted, audited, freezing the agent when the org file
says so) or a capture the chain contradicts. Time is a fake clock; the chains are real (py-evm
via eth-tester, LiteSVM), and every transaction the tests send is read back from them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tests.fakes import FakeClock
from tests.reconcile_world import (
    DUSD,
    EVM,
    SOLANA,
    EvmWallet,
    World,
    authorize,
    build_world,
    embedded_side,
    watched_org,
)

import treasurer
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.sql import reconcile_store
from treasurer.adapters.sql.reconcile_store import SqlReconcileStore
from treasurer.bootstrap.reconcile import open_reconciler
from treasurer.domain.authorization import AuthState
from treasurer.domain.org import Scope, ScopeKind
from treasurer.service.reconcile import Reconciler, WatchFailed
from treasurer.service.reconcile_ports import TransferStatus

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def local_evm() -> LocalEvm:
    """One embedded EVM for the module (each test uses fresh keys, so nothing leaks)."""
    return LocalEvm()


@pytest.fixture(params=[EVM, SOLANA])
def world(
    request: pytest.FixtureRequest, local_evm: LocalEvm, database_url: str, clock: FakeClock
) -> Iterator[World]:
    built = build_world(request.param, local_evm, database_url, clock, on_breach=("block",))
    yield built
    built.watcher.close()
    built.gov.close()


@pytest.fixture(params=[EVM, SOLANA])
def freezing(
    request: pytest.FixtureRequest, local_evm: LocalEvm, database_url: str, clock: FakeClock
) -> Iterator[World]:
    """The same, with ``settings.on_breach: [block, alert_finance, freeze_agent]``."""
    built = build_world(
        request.param,
        local_evm,
        database_url,
        clock,
        on_breach=("block", "alert_finance", "freeze_agent"),
    )
    yield built
    built.watcher.close()
    built.gov.close()


# -- the governance flow --------------------------------------------------------------------------
def test_authorize_send_capture_is_reconciled_as_matched(world: World) -> None:
    """authorize → the wallet signs and sends → capture with the hash: the watcher matches the
    transfer to that authorization, and spend counts it once."""
    shop = world.side.fresh_address()
    auth_id = authorize(world, "25.00", shop)
    tx_id = world.side.wallet.send_token(shop, 25 * DUSD)
    world.gov.capture(auth_id, tx_hash=tx_id)
    world.settle()
    (record,) = world.transfers()
    assert record.status is TransferStatus.MATCHED
    assert record.authorization_id == auth_id
    assert (record.transfer.tx_id, record.transfer.amount) == (tx_id, 25 * DUSD)
    assert record.transfer.recipient.lower() == shop.lower()
    assert world.captured_usd() == 25_000_000
    assert world.audits("spend.unauthorized") == []


def test_a_transfer_seen_before_its_capture_is_captured_by_the_watcher(world: World) -> None:
    """The wallet sent but has not captured yet: the watcher captures the open authorization
    with the transfer's hash and amount, and the integration's own capture then returns it."""
    shop = world.side.fresh_address()
    auth_id = authorize(world, "40.00", shop)
    tx_id = world.side.wallet.send_token(shop, 30 * DUSD)
    world.settle()
    (record,) = world.transfers()
    assert (record.status, record.authorization_id) == (TransferStatus.MATCHED, auth_id)
    auth = world.gov.store.get_authorization(auth_id)
    assert auth is not None and auth.state is AuthState.CAPTURED
    assert (auth.captured_amount, auth.tx_hash) == (30 * DUSD, tx_id)
    again = world.gov.capture(auth_id, "30", tx_hash=tx_id)
    assert again.state is AuthState.CAPTURED
    assert world.captured_usd() == 30_000_000


def test_native_coin_is_reconciled_too(world: World) -> None:
    """A native transfer authorized in the native asset matches like a token transfer."""
    shop = world.side.fresh_address()
    native = world.side.spec
    amount = 10 ** (native.native_decimals - 2)  # 0.01 coin, $1 at $100
    result = world.gov.authorize(
        agent="agent_a",
        wallet=f"ext-{world.side.network}",
        amount="0.01",
        asset=native.native_symbol,
        recipient=shop,
    )
    assert result.allowed, result.codes
    tx_id = world.side.wallet.send_native(shop, amount)
    world.gov.capture(result.id, tx_hash=tx_id)
    world.settle()
    (record,) = world.transfers()
    assert (record.status, record.transfer.token) == (TransferStatus.MATCHED, None)


# -- spends nobody authorized ---------------------------------------------------------------------
def test_an_unauthorized_transfer_is_counted_past_the_limit_and_audited(world: World) -> None:
    """$1,500 sent without asking, against a $1,000 daily budget: recorded as unauthorized,
    counted in spend and on the budget row (over its limit, the excess kept as overdraft),
    audited; every later spend of the day is denied. The agent is not frozen: this org's
    on_breach does not say freeze_agent."""
    thief = world.side.fresh_address()
    tx_id = world.side.wallet.send_token(thief, 1_500 * DUSD)
    world.settle()
    (record,) = world.transfers()
    assert record.status is TransferStatus.UNAUTHORIZED
    assert world.captured_usd() == 1_500_000_000
    auth = world.gov.store.get_authorization(record.authorization_id or "")
    assert auth is not None
    assert (auth.state, auth.tier, auth.tx_hash) == (AuthState.CAPTURED, "unauthorized", tx_id)
    (event,) = world.audits("spend.unauthorized")
    payload = event["payload"]
    assert (payload["tx_id"], payload["value_usd"], payload["amount"]) == (tx_id, "1500.00", "1500")
    assert payload["wallet"] == f"ext-{world.side.network}" and payload["agent"] == "agent_a"
    check = world.gov.check(
        agent="agent_a", wallet=f"ext-{world.side.network}", amount="1.00", asset="DUSD"
    )
    assert not check.allowed and "agent_daily_budget_exceeded" in {r.code for r in check.reasons}
    (agent_row,) = [c for c in check.claims if c.scope.kind is ScopeKind.AGENT]
    balance = world.gov.store.balances([agent_row.key])[agent_row.key]
    assert (balance.posted_micros, balance.pending_micros) == (1_500_000_000, 0)
    config = world.gov.cache.get()
    assert Scope(ScopeKind.AGENT, "agent_a") not in config.frozen


def test_an_unauthorized_transfer_freezes_the_agent_when_configured(freezing: World) -> None:
    """With on_breach freeze_agent, the first unauthorized transfer freezes the agent at once:
    its next authorization is denied ``agent_frozen``."""
    world = freezing
    world.side.wallet.send_token(world.side.fresh_address(), 5 * DUSD)
    world.settle()
    assert [r.status for r in world.transfers()] == [TransferStatus.UNAUTHORIZED]
    assert Scope(ScopeKind.AGENT, "agent_a") in world.gov.cache.get().frozen
    (freeze,) = world.audits("freeze.set")
    assert freeze["actor"] == "system:reconcile" and freeze["subject"] == "agent:agent_a"
    denied = world.gov.authorize(
        agent="agent_a",
        wallet=f"ext-{world.side.network}",
        amount="1.00",
        asset="DUSD",
        recipient=world.side.fresh_address(),
    )
    assert not denied.allowed and "agent_frozen" in denied.codes


def test_the_freeze_commits_with_the_unauthorized_record_or_neither_does(
    freezing: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The breach's record, its spend and the agent's freeze are one transaction: when the
    freeze cannot be written, nothing of the verdict is kept (the agent is not left free with
    its breach recorded), and the next pass records both."""
    world = freezing
    world.side.wallet.send_token(world.side.fresh_address(), 5 * DUSD)

    def broken(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("the freeze write failed")

    monkeypatch.setattr(reconcile_store, "set_freeze", broken)
    with pytest.raises(WatchFailed):
        world.watcher.run_once()
    assert world.transfers() == [] and world.captured_usd() == 0
    assert world.audits("spend.unauthorized") == []
    monkeypatch.undo()
    world.settle()
    assert [r.status for r in world.transfers()] == [TransferStatus.UNAUTHORIZED]
    assert world.captured_usd() == 5_000_000
    assert Scope(ScopeKind.AGENT, "agent_a") in world.gov.cache.get().frozen
    assert len(world.audits("freeze.set")) == 1


def test_a_second_identical_transfer_is_not_covered_by_the_first_authorization(
    world: World,
) -> None:
    """One authorization covers one transfer: the same transfer sent twice is one match and
    one unauthorized spend (after the capture grace period)."""
    shop = world.side.fresh_address()
    auth_id = authorize(world, "20.00", shop)
    first = world.side.wallet.send_token(shop, 20 * DUSD)
    world.gov.capture(auth_id, tx_hash=first)
    world.side.wallet.send_token(shop, 20 * DUSD)
    world.settle()
    statuses = sorted(r.status.value for r in world.transfers())
    assert statuses == ["matched", "unauthorized"]
    assert world.captured_usd() == 40_000_000


def test_a_transfer_waits_for_an_open_authorization_then_counts(world: World) -> None:
    """A transfer that matches no open authorization of its asset waits for a capture, then
    is unauthorized once the grace period is over."""
    authorize(world, "10.00", world.side.fresh_address())
    world.side.wallet.send_token(world.side.fresh_address(), 7 * DUSD)
    world.settle()
    assert [r.status for r in world.transfers()] == [TransferStatus.AWAITING_CAPTURE]
    world.gov.clock.advance(seconds=31)  # type: ignore[attr-defined]
    world.settle()
    assert [r.status for r in world.transfers()] == [TransferStatus.UNAUTHORIZED]
    assert world.captured_usd() == 7_000_000


# -- captures the chain contradicts ---------------------------------------------------------------
def test_a_capture_that_differs_from_the_chain_is_flagged(world: World) -> None:
    """Authorized $10 to the shop, sent $25 to someone else, captured with that hash: a
    mismatch (recipient and amount differ), the $15 beyond the capture counted as
    unauthorized, both audited."""
    shop, other = world.side.fresh_address(), world.side.fresh_address()
    auth_id = authorize(world, "10.00", shop)
    tx_id = world.side.wallet.send_token(other, 25 * DUSD)
    world.gov.capture(auth_id, tx_hash=tx_id)
    world.settle()
    (record,) = world.transfers()
    assert (record.status, record.authorization_id) == (TransferStatus.MISMATCH, auth_id)
    assert record.detail["differences"] == ["recipient", "amount"]
    (mismatch,) = world.audits("spend.mismatch")
    assert mismatch["subject"] == auth_id
    assert mismatch["payload"]["differences"] == ["recipient", "amount"]
    (extra,) = world.audits("spend.unauthorized")
    assert extra["payload"]["value_usd"] == "15.00"
    assert extra["payload"]["reason"] == "exceeds_authorization"
    assert world.captured_usd() == 25_000_000


# -- restarts and several nodes -------------------------------------------------------------------
class Crash(BaseException):
    """The process dying: not an Exception, so nothing on the way catches it."""


class CrashingStore(SqlReconcileStore):
    """Dies once, at the n-th call of ``method``, before that call does anything."""

    def __init__(self, db: Any, method: str, at: int) -> None:
        super().__init__(db)
        self.method, self.at, self.calls = method, at, 0

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name != super().__getattribute__("method"):
            return found

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == self.at:
                raise Crash(name)
            return found(*args, **kwargs)

        return wrapped


@pytest.mark.parametrize(("method", "at"), [("advance", 2), ("record_unauthorized", 2)])
def test_the_watcher_survives_a_restart_mid_stream(
    local_evm: LocalEvm, database_url: str, clock: FakeClock, method: str, at: int
) -> None:
    """Three unauthorized transfers and one matched, one block each. The watcher dies after
    recording a transfer but before moving its cursor, or between two transfers of a range;
    a fresh process on the same database finishes: each transfer recorded once, the spend
    counted once, nothing missed."""
    world = build_world(EVM, local_evm, database_url, clock)
    shop = world.side.fresh_address()
    sent = [world.side.wallet.send_token(world.side.fresh_address(), n * DUSD) for n in (1, 2)]
    auth_id = authorize(world, "4.00", shop)
    matched = world.side.wallet.send_token(shop, 4 * DUSD)
    world.gov.capture(auth_id, tx_hash=matched)
    sent.append(world.side.wallet.send_token(world.side.fresh_address(), 3 * DUSD))
    world.watcher.close()
    store = CrashingStore(world.gov.sql.db, method, at)
    dying = Reconciler(world.gov, store, {EVM: local_evm.chain}, max_blocks=2)
    with pytest.raises(Crash):
        for _ in range(10):
            dying.run_once()
    world.gov.close()
    clock.advance(seconds=31)  # the dead watcher's lease runs out
    restarted = treasurer.open(database_url, clock=clock)
    try:
        fresh = open_reconciler(restarted, {EVM: local_evm.chain}, max_blocks=2)
        for _ in range(10):
            fresh.run_once()
        records = SqlReconcileStore(restarted.sql.db).transfers(EVM, None, 100)
        assert sorted(r.transfer.tx_id for r in records) == sorted([*sent, matched])
        by_tx = {r.transfer.tx_id: r.status for r in records}
        assert by_tx[matched] is TransferStatus.MATCHED
        assert [by_tx[tx] for tx in sent] == [TransferStatus.UNAUTHORIZED] * 3
        unauthorized = [
            e for e in restarted.store.audit_events(1000) if e["kind"] == "spend.unauthorized"
        ]
        assert len(unauthorized) == 3
        total = sum(r.captured_usd_micros for r in restarted.spend(by="agent"))
        assert total == (1 + 2 + 3 + 4) * 1_000_000
    finally:
        restarted.close()


def test_one_node_watches_a_network_at_a_time(world: World, clock: FakeClock) -> None:
    """Two watchers on one database: the lease holder reads, the other skips; once the
    holder stops renewing, the other takes over and the first can no longer move the cursor."""
    store = SqlReconcileStore(world.gov.sql.db)
    network = world.side.network
    second = Reconciler(world.gov, store, {network: world.side.chain}, owner="node-b")
    assert second.run_once().skipped == [network]
    clock.advance(seconds=31)
    world.side.wallet.send_token(world.side.fresh_address(), 1 * DUSD)
    report = second.run_once()
    assert report.skipped == [] and report.counts == {"unauthorized": 1}
    assert world.watcher.run_once().skipped == [network]
    assert not store.advance(network, world.watcher.owner, 0, clock.now())
    assert len(world.transfers()) == 1


def test_a_transfer_pulled_under_an_authorized_allowance_is_not_unauthorized(
    local_evm: LocalEvm, database_url: str, clock: FakeClock
) -> None:
    """The wallet approved a spender (authorized and captured: the whole allowance counted);
    the spender's transferFrom out of the wallet is covered by that approval."""
    from treasurer.domain.calldata import encode_approve, encode_transfer_from  # noqa: PLC0415

    world = build_world(EVM, local_evm, database_url, clock)
    try:
        spender = EvmWallet(local_evm.w3, local_evm.token_address)
        local_evm.faucet(spender.address, native_wei=10**17)
        wallet = world.side.wallet
        approval = world.gov.authorize(
            agent="agent_a",
            wallet=f"ext-{EVM}",
            to=local_evm.token_address,
            data="0x" + encode_approve(spender.address.lower(), 50 * DUSD).hex(),
        )
        assert not approval.allowed and "token_approval_not_allowed" in approval.codes
        world.gov.apply(
            {
                **watched_org([world.side.spec], {EVM: wallet.address}),
                "policies": [
                    {
                        "id": "approvals",
                        "type": "token_approvals",
                        "scope": "agent:agent_a",
                        "params": {"allow": [{"spender": spender.address}]},
                    }
                ],
            }
        )
        approval = world.gov.authorize(
            agent="agent_a",
            wallet=f"ext-{EVM}",
            to=local_evm.token_address,
            data="0x" + encode_approve(spender.address.lower(), 50 * DUSD).hex(),
        )
        assert approval.allowed, approval.codes
        approve_tx = wallet.call(
            local_evm.token_address, encode_approve(spender.address.lower(), 50 * DUSD)
        )
        world.gov.capture(approval.id, tx_hash=approve_tx)
        shop = world.side.fresh_address()
        pull = encode_transfer_from(wallet.address.lower(), shop.lower(), 30 * DUSD)
        spender.call(local_evm.token_address, pull)
        world.side.wallet.send_token(shop, 1 * DUSD)  # and one the wallet sends unasked
        world.settle()
        statuses = sorted(r.status.value for r in world.transfers())
        assert statuses == ["allowance", "unauthorized"]
        assert world.captured_usd() == 51_000_000
    finally:
        world.watcher.close()
        world.gov.close()


def test_watching_starts_at_the_head_and_ignores_other_addresses(
    local_evm: LocalEvm, database_url: str, clock: FakeClock
) -> None:
    """Transfers before the first tick, and transfers of addresses that are not registered
    wallets, are not Treasurer's to reconcile."""
    side = embedded_side(EVM, local_evm)
    side.wallet.send_token(side.fresh_address(), 1 * DUSD)  # before watching
    gov = treasurer.open(database_url, clock=clock)
    try:
        gov.apply(watched_org([side.spec], {EVM: side.wallet.address}))
        watcher = open_reconciler(gov, {EVM: side.chain})
        watcher.run_once()
        stranger = EvmWallet(local_evm.w3, local_evm.token_address)
        local_evm.faucet(stranger.address, native_wei=10**17, token_units=5 * DUSD)
        stranger.send_token(side.fresh_address(), 1 * DUSD)
        for _ in range(5):
            watcher.run_once()
        assert SqlReconcileStore(gov.sql.db).transfers(EVM, None, 10) == []
    finally:
        gov.close()


def test_a_stopped_watcher_hands_its_network_over_at_once(world: World, clock: FakeClock) -> None:
    """A watcher that stopped (closed) releases its lease: another takes over without waiting
    for it to run out, and the first one, back, finds the network taken."""
    world.watcher.close()
    other = open_reconciler(world.gov, {world.side.network: world.side.chain}, owner="node-c")
    assert other.run_once().skipped == []
    clock.advance(seconds=1)
    assert world.watcher.run_once().skipped == [world.side.network]


def test_a_restarted_embedded_chain_is_watched_from_its_new_head(
    local_evm: LocalEvm, database_url: str, clock: FakeClock
) -> None:
    """The embedded EVM restarts from block 0 with every restart of the server, below the
    cursor the database remembers: the watcher reads the new chain from its head instead of
    waiting for the old block number."""
    world = build_world(EVM, local_evm, database_url, clock)
    try:
        for _ in range(3):  # move the remembered cursor well past a fresh chain's head
            world.side.wallet.send_native(world.side.fresh_address(), 1)
        world.settle()
        world.watcher.close()
        fresh = LocalEvm()
        wallet = EvmWallet(fresh.w3, fresh.token_address)
        fresh.faucet(wallet.address, native_wei=10**18, token_units=10 * DUSD)
        world.gov.apply(watched_org([world.side.spec], {EVM: wallet.address}))
        assert fresh.chain.head() < world.side.chain.head()
        watcher = open_reconciler(world.gov, {EVM: fresh.chain})
        watcher.run_once()
        tx_id = wallet.send_token(world.side.fresh_address(), 2 * DUSD)
        for _ in range(3):
            watcher.run_once()
        statuses = {r.transfer.tx_id: r.status for r in world.transfers()}
        assert statuses[tx_id] is TransferStatus.UNAUTHORIZED
        watcher.close()
    finally:
        world.gov.close()


class DeadNode:
    """A chain whose node does not answer."""

    network = "base"

    def head(self) -> int:
        raise ConnectionError("the base node did not answer")


def test_a_dead_node_does_not_blind_the_other_chains(world: World) -> None:
    """One network failing: the others are still watched in the same tick, and the failure
    is raised afterwards for the loop to log."""
    world.watcher.close()
    chains = {world.side.network: world.side.chain, "base": DeadNode()}
    watcher = Reconciler(world.gov, SqlReconcileStore(world.gov.sql.db), chains)  # type: ignore[dict-item]
    world.side.wallet.send_token(world.side.fresh_address(), 1 * DUSD)
    with pytest.raises(WatchFailed) as caught:
        watcher.run_once()
    assert set(caught.value.failures) == {"base"}
    assert caught.value.report.counts == {"unauthorized": 1}


def test_a_backtest_counts_unauthorized_spends_without_replaying_them(world: World) -> None:
    """An unauthorized spend was no decision, so a backtest has nothing to replay for it; but
    the money was spent, so the draft's budgets count it: a later $10 authorized under the
    current org is denied by a draft whose daily budget the theft already used up."""
    world.side.wallet.send_token(world.side.fresh_address(), 995 * DUSD)
    world.settle()
    world.gov.clock.advance(seconds=1)  # type: ignore[attr-defined]
    allowed = authorize(world, "4.00", world.side.fresh_address())
    since = world.gov.clock.now().replace(hour=0)  # type: ignore[attr-defined]
    until = since.replace(hour=23)
    draft = watched_org([world.side.spec], {world.side.network: world.side.wallet.address})
    draft["agents"][0]["budgets"] = [{"window": "day", "limit_usd": "998.00"}]
    report = world.gov.backtest(draft, since=since, until=until)
    assert report.replayed == 1
    assert [(c.authorization_id, c.change) for c in report.changes] == [
        (allowed, "allowed_to_denied")
    ]
