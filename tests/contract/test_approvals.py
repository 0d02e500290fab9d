"""Approval votes on spends in the approval tier, against every store.

Approvers hold real keys the test generates (Ed25519 with ``cryptography``, an EVM account
with ``eth_account``) and sign the challenge messages exactly as a wallet would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import encode_defunct
from tests.fakes import FakeClock
from tests.orgs import SHOP, W1, cross_wallet_org

import treasurer
from treasurer.adapters.sql.approval_store import SqlApprovalStore
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.approvals import Verdict, Voter, VoterKind
from treasurer.domain.authorization import AuthState
from treasurer.domain.credentials import ApproverKind
from treasurer.domain.errors import Conflict, Forbidden, InvalidRequest, InvalidState
from treasurer.service.approvals import Approvals, Subject, subject_of
from treasurer.service.auth_admin import CredentialAdmin


@dataclass
class World:
    gov: EmbeddedGovernance
    approvals: Approvals
    keys: dict[str, Any]  # approver id -> Ed25519 private key or EVM account
    clock: FakeClock

    def spend(self, amount: str = "1500.00", agent: str = "agent_a") -> Subject:
        wallet = "w1" if agent == "agent_a" else "w3"
        result = self.gov.authorize(
            agent=agent, wallet=wallet, amount=amount, asset="USDC", recipient=SHOP
        )
        assert result.state is AuthState.PENDING_APPROVAL, result.reasons
        return subject_of(result.authorization, result.id, sender=W1, recipient=SHOP)

    def sign(self, approver: str, message: str) -> str:
        key = self.keys[approver]
        if isinstance(key, Ed25519PrivateKey):
            return key.sign(message.encode()).hex()
        return "0x" + bytes(key.sign_message(encode_defunct(text=message)).signature).hex()

    def vote(self, subject: Subject, approver: str, vote: str) -> Any:
        challenge = self.approvals.challenge(subject, approver)
        return self.approvals.vote_signed(
            subject,
            approver_id=approver,
            vote=vote,
            nonce=challenge.nonce,
            expires_at=challenge.expires_at,
            signature=self.sign(approver, challenge.messages[vote]),
        )

    def state(self, subject: Subject) -> AuthState:
        auth = self.gov.store.get_authorization(subject.authorization.id)
        assert auth is not None
        return auth.state

    def used_usd(self) -> str:
        check = self.gov.check(agent="agent_a", wallet="w1", amount="0.01", asset="USDC")
        budgets = check.as_dict()["budgets"]
        assert isinstance(budgets, list)
        return str(next(b["used_usd"] for b in budgets if b["scope"] == "agent:agent_a"))

    def refusals(self) -> list[str]:
        events = self.gov.store.audit_events(10_000)
        found = []
        for event in events:
            if event["kind"] == "approval.vote_refused":
                payload = event["payload"]
                assert isinstance(payload, dict)
                found.append(str(payload["code"]))
        return found


def _org(approval: dict[str, Any]) -> dict[str, Any]:
    org = cross_wallet_org(agent_daily="10000.00")
    for agent in org["agents"]:
        agent["tiers"] = {"instant_max_usd": "1000.00"}
        agent["approval"] = {"threshold_usd": "1000.00", "expiry_seconds": 3600, **approval}
    return org


def _world(database_url: str, clock: FakeClock, approval: dict[str, Any]) -> World:
    gov = treasurer.open(database_url, clock=clock)
    gov.apply(_org(approval))
    credentials = SqlCredentialStore(gov.sql.db)
    admin = CredentialAdmin(credentials, clock)
    keys: dict[str, Any] = {}
    for name in ("alice", "bob", "carol"):
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
        admin.add_approver(name, name.title(), ApproverKind.ED25519, public, ("finance",), "test")
        keys[name] = private
    account = Account.create()
    admin.add_approver("dave", "Dave", ApproverKind.EVM, account.address, ("finance",), "test")
    keys["dave"] = account
    approvals = Approvals(gov, SqlApprovalStore(gov.sql.db), credentials)
    return World(gov, approvals, keys, clock)


@pytest.fixture
def two_of_three(database_url: str, clock: FakeClock) -> Iterator[World]:
    world = _world(database_url, clock, {"approvers": ["alice", "bob", "carol"], "required": 2})
    yield world
    world.gov.close()


@pytest.fixture
def second_agent(database_url: str, clock: FakeClock) -> Iterator[World]:
    world = _world(database_url, clock, {"second_agent": True})
    yield world
    world.gov.close()


def test_two_of_three_with_one_reject_still_approves(two_of_three: World) -> None:
    """One approve and one reject leave two who may approve: still pending; a second
    approval approves it and the spend becomes capturable."""
    world = two_of_three
    subject = world.spend()
    assert world.vote(subject, "alice", "approve").tally.verdict is Verdict.PENDING
    assert world.vote(subject, "bob", "reject").tally.verdict is Verdict.PENDING
    assert world.state(subject) is AuthState.PENDING_APPROVAL
    outcome = world.vote(subject, "carol", "approve")
    assert outcome.tally.verdict is Verdict.APPROVED
    assert outcome.authorization.state is AuthState.PENDING
    assert world.gov.capture(subject.authorization.id).state is AuthState.CAPTURED


def test_two_rejects_of_three_reject_and_release(two_of_three: World) -> None:
    world = two_of_three
    subject = world.spend()
    assert world.used_usd() == "1500.00"
    world.vote(subject, "alice", "reject")
    outcome = world.vote(subject, "bob", "reject")
    assert outcome.tally.verdict is Verdict.REJECTED
    assert world.state(subject) is AuthState.REJECTED
    assert world.used_usd() == "0.00"
    with pytest.raises(InvalidState) as exc:
        world.vote(subject, "carol", "approve")
    assert exc.value.code == "approval_closed"


def test_a_replayed_signed_vote_is_refused_and_audited(two_of_three: World) -> None:
    world = two_of_three
    subject = world.spend()
    challenge = world.approvals.challenge(subject, "alice")
    signature = world.sign("alice", challenge.messages["approve"])
    arguments = {
        "approver_id": "alice",
        "vote": "approve",
        "nonce": challenge.nonce,
        "expires_at": challenge.expires_at,
        "signature": signature,
    }
    world.approvals.vote_signed(subject, **arguments)
    with pytest.raises(Conflict) as exc:
        world.approvals.vote_signed(subject, **arguments)
    assert exc.value.code == "nonce_used"
    assert world.refusals() == ["nonce_used"]
    assert world.approvals.status(subject).progress[0][1] == 1  # counted once


def test_forged_mismatched_and_expired_votes_are_refused(two_of_three: World) -> None:
    world = two_of_three
    subject = world.spend()
    other = world.spend(amount="1200.00")
    challenge = world.approvals.challenge(subject, "alice")

    def attempt(**changes: Any) -> str:
        arguments = {
            "approver_id": "alice",
            "vote": "approve",
            "nonce": challenge.nonce,
            "expires_at": challenge.expires_at,
            "signature": world.sign("alice", challenge.messages["approve"]),
            **changes,
        }
        target = arguments.pop("subject", subject)
        with pytest.raises((InvalidRequest, Conflict, Forbidden)) as exc:
            world.approvals.vote_signed(target, **arguments)
        return exc.value.code

    assert attempt(vote="reject") == "signature_invalid"  # signed approve, claims reject
    assert attempt(subject=other) == "signature_invalid"  # signed for another spend
    assert attempt(signature=world.sign("bob", challenge.messages["approve"])) == (
        "signature_invalid"
    )
    assert attempt(expires_at=challenge.expires_at + timedelta(hours=1)) == "signature_invalid"
    assert attempt(signature="zz-not-a-signature") == "signature_invalid"
    bobs = world.approvals.challenge(subject, "bob")
    bob_message = bobs.messages["approve"].replace(bobs.nonce, challenge.nonce)
    assert attempt(approver_id="bob", signature=world.sign("bob", bob_message)) == "nonce_unknown"
    assert attempt(approver_id="dave") == "approver_not_eligible"
    world.clock.advance(seconds=601)
    assert attempt() == "vote_expired"
    assert world.state(subject) is AuthState.PENDING_APPROVAL
    assert world.approvals.status(subject).progress[0][1:3] == (0, 0)
    assert len(world.refusals()) == 8


def test_evm_approvers_sign_with_personal_sign(database_url: str, clock: FakeClock) -> None:
    world = _world(database_url, clock, {"group": "finance", "required": 2})
    try:
        subject = world.spend()
        world.vote(subject, "dave", "approve")
        outcome = world.vote(subject, "alice", "approve")
        assert outcome.tally.verdict is Verdict.APPROVED
    finally:
        world.gov.close()


def test_second_agent_approves_but_never_the_initiator(second_agent: World) -> None:
    world = second_agent
    subject = world.spend()
    with pytest.raises(Forbidden) as exc:
        world.approvals.vote_as(subject, Voter(VoterKind.AGENT, "agent_a"), "approve")
    assert exc.value.code == "self_approval"
    with pytest.raises(Forbidden) as exc:
        world.vote(subject, "alice", "approve")  # not a second agent, not a finance key
    assert exc.value.code == "approver_not_eligible"
    outcome = world.approvals.vote_as(subject, Voter(VoterKind.AGENT, "agent_b"), "approve")
    assert outcome.tally.verdict is Verdict.APPROVED
    assert world.state(subject) is AuthState.PENDING
    assert world.refusals() == ["self_approval", "approver_not_eligible"]


def test_finance_key_vote_counts(second_agent: World) -> None:
    world = second_agent
    subject = world.spend()
    outcome = world.approvals.vote_as(subject, Voter(VoterKind.KEY, "key_fin"), "reject")
    assert outcome.tally.verdict is Verdict.REJECTED
    assert world.used_usd() == "0.00"
    with pytest.raises(InvalidState):
        world.approvals.vote_as(subject, Voter(VoterKind.AGENT, "agent_b"), "approve")


def test_a_voter_counts_once(second_agent: World) -> None:
    world = second_agent
    subject = world.spend()
    world.approvals.vote_as(subject, Voter(VoterKind.KEY, "key_fin"), "approve")
    other = world.spend(amount="1100.00")
    world.approvals.vote_as(other, Voter(VoterKind.KEY, "key_fin"), "approve")
    assert world.state(other) is AuthState.PENDING


def test_voting_after_expiry_is_refused(second_agent: World) -> None:
    world = second_agent
    subject = world.spend()
    world.clock.advance(seconds=3601)
    with pytest.raises(InvalidState) as exc:
        world.approvals.vote_as(subject, Voter(VoterKind.AGENT, "agent_b"), "approve")
    assert exc.value.code == "approval_closed"
    assert world.gov.expire_stale() == 1
    assert world.used_usd() == "0.00"
