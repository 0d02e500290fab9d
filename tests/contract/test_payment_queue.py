"""The delay and approval queue of custodial payments, on the embedded EVM, against every store.

Payments in the delay or approval tier are queued with their reservation; the executor
(``PaymentService.execute_ready``, run by ``treasurer serve`` after ``release_due``) claims each
due one exactly once, decides again on the facts of now, and sends it through the pipeline.
"Restart the server" here is what a restart is to the service: every object is dropped and
fresh ones are built over the same database (and the same chain, which outlives a Treasurer
process in real life).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from tests.contract.test_payments_pipeline import (
    DUSD,
    ETH,
    PASSPHRASE,
    _allowance,
    _approve,
    _call,
    _policy,
    custodial_org,
)
from tests.fakes import FakeClock

import treasurer
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.sql.approval_store import SqlApprovalStore
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.sql.payment_queue import SqlPaymentQueue
from treasurer.adapters.vault import FileVault
from treasurer.bootstrap import EmbeddedGovernance, open_payments
from treasurer.domain.approvals import Verdict, Voter, VoterKind
from treasurer.domain.authorization import AuthState
from treasurer.domain.calldata import encode_transfer
from treasurer.domain.credentials import ApproverKind
from treasurer.domain.errors import Conflict, Forbidden, InvalidState
from treasurer.domain.payment import Payment, PaymentState
from treasurer.service.approval_subjects import payment_subject
from treasurer.service.approvals import Approvals, Subject
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.chain_ports import ChainFamily
from treasurer.service.payments import PaymentService
from treasurer.service.payments_queue import CLAIM_LEASE_S

DELAY_S = 3600
APPROVAL_EXPIRY_S = 7200


@pytest.fixture(scope="module")
def local() -> LocalEvm:
    return LocalEvm()


def queue_org(address: str, token: str, approval: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """``agent_a`` (custodial wallet ``hot``): instant to $100, delay to $5,000 (an hour),
    approval above $500 as ``approval`` says; ``agent_b`` is a second agent of the org."""
    org = custodial_org(address, token, agent_daily=kwargs.pop("agent_daily", "10000.00"), **kwargs)
    agent = org["agents"][0]
    agent["tiers"] = {
        "instant_max_usd": "100.00",
        "delay_max_usd": "5000.00",
        "delay_seconds": DELAY_S,
    }
    agent["approval"] = {"threshold_usd": "500.00", "expiry_seconds": APPROVAL_EXPIRY_S}
    agent["approval"].update(approval)
    org["agents"].append({"id": "agent_b", "name": "Agent B", "department": "ops"})
    return org


@dataclass
class World:
    local: LocalEvm
    clock: FakeClock
    database_url: str
    vault: FileVault
    address: str
    org: dict[str, Any]
    keys: dict[str, Ed25519PrivateKey] = field(default_factory=dict)
    # Built by open() (and rebuilt by restart()), as a starting server builds them.
    gov: EmbeddedGovernance = field(init=False)
    pay: PaymentService = field(init=False)
    approvals: Approvals = field(init=False)

    def open(self) -> None:
        """(Re)build every service object over the database, as a starting server does."""
        self.gov = treasurer.open(self.database_url, clock=self.clock)
        self.pay = open_payments(self.gov, {"evm-local": self.local.chain}, self.vault)
        credentials = SqlCredentialStore(self.gov.sql.db)
        self.approvals = Approvals(self.gov, SqlApprovalStore(self.gov.sql.db), credentials)

    def restart(self) -> None:
        self.gov.close()
        self.open()

    def submit(self, amount: str, key: str, to: str | None = None) -> Payment:
        result = self.pay.pay(
            "agent_a", "hot", to or _recipient(), amount, "DUSD", idempotency_key=key
        )
        assert result.state is PaymentState.QUEUED, (result.state, result.codes)
        return result.payment

    def subject(self, payment: Payment) -> Subject:
        auth = self.gov.store.get_authorization(payment.authorization_id or "")
        assert auth is not None
        return payment_subject(self.gov.cache.get(), payment, auth)

    def auth_state(self, payment: Payment) -> AuthState:
        auth = self.gov.store.get_authorization(payment.authorization_id or "")
        assert auth is not None
        return auth.state

    def tokens(self, address: str) -> int:
        return self.local.chain.balance(address, self.local.token_address)

    def reserved_usd_micros(self) -> int:
        """What the agent's spend report shows as still reserved."""
        rows = self.gov.spend(by="agent")
        return sum(r.pending_usd_micros for r in rows if r.group == "agent_a")

    def tick(self) -> Any:
        """One tick of the serve worker."""
        self.gov.release_due()
        return self.pay.execute_ready()

    def sign_vote(self, subject: Subject, approver: str, vote: str) -> Any:
        challenge = self.approvals.challenge(subject, approver)
        return {
            "approver_id": approver,
            "vote": vote,
            "nonce": challenge.nonce,
            "expires_at": challenge.expires_at,
            "signature": self.keys[approver].sign(challenge.messages[vote].encode()).hex(),
        }


def _recipient() -> str:
    return str(Account.create().address)


def _world(
    local: LocalEvm,
    database_url: str,
    clock: FakeClock,
    tmp_path: Path,
    approval: dict[str, Any],
    **org: Any,
) -> World:
    vault = FileVault.open(tmp_path / "vault", PASSPHRASE, scrypt_n=2**4)
    address = vault.create_key(ChainFamily.EVM)
    local.faucet(address, native_wei=ETH, token_units=10_000 * DUSD)
    spec = queue_org(address, local.token_address, approval, **org)
    world = World(local, clock, database_url, vault, address, spec)
    world.open()
    world.gov.apply(spec)
    world.gov.set_price("evm-local:ETH", "3000.00")
    admin = CredentialAdmin(SqlCredentialStore(world.gov.sql.db), clock)
    for name in ("alice", "bob", "carol"):
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        admin.add_approver(name, name.title(), ApproverKind.ED25519, public, ("finance",), "test")
        world.keys[name] = private
    return world


@pytest.fixture
def second_agent(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> Iterator[World]:
    world = _world(local, database_url, clock, tmp_path, {"second_agent": True})
    yield world
    world.gov.close()


@pytest.fixture
def two_of_three(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> Iterator[World]:
    approval = {"approvers": ["alice", "bob", "carol"], "required": 2}
    world = _world(local, database_url, clock, tmp_path, approval)
    yield world
    world.gov.close()


# -- approval tier ---------------------------------------------------------------------------
def test_600_waits_for_a_second_agent_then_executes_on_chain(second_agent: World) -> None:
    """$600 is above agent_a's $500 approval threshold: it waits, reserved; agent_a cannot
    approve its own payment; agent_b approves; the next tick sends it and it confirms."""
    w = second_agent
    to = _recipient()
    payment = w.submit("600.00", "big", to)
    assert payment.tier == "approval"
    assert w.auth_state(payment) is AuthState.PENDING_APPROVAL
    assert w.reserved_usd_micros() == 600_000_000
    assert w.tick().claimed == 0  # nothing is due: the approval is missing
    subject = w.subject(payment)
    with pytest.raises(Forbidden) as exc:
        w.approvals.vote_as(subject, Voter(VoterKind.AGENT, "agent_a"), "approve")
    assert exc.value.code == "self_approval"
    outcome = w.approvals.vote_as(subject, Voter(VoterKind.AGENT, "agent_b"), "approve")
    assert outcome.tally.verdict is Verdict.APPROVED
    assert w.tokens(to) == 0
    run = w.tick()
    assert (run.claimed, run.broadcast) == (1, 1)
    assert w.pay.get(payment.id).state is PaymentState.BROADCAST
    assert w.pay.confirm(payment.id).state is PaymentState.CONFIRMED
    assert w.tokens(to) == 600 * DUSD
    assert w.auth_state(payment) is AuthState.CAPTURED
    assert w.reserved_usd_micros() == 0
    assert w.tick().claimed == 0  # never twice


def test_two_of_three_one_approve_one_reject_waits_then_expiry_releases(
    two_of_three: World, clock: FakeClock
) -> None:
    """2-of-3: one approve and one reject by different approvers leave two who may still
    approve, so it keeps waiting (as configured); a replayed signed vote is refused; when
    nobody approves in time the reservation is released and the payment fails."""
    w = two_of_three
    to = _recipient()
    payment = w.submit("600.00", "big", to)
    subject = w.subject(payment)
    alice = w.sign_vote(subject, "alice", "approve")
    assert w.approvals.vote_signed(subject, **alice).tally.verdict is Verdict.PENDING
    with pytest.raises(Conflict) as exc:
        w.approvals.vote_signed(subject, **alice)  # the same signed vote again
    assert exc.value.code == "nonce_used"
    bob = w.sign_vote(subject, "bob", "reject")
    assert w.approvals.vote_signed(subject, **bob).tally.verdict is Verdict.PENDING
    assert w.tick().claimed == 0
    assert w.reserved_usd_micros() == 600_000_000
    clock.advance(seconds=APPROVAL_EXPIRY_S + 1)
    assert w.gov.expire_stale() == 1
    assert w.reserved_usd_micros() == 0
    run = w.tick()
    assert run.failed == 1 and run.claimed == 0
    failed = w.pay.get(payment.id)
    assert failed.state is PaymentState.FAILED
    assert failed.error is not None and failed.error.startswith("authorization_expired")
    assert w.tokens(to) == 0
    refused = [e for e in w.gov.store.audit_events(10_000) if e["kind"] == "approval.vote_refused"]
    assert [e["payload"]["code"] for e in refused] == ["nonce_used"]  # type: ignore[index]


def test_two_rejections_release_at_once(two_of_three: World) -> None:
    w = two_of_three
    payment = w.submit("600.00", "big")
    subject = w.subject(payment)
    w.approvals.vote_signed(subject, **w.sign_vote(subject, "alice", "reject"))
    outcome = w.approvals.vote_signed(subject, **w.sign_vote(subject, "carol", "reject"))
    assert outcome.tally.verdict is Verdict.REJECTED
    assert w.reserved_usd_micros() == 0
    assert w.tick().failed == 1
    failed = w.pay.get(payment.id)
    assert failed.error is not None and failed.error.startswith("approval_rejected")


def test_approved_payment_is_decided_again_before_signing(second_agent: World) -> None:
    """Approved, but the agent is frozen before the worker gets to it: decided again on the
    facts of now, it is denied, failed with the reason, and its reservation released."""
    w = second_agent
    to = _recipient()
    payment = w.submit("600.00", "big", to)
    w.approvals.vote_as(w.subject(payment), Voter(VoterKind.KEY, "key_fin"), "approve")
    w.gov.freeze("agent:agent_a", reason="incident")
    run = w.tick()
    assert (run.claimed, run.failed, run.broadcast) == (1, 1, 0)
    failed = w.pay.get(payment.id)
    assert failed.state is PaymentState.FAILED
    assert failed.error is not None and "denied_on_execution: agent_frozen" in failed.error
    assert w.auth_state(payment) is AuthState.VOIDED
    assert w.reserved_usd_micros() == 0 and w.tokens(to) == 0


# -- delay tier ------------------------------------------------------------------------------
def test_delay_survives_a_restart_and_executes_once_another_is_cancelled(
    second_agent: World, clock: FakeClock
) -> None:
    """Two $200 payments wait an hour. One is cancelled: its reservation is released at once
    (visible in spend). The server restarts; after the delay the other is executed exactly
    once, however many ticks run; the cancelled one never is."""
    w = second_agent
    kept_to, cancelled_to = _recipient(), _recipient()
    kept = w.submit("200.00", "kept", kept_to)
    dropped = w.submit("200.00", "dropped", cancelled_to)
    assert kept.tier == dropped.tier == "delay"
    assert w.reserved_usd_micros() == 400_000_000
    cancelled = w.pay.cancel(dropped.id, actor="agent:agent_a")
    assert cancelled.state is PaymentState.CANCELLED
    assert w.auth_state(dropped) is AuthState.VOIDED
    assert w.reserved_usd_micros() == 200_000_000  # headroom restored
    assert w.pay.cancel(dropped.id, actor="agent:agent_a").state is PaymentState.CANCELLED
    assert w.tick().claimed == 0  # the delay has not passed

    w.restart()
    assert w.pay.get(kept.id).state is PaymentState.QUEUED  # nothing lost
    clock.advance(seconds=DELAY_S + 1)
    runs = [w.tick() for _ in range(3)]
    assert [r.broadcast for r in runs] == [1, 0, 0]
    w.restart()
    assert w.tick().claimed == 0
    assert w.pay.confirm_pending() == 1
    assert w.tokens(kept_to) == 200 * DUSD  # exactly once
    assert w.tokens(cancelled_to) == 0
    assert w.pay.get(dropped.id).state is PaymentState.CANCELLED
    assert w.reserved_usd_micros() == 0
    with pytest.raises(InvalidState) as exc:
        w.pay.cancel(kept.id, actor="agent:agent_a")
    assert exc.value.code == "payment_not_cancellable"


def test_own_reservation_is_not_counted_twice(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """$400 spent, then a $450 delayed payment under a $1,000 daily budget: its own $450 is
    already in the balance, so deciding again must see $850 (not $1,300) and execute it."""
    w = _world(local, database_url, clock, tmp_path, {"second_agent": True}, agent_daily="1000.00")
    try:
        to = _recipient()
        w.submit("400.00", "first", to)
        clock.advance(seconds=DELAY_S + 1)
        assert w.tick().broadcast == 1
        assert w.pay.confirm_pending() == 1
        assert w.tokens(to) == 400 * DUSD
        other = w.submit("450.00", "second")  # 400 + 450 fits; counted twice it would not
        clock.advance(seconds=DELAY_S + 1)
        assert w.tick().broadcast == 1
        assert w.pay.get(other.id).state is PaymentState.BROADCAST
    finally:
        w.gov.close()


def test_an_approve_and_a_call_wait_and_execute_as_asked(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Every kind can wait: a delayed approve sets exactly its allowance, and a delayed raw
    ERC-20 transfer call sends exactly its calldata's amount."""
    spender, to = _recipient(), _recipient()
    approvals = _policy("token_approvals", {"allow": [{"spender": spender}]})
    w = _world(local, database_url, clock, tmp_path, {"second_agent": True}, policies=[approvals])
    try:
        approve = w.pay.submit(_approve(spender, "300"), idempotency_key="a")
        call = w.pay.submit(
            _call(local.token_address, encode_transfer(to, 250 * DUSD)), idempotency_key="c"
        )
        assert approve.state is call.state is PaymentState.QUEUED
        assert w.pay.get(call.id).data == "0x" + encode_transfer(to, 250 * DUSD).hex()
        clock.advance(seconds=DELAY_S + 1)
        assert w.tick().broadcast == 2
        assert w.pay.confirm_pending() == 2
        assert _allowance(local, w.address, spender) == 300 * DUSD
        assert w.tokens(to) == 250 * DUSD
    finally:
        w.gov.close()


# -- exactly once ----------------------------------------------------------------------------
def test_a_claim_left_by_a_dead_node_is_taken_over_once(
    second_agent: World, clock: FakeClock
) -> None:
    """A node claims a due payment and dies before sending: after the lease another run takes
    it over and sends it once. A claim that reached the point of sending is never retaken."""
    w = second_agent
    to = _recipient()
    payment = w.submit("200.00", "p", to)
    clock.advance(seconds=DELAY_S + 1)
    w.gov.release_due()
    queue = SqlPaymentQueue(w.gov.sql.db)
    [claimed] = queue.claim_ready(10, clock.now(), "dead-node")
    assert claimed.id == payment.id and claimed.state is PaymentState.CREATED
    w.restart()
    assert w.tick().claimed == 0  # the lease still runs
    clock.advance(seconds=CLAIM_LEASE_S + 1)
    assert w.tick().broadcast == 1
    assert w.pay.confirm_pending() == 1
    assert w.tokens(to) == 200 * DUSD

    stuck = w.submit("200.00", "q")
    clock.advance(seconds=DELAY_S + 1)
    w.gov.release_due()
    queue = SqlPaymentQueue(w.gov.sql.db)  # the database of the restarted stack
    queue.claim_ready(10, clock.now(), "dying-node")
    assert queue.mark_sending(stuck.id, "dying-node", clock.now())
    clock.advance(seconds=CLAIM_LEASE_S * 10)
    assert w.tick().claimed == 0  # may be on the chain already: never sent again
    row = w.pay.get(stuck.id)
    assert row.state is PaymentState.CREATED and row.tx_id is None


def test_two_executors_racing_execute_each_payment_once(
    local: LocalEvm, database_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    """Two nodes (two service stacks over one database) run the queue at the same moment:
    each of the due payments is claimed and sent by exactly one of them."""
    w = _world(local, database_url, clock, tmp_path, {"second_agent": True})
    other = treasurer.open(database_url, clock=clock)
    try:
        recipients = [_recipient() for _ in range(8)]
        payments = [w.submit("150.00", f"r{i}", to) for i, to in enumerate(recipients)]
        clock.advance(seconds=DELAY_S + 1)
        w.gov.release_due()
        nodes = [w.pay, open_payments(other, {"evm-local": local.chain}, w.vault)]
        barrier = threading.Barrier(len(nodes))
        results: list[Any] = [None, None]

        def run(index: int) -> None:
            barrier.wait()
            results[index] = nodes[index].execute_ready()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(nodes))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(r.claimed for r in results) == len(payments)
        assert sum(r.broadcast for r in results) == len(payments)
        assert w.pay.confirm_pending() == len(payments)
        for to in recipients:
            assert w.tokens(to) == 150 * DUSD
        claims = [e for e in w.gov.store.audit_events(10_000) if e["kind"] == "payment.claimed"]
        assert sorted(e["subject"] for e in claims) == sorted(p.id for p in payments)
    finally:
        other.close()
        w.gov.close()
