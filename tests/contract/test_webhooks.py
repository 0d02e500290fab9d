"""Webhook notifications on every store (SQLite file and PostgreSQL schema).

Real traffic (denials over budget, freezes, agent status, custodial payments on the embedded
EVM) is turned into deliveries by the notifier and POSTed to a local receiver on 127.0.0.1,
which checks every signature with the endpoint's secret. Time is a fake clock: backoff and
leases are crossed by moving it, never by sleeping. The notifier is "killed" at each point
between an event and its delivery (never run, raising inside the dispatch transaction,
raising inside the sender before or after the POST) and a fresh one on the same database
must deliver every event, none twice (except the documented at-least-once case: a POST that
landed but was not recorded). Racing notifiers on one database never send a delivery twice.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org
from tests.webhook_receiver import Receiver, running_receiver, until

import treasurer
from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.webhook_store import SqlWebhookStore
from treasurer.adapters.webhook_sender import HttpxWebhookSender
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.errors import InvalidState
from treasurer.service.audit import AuditTrail
from treasurer.service.notify import Notifier
from treasurer.service.notify_admin import Webhooks
from treasurer.service.notify_events import SourceEvent
from treasurer.service.notify_format import Backoff
from treasurer.service.notify_ports import (
    Delivery,
    DeliveryState,
    Endpoint,
    NewDelivery,
    SendResult,
    WebhookSender,
)

SEND_TIMEOUT_S = 2.0
#: 5 s doubling; with the jitter pinned to 0 each wait is half of that: 2.5 s, 5 s, 10 s, ...
BACKOFF = Backoff(base_s=5.0, cap_s=3600.0, max_attempts=4)


class Crash(BaseException):
    """Stands for the process dying: not an ``Exception``, so nothing on the way catches it."""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


@pytest.fixture
def gov(database_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    governance = treasurer.open(database_url, clock=clock)
    governance.apply(cross_wallet_org())
    yield governance
    governance.close()


class Notifiers:
    """Builds notifiers on a database and closes what it built."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.opened: list[EmbeddedGovernance] = []
        self.built: list[Notifier] = []

    def fresh_governance(self, url: str) -> EmbeddedGovernance:
        """Another connection to the same database, as a restarted process would open."""
        governance = treasurer.open(url, clock=self.clock)
        self.opened.append(governance)
        return governance

    def build(
        self,
        gov: EmbeddedGovernance,
        *,
        sender: WebhookSender | None = None,
        backoff: Backoff = BACKOFF,
        claim_batch: int = 8,
        cls: type[Notifier] = Notifier,
    ) -> Notifier:
        db = gov.sql.db
        notifier = cls(
            SqlWebhookStore(db),
            sender or HttpxWebhookSender(timeout_s=SEND_TIMEOUT_S),
            self.clock,
            seal=AuditTrail(SqlAuditLog(db), self.clock).seal,
            backoff=backoff,
            claim_batch=claim_batch,
            rand=lambda: 0.0,
        )
        self.built.append(notifier)
        return notifier

    def close(self) -> None:
        for notifier in self.built:
            notifier.close()
        for governance in self.opened:
            governance.close()


@pytest.fixture
def notifiers(clock: FakeClock) -> Iterator[Notifiers]:
    made = Notifiers(clock)
    yield made
    made.close()


def webhooks(gov: EmbeddedGovernance) -> Webhooks:
    return Webhooks(SqlWebhookStore(gov.sql.db), gov.clock)


def hook(gov: EmbeddedGovernance, receiver: Receiver, path: str, **options: Any) -> Endpoint:
    """Register ``receiver``'s ``path`` as an endpoint and teach the receiver its secret."""
    endpoint = webhooks(gov).create(receiver.url(path), **options)
    receiver.secrets[path] = endpoint.secret
    return endpoint


def seal_all(gov: EmbeddedGovernance, timeout_s: float = 30.0) -> None:
    trail = AuditTrail(SqlAuditLog(gov.sql.db), gov.clock)
    until(lambda: trail.log.unsealed() == 0, trail.seal, timeout_s)


def deliveries(gov: EmbeddedGovernance, endpoint: Endpoint) -> list[Delivery]:
    return webhooks(gov).deliveries(endpoint.id, limit=500)


def only(gov: EmbeddedGovernance, endpoint: Endpoint) -> Delivery:
    found = deliveries(gov, endpoint)
    assert len(found) == 1, found
    return found[0]


def breach(gov: EmbeddedGovernance) -> str:
    """$5,000 against agent_a's $1,000 daily budget: denied, a budget breach."""
    result = gov.authorize(agent="agent_a", wallet="w1", amount="5000", asset="USDC")
    assert not result.allowed
    return result.id


def assert_each_once(received: Sequence[Any], expected: int) -> None:
    """Every delivery arrived once, signed; every (endpoint, event) once."""
    assert len(received) == expected
    assert all(r.signed for r in received)
    assert Counter(r.delivery for r in received).most_common(1)[0][1] == 1
    assert len({(r.path, r.json.get("id", r.body)) for r in received}) == expected


# -- delivery and signature ------------------------------------------------------------------------
def test_breach_freeze_and_decommission_arrive_signed(
    gov: EmbeddedGovernance, receiver: Receiver, notifiers: Notifiers
) -> None:
    """A denial over budget, an agent freeze, a wallet freeze and a decommission reach the
    JSON endpoint signed, with the headers naming each; an allowed spend tells nobody; the
    Slack endpoint, filtered to breaches, gets one readable line."""
    everything = hook(gov, receiver, "/all")
    slack = hook(gov, receiver, "/slack/T0/B0/xyz", format="slack", events=["budget.breach"])
    gov.authorize(agent="agent_a", wallet="w1", amount="10", asset="USDC", recipient=SHOP)
    denied = breach(gov)
    gov.freeze("agent:agent_a", reason="card skimming suspected")
    gov.freeze("wallet:w2")
    gov.set_agent_status("agent_b", "decommissioned")
    notifier = notifiers.build(gov)
    until(lambda: len(receiver.received) == 5, notifier.run_once)

    posts = receiver.on("/all")
    assert_each_once(posts, 4)
    assert [p.event for p in posts] == [p.json["type"] for p in posts]
    by_type = {p.json["type"]: p.json for p in posts}
    assert set(by_type) == {"budget.breach", "agent.frozen", "scope.frozen", "agent.decommissioned"}
    data = by_type["budget.breach"]["data"]
    assert data["authorization"] == denied and data["payment"] is None
    assert (data["agent"], data["department"], data["wallet"]) == ("agent_a", "ops", "w1")
    assert (data["amount"], data["asset"], data["value_usd"]) == ("5000", "base:USDC", "5000.00")
    assert data["breached"] == ["agent_daily_budget_exceeded"]
    assert by_type["agent.frozen"]["data"]["reason"] == "card skimming suspected"
    assert by_type["scope.frozen"]["data"]["scope"] == "wallet:w2"
    assert by_type["agent.decommissioned"]["data"]["agent"] == "agent_b"
    assert all(p.json["id"].startswith("evt_") for p in posts)
    assert {p.headers["Content-Type"] for p in posts} == {"application/json"}

    (line,) = receiver.on("/slack/T0/B0/xyz")
    assert line.signed and line.event == "budget.breach"
    assert set(line.json) == {"text"}
    assert line.json["text"].startswith("Budget breach: denied 5000 base:USDC ($5,000.00)")
    assert denied in line.json["text"] and "agent_a" in line.json["text"]

    done = deliveries(gov, everything) + deliveries(gov, slack)
    assert {d.state for d in done} == {DeliveryState.DELIVERED}
    assert {d.attempts for d in done} == {1}
    assert {d.last_status for d in done} == {200}


def test_an_endpoint_hears_only_what_follows_its_creation_and_what_it_asked_for(
    gov: EmbeddedGovernance, receiver: Receiver, notifiers: Notifiers, clock: FakeClock
) -> None:
    """History is not replayed to a new endpoint; a filter keeps other types away."""
    breach(gov)
    clock.advance(seconds=1)
    frozen_only = hook(gov, receiver, "/frozen", events=["agent.frozen"])
    breach(gov)
    gov.freeze("agent:agent_a")
    notifier = notifiers.build(gov)
    until(lambda: len(receiver.received) == 1, notifier.run_once)
    notifier.run_once()
    assert [r.event for r in receiver.received] == ["agent.frozen"]
    assert [d.event for d in deliveries(gov, frozen_only)] == ["agent.frozen"]


# -- retries, backoff and the dead letter ----------------------------------------------------------
def test_receiver_down_retries_with_backoff_then_delivers_once(
    gov: EmbeddedGovernance, receiver: Receiver, notifiers: Notifiers, clock: FakeClock
) -> None:
    """Refused connections are attempts, spaced 2.5 s then 5 s (fake clock); once the
    receiver is back and the next attempt is due, the event arrives exactly once."""
    endpoint = hook(gov, receiver, "/hook")
    receiver.stop()
    gov.freeze("agent:agent_a")
    notifier = notifiers.build(gov)
    until(
        lambda: deliveries(gov, endpoint) != [] and only(gov, endpoint).attempts == 1,
        notifier.run_once,
    )
    first = only(gov, endpoint)
    assert first.state is DeliveryState.PENDING
    assert first.last_error is not None and first.last_error.startswith("unreachable")
    assert first.last_status is None
    assert first.next_attempt_at == clock.now() + timedelta(seconds=2.5)

    notifier.run_once()  # not due yet: no attempt
    assert only(gov, endpoint).attempts == 1
    clock.advance(seconds=2.5)
    notifier.run_once()
    second = only(gov, endpoint)
    assert (second.state, second.attempts) == (DeliveryState.PENDING, 2)
    assert second.next_attempt_at == clock.now() + timedelta(seconds=5)

    receiver.start()  # back, on the same port
    clock.advance(seconds=4.9)
    notifier.run_once()
    assert receiver.received == [] and only(gov, endpoint).attempts == 2
    clock.advance(seconds=0.1)
    notifier.run_once()
    done = only(gov, endpoint)
    assert (done.state, done.attempts, done.last_status) == (DeliveryState.DELIVERED, 3, 200)
    assert done.delivered_at == clock.now()
    for _ in range(3):
        clock.advance(hours=2)
        notifier.run_once()
    assert_each_once(receiver.received, 1)


def test_after_the_last_attempt_a_delivery_is_dead_until_an_admin_retries_it(
    gov: EmbeddedGovernance, receiver: Receiver, notifiers: Notifiers, clock: FakeClock
) -> None:
    """A receiver answering 500: attempts at 0, 2.5 s, 7.5 s and 17.5 s, then dead; nothing
    more is sent; a retry makes it pending, due now, and it is delivered."""
    endpoint = hook(gov, receiver, "/hook")
    receiver.status = 500
    gov.set_agent_status("agent_a", "frozen")
    notifier = notifiers.build(gov)
    until(lambda: len(receiver.received) == 1, notifier.run_once)
    for wait in (2.5, 5.0, 10.0):
        clock.advance(seconds=wait)
        notifier.run_once()
    dead = only(gov, endpoint)
    assert (dead.state, dead.attempts, dead.last_status) == (DeliveryState.DEAD, 4, 500)
    assert dead.last_error is not None and dead.last_error.startswith("HTTP 500")
    clock.advance(days=1)
    notifier.run_once()
    assert len(receiver.received) == 4
    assert all(r.signed for r in receiver.received)
    hooks = webhooks(gov)
    assert [d.id for d in hooks.deliveries(endpoint.id, state=DeliveryState.DEAD)] == [dead.id]
    assert hooks.deliveries(endpoint.id, state=DeliveryState.PENDING) == []

    receiver.status = 200
    retried = hooks.retry(dead.id, actor="admin")
    assert (retried.state, retried.attempts) == (DeliveryState.PENDING, 0)
    assert retried.next_attempt_at == clock.now()
    with pytest.raises(InvalidState) as refused:
        hooks.retry(dead.id)
    assert refused.value.code == "delivery_not_dead"
    notifier.run_once()
    done = only(gov, endpoint)
    assert (done.state, done.attempts) == (DeliveryState.DELIVERED, 1)
    assert len(receiver.received) == 5
    assert len({r.delivery for r in receiver.received}) == 1  # one delivery, five tries
    assert receiver.received[-1].json["type"] == "agent.frozen"


def test_removing_an_endpoint_kills_its_pending_deliveries(
    gov: EmbeddedGovernance, receiver: Receiver, notifiers: Notifiers, clock: FakeClock
) -> None:
    """Removal is idempotent; pending deliveries turn dead, nothing more is sent, a dead
    delivery of a removed endpoint cannot be retried, and new events make no deliveries."""
    endpoint = hook(gov, receiver, "/hook")
    receiver.status = 503
    gov.freeze("agent:agent_a")
    notifier = notifiers.build(gov)
    until(lambda: len(receiver.received) == 1, notifier.run_once)
    hooks = webhooks(gov)
    removed = hooks.remove(endpoint.id)
    assert not removed.active and removed.disabled_at == clock.now()
    assert hooks.remove(endpoint.id).disabled_at == removed.disabled_at
    dead = only(gov, endpoint)
    assert dead.state is DeliveryState.DEAD and dead.last_error is not None
    assert dead.last_error.startswith("endpoint_removed")
    with pytest.raises(InvalidState) as refused:
        hooks.retry(dead.id)
    assert refused.value.code == "webhook_removed"
    gov.freeze("wallet:w1")
    clock.advance(hours=1)
    seal_all(gov)
    notifier.run_once()
    assert len(receiver.received) == 1
    assert len(deliveries(gov, endpoint)) == 1
    assert hooks.endpoints(10) == []
    assert [e.id for e in hooks.endpoints(10, include_removed=True)] == [endpoint.id]


# -- crashes between the event and its delivery ----------------------------------------------------
def _traffic(gov: EmbeddedGovernance) -> None:
    """Three events that notify: a breach, an agent freeze, a decommission."""
    breach(gov)
    gov.freeze("agent:agent_a")
    gov.set_agent_status("agent_b", "decommissioned")


def test_events_of_a_notifier_that_never_ran_are_all_delivered_by_the_next(
    gov: EmbeddedGovernance,
    receiver: Receiver,
    notifiers: Notifiers,
    database_url: str,
) -> None:
    """Killed right after the events committed: the audit log holds them, so a new
    process on the same database delivers every one, once."""
    hook(gov, receiver, "/hook")
    _traffic(gov)
    gov.close()  # the "process" is gone; nothing was sealed, dispatched or sent
    restarted = notifiers.fresh_governance(database_url)
    notifier = notifiers.build(restarted)
    until(lambda: len(receiver.received) == 3, notifier.run_once)
    for _ in range(3):
        notifier.run_once()
    assert_each_once(receiver.received, 3)
    assert {r.event for r in receiver.received} == {
        "budget.breach",
        "agent.frozen",
        "agent.decommissioned",
    }


class CrashInDispatch(Notifier):
    """Dies inside the dispatch transaction, after planning its deliveries."""

    def plan(
        self, events: Sequence[SourceEvent], endpoints: Sequence[Endpoint]
    ) -> list[NewDelivery]:
        super().plan(events, endpoints)
        raise Crash


def test_a_crash_inside_dispatch_rolls_it_back_and_the_next_notifier_redoes_it(
    gov: EmbeddedGovernance,
    receiver: Receiver,
    notifiers: Notifiers,
    database_url: str,
) -> None:
    """The deliveries and the cursor move commit together: a crash before the commit leaves
    neither, and a fresh notifier creates every delivery, once."""
    endpoint = hook(gov, receiver, "/hook")
    _traffic(gov)
    seal_all(gov)
    crashing = notifiers.build(gov, cls=CrashInDispatch)
    with pytest.raises(Crash):
        crashing.run_once()
    assert deliveries(gov, endpoint) == []
    assert SqlWebhookStore(gov.sql.db).cursor() == 0
    notifier = notifiers.build(notifiers.fresh_governance(database_url))
    until(lambda: len(receiver.received) == 3, notifier.run_once)
    notifier.run_once()
    assert_each_once(receiver.received, 3)
    assert len(deliveries(gov, endpoint)) == 3


class CrashingSender:
    """Sends through ``inner``, but dies on call number ``crash_on`` (before or after POSTing)."""

    def __init__(self, inner: WebhookSender, crash_on: int, *, after_send: bool) -> None:
        self.inner = inner
        self.crash_on = crash_on
        self.after_send = after_send
        self.calls = 0

    def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> SendResult:
        self.calls += 1
        if self.calls == self.crash_on and not self.after_send:
            raise Crash
        result = self.inner.send(url, body, headers)
        if self.calls == self.crash_on:
            raise Crash
        return result

    def close(self) -> None:
        self.inner.close()


def test_a_crash_mid_delivery_leaves_leases_that_run_out_and_nothing_is_lost(
    gov: EmbeddedGovernance,
    receiver: Receiver,
    notifiers: Notifiers,
    database_url: str,
    clock: FakeClock,
) -> None:
    """The notifier dies before its second POST: the first is recorded, the others stay
    leased; a fresh notifier sends them once the lease has run out, each event once."""
    endpoint = hook(gov, receiver, "/hook")
    _traffic(gov)
    seal_all(gov)
    sender = CrashingSender(HttpxWebhookSender(timeout_s=SEND_TIMEOUT_S), 2, after_send=False)
    crashing = notifiers.build(gov, sender=sender)
    with pytest.raises(Crash):
        crashing.run_once()
    assert len(receiver.received) == 1
    states = Counter(d.state for d in deliveries(gov, endpoint))
    assert states == {DeliveryState.DELIVERED: 1, DeliveryState.PENDING: 2}

    notifier = notifiers.build(notifiers.fresh_governance(database_url))
    notifier.run_once()
    assert len(receiver.received) == 1  # still leased by the dead worker
    clock.advance(seconds=61)
    notifier.run_once()
    assert_each_once(receiver.received, 3)
    assert {d.state for d in deliveries(gov, endpoint)} == {DeliveryState.DELIVERED}


def test_a_post_that_landed_but_was_not_recorded_is_sent_again_with_the_same_ids(
    gov: EmbeddedGovernance,
    receiver: Receiver,
    notifiers: Notifiers,
    database_url: str,
    clock: FakeClock,
) -> None:
    """At least once: dying between the receiver's 200 and the record means the delivery is
    sent again after its lease, byte for byte, with the same delivery and event ids, so a
    receiver that dedupes on either sees it once."""
    endpoint = hook(gov, receiver, "/hook")
    gov.freeze("agent:agent_a")
    seal_all(gov)
    sender = CrashingSender(HttpxWebhookSender(timeout_s=SEND_TIMEOUT_S), 1, after_send=True)
    with pytest.raises(Crash):
        notifiers.build(gov, sender=sender).run_once()
    notifier = notifiers.build(notifiers.fresh_governance(database_url))
    clock.advance(seconds=61)
    notifier.run_once()
    first, again = receiver.received
    assert first.delivery == again.delivery and first.body == again.body
    assert first.signed and again.signed
    done = only(gov, endpoint)
    assert (done.state, done.attempts) == (DeliveryState.DELIVERED, 1)


# -- racing notifiers ------------------------------------------------------------------------------
def test_racing_notifiers_never_send_one_delivery_twice(
    gov: EmbeddedGovernance,
    receiver: Receiver,
    notifiers: Notifiers,
    database_url: str,
) -> None:
    """Four notifiers, each on its own connection pool (as four nodes), dispatch and deliver
    the same 24 events to two endpoints at once: 48 POSTs, each delivery once."""
    endpoints = [hook(gov, receiver, "/one"), hook(gov, receiver, "/two")]
    for _ in range(12):
        breach(gov)
        gov.freeze("wallet:w1")
        gov.unfreeze("wallet:w1")
    receiver.delay_s = 0.005
    workers = [
        notifiers.build(notifiers.fresh_governance(database_url), claim_batch=2) for _ in range(4)
    ]
    errors: list[BaseException] = []
    deadline = time.monotonic() + 60

    def work(notifier: Notifier) -> None:
        try:
            while len(receiver.received) < 48 and time.monotonic() < deadline:
                notifier.run_once()
            for _ in range(3):
                notifier.run_once()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert errors == []
    assert_each_once(receiver.received, 48)
    for endpoint in endpoints:
        made = deliveries(gov, endpoint)
        assert len(made) == 24
        assert {(d.state, d.attempts) for d in made} == {(DeliveryState.DELIVERED, 1)}


# -- custodial payments ----------------------------------------------------------------------------
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def local_evm() -> Any:
    """One embedded EVM with the demo token for the module (deploying it takes a moment)."""
    from treasurer.adapters.chains.evm_local import LocalEvm  # noqa: PLC0415

    return LocalEvm()


def custodial_org(address: str, token: str) -> dict[str, Any]:
    """``agent_a`` with a custodial wallet ``hot`` on evm-local: instant to $100, notify to
    $1,000, delay to $5,000 (an hour), approval above; $10,000 a day."""
    from treasurer.adapters.chains.evm_local import (  # noqa: PLC0415
        DEMO_ASSET_DECIMALS,
        DEMO_ASSET_SYMBOL,
    )

    return {
        "version": 1,
        "org": {"id": "acme", "name": "Acme"},
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
                "budgets": [{"window": "day", "limit_usd": "10000.00"}],
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
                    }
                ],
            }
        ],
    }


def test_custodial_payments_notify_once_from_the_audit_log(
    local_evm: Any,
    database_url: str,
    clock: FakeClock,
    tmp_path: Path,
    receiver: Receiver,
    notifiers: Notifiers,
) -> None:
    """On the embedded EVM: a notify-tier payment is announced once (``payment.notify``, with
    its tx id) although the old ``notifications`` table still records it; a delay-tier one is
    ``payment.delayed`` naming the payment; a fee above the caller's cap is ``payment.failed``."""
    from eth_account import Account  # noqa: PLC0415

    from treasurer.adapters.vault import FileVault  # noqa: PLC0415
    from treasurer.bootstrap import open_payments  # noqa: PLC0415
    from treasurer.service.chain_ports import ChainFamily  # noqa: PLC0415

    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    address = vault.create_key(ChainFamily.EVM)
    local_evm.faucet(address, native_wei=10**18, token_units=10_000 * 10**6)
    gov = notifiers.fresh_governance(database_url)
    gov.apply(custodial_org(address, local_evm.token_address))
    gov.set_price("evm-local:ETH", "3000.00")
    pay = open_payments(gov, {"evm-local": local_evm.chain}, vault)
    shop = str(Account.create().address)
    endpoint = hook(gov, receiver, "/pay")

    notified = pay.pay("agent_a", "hot", shop, "250.00", "DUSD", idempotency_key="n")
    delayed = pay.pay("agent_a", "hot", shop, "2000.00", "DUSD", idempotency_key="d")
    capped = pay.pay(
        "agent_a", "hot", shop, "30.00", "DUSD", idempotency_key="f", max_fee_usd="0.000001"
    )
    assert notified.payment.tier == "notify" and delayed.payment.tier == "delay"
    assert capped.payment.error is not None and capped.payment.error.startswith("fee_above_cap")
    pay.confirm_pending()
    notifier = notifiers.build(gov)
    until(lambda: len(receiver.received) == 3, notifier.run_once)
    notifier.run_once()
    assert_each_once(receiver.received, 3)
    by_type = {r.event: r.json["data"] for r in receiver.received}
    assert set(by_type) == {"payment.notify", "payment.delayed", "payment.failed"}
    notice = by_type["payment.notify"]
    assert notice["payment"] == notified.id
    assert notice["tx_id"] == notified.payment.tx_id
    assert (notice["amount"], notice["value_usd"], notice["kind"]) == ("250", "250.00", "transfer")
    assert (notice["agent"], notice["wallet"], notice["department"]) == ("agent_a", "hot", "ops")
    assert by_type["payment.delayed"]["payment"] == delayed.id
    assert by_type["payment.delayed"]["authorization"] == delayed.payment.authorization_id
    assert by_type["payment.delayed"]["delay_s"] == 3600
    assert by_type["payment.failed"]["payment"] == capped.id
    assert str(by_type["payment.failed"]["error"]).startswith("fee_above_cap")
    assert [r["kind"] for r in pay.payments.notifications(10)] == ["payment.notify"]
    assert len(deliveries(gov, endpoint)) == 3
    vault.close()


# -- the sender ------------------------------------------------------------------------------------
def test_the_sender_times_out_and_follows_no_redirect(receiver: Receiver) -> None:
    """A receiver slower than the timeout is a failed attempt (bounded: 0.2 s), and a 302 is
    a failure too: a signed body goes to the registered URL only."""
    sender = HttpxWebhookSender(timeout_s=0.2)
    try:
        receiver.delay_s = 0.5
        slow = sender.send(receiver.url("/slow"), b"{}", {})
        assert slow.status is None and slow.error is not None and slow.error.startswith("timeout")
        receiver.delay_s = 0.0
        receiver.status = 302
        moved = sender.send(receiver.url("/moved"), b"{}", {})
        assert (moved.status, moved.ok) == (302, False)
        refused = sender.send("http://127.0.0.1:1/nothing", b"{}", {})
        assert refused.status is None and refused.error is not None
        assert refused.error.startswith("unreachable")
    finally:
        sender.close()
