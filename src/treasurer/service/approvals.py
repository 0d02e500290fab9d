"""Voting on spends that wait for approval: challenges, signed votes, key and agent votes.

A spend in the approval tier has an authorization in ``pending_approval`` that holds its
reservation. Votes arrive three ways:

- **signed by a registered approver**: the approver first asks for a challenge (a nonce the
  server issues for that approver and that spend, with the exact messages to sign), signs the
  message of its vote with its Ed25519 key or its EVM address (EIP-191 ``personal_sign``), and
  sends the signature. The server rebuilds the message from its *own* record of the spend, so a
  signature made for another spend, another vote, another nonce or a later expiry does not
  verify; the nonce is spent in the transaction that records the vote, so a replay is refused;
- **by a finance or admin key** (the org's own authority);
- **by a second agent's session**, when an ``approval`` policy asks for a second agent.

Every vote, and every refused vote with its reason code, is an audit event. After each
recorded vote the ballots are tallied (:func:`treasurer.domain.approvals.tally`): approved →
the authorization becomes capturable (a queued payment is then executed by the payment
worker, which decides again against current facts first); rejected → it is ``rejected`` and
its reservation released. The initiating agent never votes on its own spend.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from treasurer.domain.approvals import (
    Ballot,
    Requirement,
    Tally,
    Verdict,
    Vote,
    Voter,
    VoterKind,
    may_vote,
    spend_hash,
    tally,
    vote_message,
)
from treasurer.domain.authorization import Authorization, AuthState
from treasurer.domain.credentials import Approver, ApproverKind
from treasurer.domain.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidState,
    NotFound,
    TreasurerError,
)
from treasurer.service.approval_ports import ApprovalStore, CastResult, IssuedNonce
from treasurer.service.credentials import CredentialStore
from treasurer.service.governance import GovernanceCore
from treasurer.service.ports import AuditRecord

#: How long an issued challenge (nonce) may be used.
CHALLENGE_TTL_S = 600
#: Most approvers read when sizing a group's pool.
_MAX_APPROVERS = 10_000


@dataclass(frozen=True, slots=True)
class Subject:
    """What is voted on: the id voters see (a payment's or an authorization's), the
    authorization behind it, the hash of the exact spend, who initiated it, and the
    requirements the decision recorded."""

    id: str
    authorization: Authorization
    spend_hash: str
    initiator: str
    requirements: tuple[Requirement, ...]


@dataclass(frozen=True, slots=True)
class Challenge:
    """What an approver signs: one message per possible vote, all with this nonce."""

    subject_id: str
    approver_id: str
    nonce: str
    spend_hash: str
    expires_at: datetime
    messages: dict[str, str]


@dataclass(frozen=True, slots=True)
class VoteOutcome:
    """The vote as recorded, and where the spend stands after it."""

    subject_id: str
    voter: str
    vote: Vote
    tally: Tally
    authorization: Authorization


def subject_of(
    auth: Authorization, subject_id: str, *, sender: str, recipient: str, calldata: str = ""
) -> Subject:
    """The voting subject of ``auth``; ``sender``/``recipient``/``calldata`` describe the
    exact transaction (for a governance-mode authorization: the wallet address, the recipient
    and no calldata)."""
    entries = auth.decision.get("approvals", [])
    assert isinstance(entries, list)
    hashed = spend_hash(
        chain=auth.chain,
        sender=sender,
        recipient=recipient,
        asset=auth.asset_id,
        amount=auth.amount,
        calldata=calldata,
    )
    requirements = tuple(Requirement.from_decision(e) for e in entries)
    return Subject(subject_id, auth, hashed, auth.agent_id, requirements)


class Approvals:
    """Challenges and votes over governance, the approval store and the approver registry."""

    def __init__(
        self, governance: GovernanceCore, store: ApprovalStore, credentials: CredentialStore
    ) -> None:
        self.governance = governance
        self.store = store
        self.credentials = credentials

    # -- challenges -----------------------------------------------------------------------
    def challenge(self, subject: Subject, approver_id: str) -> Challenge:
        """Issue a single-use nonce for ``approver_id`` on ``subject``, with the messages.
        A refused challenge is audited like a refused vote."""
        try:
            self._open(subject)
            approver = self._approver(approver_id)
            self._eligible(subject, Voter(VoterKind.APPROVER, approver.id, approver.groups))
        except TreasurerError as exc:
            self._refused(subject, f"approver:{approver_id}", exc)
            raise
        now = self.governance.clock.now()
        expires = now + timedelta(seconds=CHALLENGE_TTL_S)
        if subject.authorization.expires_at is not None:
            expires = min(expires, subject.authorization.expires_at)
        nonce = secrets.token_hex(16)
        self.store.issue_nonce(
            IssuedNonce(nonce, subject.authorization.id, approver.id, expires), now
        )
        messages = {
            vote.value: vote_message(subject.id, subject.spend_hash, vote, nonce, expires)
            for vote in Vote
        }
        return Challenge(subject.id, approver.id, nonce, subject.spend_hash, expires, messages)

    # -- votes ----------------------------------------------------------------------------
    def vote_signed(
        self,
        subject: Subject,
        *,
        approver_id: str,
        vote: str,
        nonce: str,
        expires_at: datetime,
        signature: str,
    ) -> VoteOutcome:
        """A registered approver's signed vote (see the module docstring)."""
        chosen = _vote(vote)
        actor = f"approver:{approver_id}"
        try:
            self._open(subject)
            approver = self._approver(approver_id)
            voter = Voter(VoterKind.APPROVER, approver.id, approver.groups)
            self._eligible(subject, voter)
            if expires_at <= self.governance.clock.now():
                raise InvalidRequest(
                    "expires_at: this signed vote has expired; ask for a new challenge",
                    field="expires_at",
                    code="vote_expired",
                )
            message = vote_message(subject.id, subject.spend_hash, chosen, nonce, expires_at)
            _verify(approver, message, signature)
        except TreasurerError as exc:
            self._refused(subject, actor, exc)
            raise
        return self._cast(subject, voter, chosen, nonce, actor, method="signature")

    def vote_as(self, subject: Subject, voter: Voter, vote: str) -> VoteOutcome:
        """A vote by a finance/admin key or by a second agent's session."""
        chosen = _vote(vote)
        try:
            self._open(subject)
            self._eligible(subject, voter)
        except TreasurerError as exc:
            self._refused(subject, voter.handle, exc)
            raise
        return self._cast(subject, voter, chosen, None, voter.handle, method=voter.kind.value)

    def status(self, subject: Subject) -> Tally:
        """Where the votes on ``subject`` stand now."""
        return self._tally(subject)

    def ballots(self, subject: Subject) -> list[Ballot]:
        """Every vote recorded on ``subject``, in the order cast."""
        return self.store.ballots(subject.authorization.id)

    # -- internals ------------------------------------------------------------------------
    def _cast(
        self,
        subject: Subject,
        voter: Voter,
        vote: Vote,
        nonce: str | None,
        actor: str,
        *,
        method: str,
    ) -> VoteOutcome:
        now = self.governance.clock.now()
        ballot = Ballot(voter, vote, now)
        detail: dict[str, object] = {
            "subject": subject.id,
            "vote": vote.value,
            "method": method,
            "spend_hash": subject.spend_hash,
        }
        audit = AuditRecord("approval.vote", actor, subject.authorization.id, detail)
        result = self.store.cast(subject.authorization.id, ballot, nonce, audit, now)
        if result is not CastResult.RECORDED:
            error = _cast_error(result)
            self._refused(subject, actor, error)
            raise error
        counted = self._tally(subject)
        auth = self._settle(subject, counted, actor)
        return VoteOutcome(subject.id, voter.handle, vote, counted, auth)

    def _tally(self, subject: Subject) -> Tally:
        pools = {r.policy_id: self._pool(r) for r in subject.requirements}
        ballots = self.store.ballots(subject.authorization.id)
        return tally(subject.requirements, ballots, subject.initiator, pools)

    def _settle(self, subject: Subject, counted: Tally, actor: str) -> Authorization:
        auth_id = subject.authorization.id
        detail: dict[str, object] = {"subject": subject.id, "progress": list(counted.progress)}
        try:
            if counted.verdict is Verdict.APPROVED:
                return self.governance.approve(auth_id, actor=actor, detail=detail)
            if counted.verdict is Verdict.REJECTED:
                return self.governance.reject(auth_id, reason="rejected by approvers", actor=actor)
        except InvalidState:
            pass  # settled already by a concurrent vote, or expired meanwhile: report as is
        current = self.governance.store.get_authorization(auth_id)
        assert current is not None
        return current

    def _pool(self, requirement: Requirement) -> int | None:
        """How many distinct approvers could ever count for ``requirement``."""
        if requirement.second_agent:
            return None
        members = set(requirement.approvers)
        if requirement.group is not None:
            approvers = self.credentials.list_approvers(None, _MAX_APPROVERS)
            members |= {a.id for a in approvers if requirement.group in a.groups}
        return len(members) if members else None

    def _open(self, subject: Subject) -> None:
        current = self.governance.store.get_authorization(subject.authorization.id)
        assert current is not None
        if current.state is not AuthState.PENDING_APPROVAL:
            raise InvalidState(
                f"{subject.id} is not waiting for approval (its authorization is "
                f"{current.state.value})",
                code="approval_closed",
            )
        if current.expires_at is not None and current.expires_at <= self.governance.clock.now():
            raise InvalidState(
                f"the approval request of {subject.id} expired at {current.expires_at.isoformat()}",
                code="approval_closed",
            )

    def _approver(self, approver_id: str) -> Approver:
        approver = self.credentials.get_approver(approver_id)
        if approver is None or approver.revoked_at is not None:
            raise NotFound(f"approver {approver_id!r} does not exist", field="approver")
        return approver

    def _eligible(self, subject: Subject, voter: Voter) -> None:
        if voter.kind is VoterKind.AGENT and voter.id == subject.initiator:
            raise Forbidden(
                f"agent {voter.id} initiated {subject.id} and cannot approve its own spend",
                code="self_approval",
            )
        if not may_vote(subject.requirements, voter, subject.initiator):
            needed = "; ".join(r.describe() for r in subject.requirements)
            raise Forbidden(
                f"{voter.handle} is not an approver of {subject.id} (it needs {needed})",
                code="approver_not_eligible",
            )

    def _refused(self, subject: Subject, actor: str, exc: TreasurerError) -> None:
        detail: dict[str, object] = {"subject": subject.id, "code": exc.code, "why": exc.message}
        record = AuditRecord("approval.vote_refused", actor, subject.authorization.id, detail)
        self.credentials.record_audit([record], self.governance.clock.now())


def _vote(text: str) -> Vote:
    try:
        return Vote(text)
    except ValueError:
        raise InvalidRequest(
            f"vote: {text!r} must be 'approve' or 'reject'", field="vote", code="vote_invalid"
        ) from None


def _cast_error(result: CastResult) -> TreasurerError:
    if result is CastResult.NONCE_USED:
        return Conflict(
            "nonce: this signed vote was already used; a vote counts once (ask for a new "
            "challenge to vote again)",
            field="nonce",
            code="nonce_used",
        )
    if result is CastResult.NONCE_EXPIRED:
        return InvalidRequest(
            "nonce: the challenge expired; ask for a new one", field="nonce", code="nonce_expired"
        )
    if result is CastResult.ALREADY_VOTED:
        return Conflict("this voter has already voted on this spend", code="already_voted")
    return InvalidRequest(
        "nonce: not issued for this approver and this spend; ask for a challenge first",
        field="nonce",
        code="nonce_unknown",
    )


def _verify(approver: Approver, message: str, signature: str) -> None:
    """Check ``signature`` over ``message`` with the approver's key; raise if it fails."""
    invalid = InvalidRequest(
        "signature: does not verify for this approver over this vote's message (subject, spend, "
        "vote, nonce, expiry); sign the message of the challenge exactly",
        field="signature",
        code="signature_invalid",
    )
    raw = _signature_bytes(signature)
    if raw is None:
        raise invalid
    if approver.kind is ApproverKind.ED25519:
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
            Ed25519PublicKey,
        )

        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(approver.public_key))
        try:
            key.verify(raw, message.encode("utf-8"))
        except InvalidSignature:
            raise invalid from None
        return
    from eth_account import Account  # noqa: PLC0415 - slow to import; only EVM votes need it
    from eth_account.messages import encode_defunct  # noqa: PLC0415

    try:
        signer = Account.recover_message(encode_defunct(text=message), signature=raw)
    except (ValueError, TypeError):
        raise invalid from None
    if str(signer).lower() != approver.public_key.lower():
        raise invalid


def _signature_bytes(text: str) -> bytes | None:
    """A signature given as hex (``0x`` optional) or base64."""
    cleaned = text.strip()
    hexed = cleaned[2:] if cleaned.lower().startswith("0x") else cleaned
    try:
        return bytes.fromhex(hexed)
    except ValueError:
        pass
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        return None
