"""Decommissioning an agent (the kill switch) on the embedded EVM, against every store.

The agent has everything at once: an instant payment in flight (broadcast, receipt not read
yet), a delayed payment queued, a payment awaiting approval, an open governance-mode
authorization on its external wallet, and live sessions.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.contract.test_payment_queue import (
    APPROVAL_EXPIRY_S,
    DELAY_S,
    World,
    _recipient,
    _world,
)
from tests.contract.test_payments_pipeline import DUSD, SHOP
from tests.fakes import FakeClock

from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.domain.approvals import Voter, VoterKind
from treasurer.domain.authorization import AuthState
from treasurer.domain.errors import InvalidState, Unauthenticated
from treasurer.domain.org import AgentStatus, Scope, ScopeKind
from treasurer.domain.payment import PaymentState
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.auth_limiter import FailureLimiter
from treasurer.service.credentials import Authenticator
from treasurer.service.lifecycle import Lifecycle

#: The must-show says "within one second". The call is a few dozen short transactions, far
#: below that on either database; the bound is the requirement itself, generous on purpose so
#: a loaded CI machine does not flake.
DECOMMISSION_BOUND_S = 1.0


@pytest.fixture(scope="module")
def local() -> LocalEvm:
    return LocalEvm()


@pytest.fixture
def world(local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[World]:
    built = _world(local, database_url, clock, tmp_path, {"second_agent": True})
    yield built
    built.gov.close()


def _events(world: World, kind: str) -> list[dict[str, object]]:
    return [e for e in world.gov.store.audit_events(100_000) if e["kind"] == kind]


def test_decommission_stops_everything_at_once(world: World, clock: FakeClock) -> None:
    w = world
    store = SqlCredentialStore(w.gov.sql.db)
    admin = CredentialAdmin(store, clock)
    tokens = [admin.create_session("agent_a", f"s{i}", None, "test")[1] for i in range(2)]
    authenticator = Authenticator(store, clock, FailureLimiter(clock))
    assert authenticator.authenticate(f"Bearer {tokens[0]}", "test").agent_id == "agent_a"

    in_flight_to = _recipient()
    instant = w.pay.pay("agent_a", "hot", in_flight_to, "25.00", "DUSD", idempotency_key="i")
    assert instant.state is PaymentState.BROADCAST
    delayed = w.submit("200.00", "d")
    awaiting = w.submit("600.00", "a")
    external = w.gov.authorize(
        agent="agent_a", wallet="ext", amount="50.00", asset="DUSD", recipient=SHOP
    )
    assert external.state is AuthState.PENDING
    assert w.reserved_usd_micros() == 875_000_000

    lifecycle = Lifecycle(w.gov, admin, w.pay.payments)
    started = time.perf_counter()
    report = lifecycle.decommission("agent_a", actor="key:root")
    elapsed = time.perf_counter() - started
    assert elapsed < DECOMMISSION_BOUND_S, elapsed

    assert (report.status, report.status_changed) == ("decommissioned", True)
    assert report.sessions_revoked == 2
    assert report.wallets_frozen == 2
    assert (report.payments_cancelled, report.authorizations_voided) == (2, 1)
    assert report.payments_in_flight == 1
    # Every session fails.
    for token in tokens:
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(f"Bearer {token}", "test")
    # Every wallet frozen, on every chain and vendor; the agent decommissioned.
    config = w.gov.cache.get()
    assert config.agents["agent_a"].status is AgentStatus.DECOMMISSIONED
    owned = {wallet.id for wallet in config.wallets.values() if wallet.agent_id == "agent_a"}
    assert owned == {"hot", "ext"}
    assert all(Scope(ScopeKind.WALLET, wallet) in config.frozen for wallet in owned)
    # Queued and pending ones cancelled, reservations released; only the in-flight one holds.
    for payment in (delayed, awaiting):
        assert w.pay.get(payment.id).state is PaymentState.CANCELLED
        assert w.auth_state(payment) is AuthState.VOIDED
    assert w.reserved_usd_micros() == 25_000_000
    # The open authorization can no longer be captured.
    with pytest.raises(InvalidState) as exc:
        w.gov.capture(external.id)
    assert exc.value.code == "authorization_not_pending"
    # Nothing that waited can come back: no approval, no executed delay.
    with pytest.raises(InvalidState) as closed:
        w.approvals.vote_as(w.subject(awaiting), Voter(VoterKind.AGENT, "agent_b"), "approve")
    assert closed.value.code == "approval_closed"
    clock.advance(seconds=max(DELAY_S, APPROVAL_EXPIRY_S) + 1)
    assert w.tick().claimed == 0
    # What was already on the chain confirms as usual and is counted.
    assert w.pay.confirm_pending() == 1
    assert w.pay.get(instant.id).state is PaymentState.CONFIRMED
    assert w.tokens(in_flight_to) == 25 * DUSD
    assert w.reserved_usd_micros() == 0
    # A new spend is denied.
    again = w.pay.pay("agent_a", "hot", _recipient(), "5.00", "DUSD", idempotency_key="n")
    assert again.state is PaymentState.DENIED
    assert "agent_decommissioned" in again.codes
    # All audited.
    assert len(_events(w, "freeze.set")) == 2
    assert len(_events(w, "payment.cancelled")) == 2
    assert len(_events(w, "session.revoked_all")) == 1
    [summary] = _events(w, "agent.decommission")
    assert summary["payload"] == {
        "agent": "agent_a",
        "status_changed": True,
        "sessions_revoked": 2,
        "wallets_frozen": 2,
        "payments_cancelled": 2,
        "authorizations_voided": 1,
        "payments_in_flight": 1,
    }
    voided = {e["subject"] for e in _events(w, "authorization.voided")}
    assert {external.id, delayed.authorization_id, awaiting.authorization_id} <= voided


def test_decommission_is_idempotent(world: World, clock: FakeClock) -> None:
    w = world
    queued = w.submit("200.00", "d")
    lifecycle = Lifecycle(w.gov, CredentialAdmin(SqlCredentialStore(w.gov.sql.db), clock))
    first = lifecycle.decommission("agent_a", actor="key:root")
    assert first.wallets_frozen == 2
    # Without a payment store (a governance-only node) the queued payment's reservation is
    # voided; the queue executor then fails the payment.
    assert first.authorizations_voided == 1 and first.payments_cancelled == 0
    second = lifecycle.decommission("agent_a", actor="key:root")
    assert second.status_changed is False
    counts = (
        second.sessions_revoked,
        second.wallets_frozen,
        second.payments_cancelled,
        second.authorizations_voided,
        second.payments_in_flight,
    )
    assert counts == (0, 0, 0, 0, 0)
    assert w.reserved_usd_micros() == 0
    assert w.tick().failed == 1
    failed = w.pay.get(queued.id)
    assert failed.state is PaymentState.FAILED
    assert failed.error is not None and failed.error.startswith("authorization_voided")
