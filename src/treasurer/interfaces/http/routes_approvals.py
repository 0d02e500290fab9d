"""Approval votes over HTTP: ``/v1/payments/{id}/approvals`` and
``/v1/authorizations/{id}/approvals`` (status, challenge, vote).

**Who may call.** Every route needs a credential, like every other private route (SPEC 8: only
three routes are public). What the credential means differs:

- a **signed vote** (``approver``, ``nonce``, ``expires_at``, ``signature``) is the vote of the
  registered approver whose key made the signature; the signature alone authenticates the
  voter (the server rebuilds the message from its own record of the spend). The bearer only
  *relays* it: any key that can see the spend, the initiating agent's own session (an agent
  asking a person to sign in their wallet), or a second agent where one is asked for. The
  relayer is in the audit trail beside the approver. Asking for a challenge is relayed alike;
- an **unsigned vote** is the caller's own: a finance or admin key (the org's authority), or an
  agent session, which counts only as the second agent an ``approval`` policy asks for and
  never on its own spend (403 ``self_approval``);
- auditor keys are read-only: they may read the status, nothing else.

An agent sees another agent's spend here only when that spend asks for a second agent's
approval; otherwise, and for keys outside their department, the spend does not exist (404).

Codes: ``approval_closed`` (409: not waiting for approval, or its approval expired),
``self_approval`` and ``approver_not_eligible`` (403), ``nonce_used`` and ``already_voted``
(409), ``nonce_unknown``, ``nonce_expired``, ``vote_expired``, ``signature_invalid`` and
``field_required`` (400). Every refused vote is audited (``approval.vote_refused``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from treasurer.domain.approvals import Ballot, Voter, VoterKind
from treasurer.domain.credentials import Principal, PrincipalKind
from treasurer.domain.errors import InvalidRequest, NotFound
from treasurer.interfaces.http.deps import Ctx, HttpContext, caller
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.service.approval_subjects import authorization_subject, payment_subject
from treasurer.service.approvals import Challenge, Subject
from treasurer.service.auth_access import Permission, require
from treasurer.wire import (
    ApprovalChallengeIn,
    ApprovalChallengeOut,
    ApprovalProgressOut,
    ApprovalStatusOut,
    ApprovalVoteIn,
    BallotOut,
)

router = APIRouter(tags=["approvals"], responses=COMMON)
#: Any credential (auditors only for GET); what it may do is decided per request, above.
AnyCaller = Annotated[Principal, Depends(caller)]
_PAYMENT = "/v1/payments/{payment_id}/approvals"
_AUTHORIZATION = "/v1/authorizations/{authorization_id}/approvals"


# -- subjects ------------------------------------------------------------------------------
def _of_payment(ctx: HttpContext, who: Principal, payment_id: str) -> Subject:
    payment = ctx.require_payments().payments.get(payment_id)
    auth = None
    if payment is not None and payment.authorization_id is not None:
        auth = ctx.governance.store.get_authorization(payment.authorization_id)
    if payment is None or auth is None:
        raise NotFound(f"payment {payment_id!r} does not exist")
    return _visible(ctx, who, payment_subject(ctx.config, payment, auth), "payment")


def _of_authorization(ctx: HttpContext, who: Principal, authorization_id: str) -> Subject:
    auth = ctx.governance.store.get_authorization(authorization_id)
    if auth is None:
        raise NotFound(f"authorization {authorization_id!r} does not exist")
    return _visible(ctx, who, authorization_subject(ctx.config, auth), "authorization")


def _visible(ctx: HttpContext, who: Principal, subject: Subject, what: str) -> Subject:
    """The subject, unless the caller may not see it (then: not found, as if missing)."""
    if who.kind is PrincipalKind.AGENT:
        asked = any(r.second_agent for r in subject.requirements)
        seen = who.agent_id == subject.initiator or asked
    else:
        seen = ctx.view(who).agent(subject.initiator)
    if not seen:
        raise NotFound(f"{what} {subject.id!r} does not exist")
    return subject


# -- shared bodies ---------------------------------------------------------------------------
def _ballot(ballot: Ballot) -> BallotOut:
    return BallotOut(voter=ballot.voter.handle, vote=ballot.vote.value, at=ballot.at)


def _status(
    ctx: HttpContext, subject: Subject, voted: BallotOut | None = None
) -> ApprovalStatusOut:
    approvals = ctx.require_approvals()
    tally = approvals.status(subject)
    auth = ctx.governance.store.get_authorization(subject.authorization.id) or subject.authorization
    verdict = tally.verdict.value if subject.requirements else "not_required"
    return ApprovalStatusOut(
        subject=subject.id,
        authorization=auth.id,
        state=auth.state.value,
        verdict=verdict,
        expires_at=auth.expires_at,
        spend_hash=subject.spend_hash,
        progress=[
            ApprovalProgressOut(requirement=r, approvals=a, rejections=n, required=q)
            for r, a, n, q in tally.progress
        ],
        ballots=[_ballot(b) for b in approvals.ballots(subject)],
        voted=voted,
    )


def _challenge(ctx: HttpContext, subject: Subject, body: ApprovalChallengeIn) -> Challenge:
    return ctx.require_approvals().challenge(subject, body.approver)


def _challenge_out(challenge: Challenge, subject: Subject) -> ApprovalChallengeOut:
    return ApprovalChallengeOut(
        subject=challenge.subject_id,
        authorization=subject.authorization.id,
        approver=challenge.approver_id,
        nonce=challenge.nonce,
        spend_hash=challenge.spend_hash,
        expires_at=challenge.expires_at,
        messages=challenge.messages,
    )


def _vote(
    ctx: HttpContext, who: Principal, subject: Subject, body: ApprovalVoteIn
) -> ApprovalStatusOut:
    approvals = ctx.require_approvals()
    if body.signature is not None:
        for name in ("approver", "nonce", "expires_at"):
            if getattr(body, name) is None:
                raise InvalidRequest(
                    f"{name}: a signed vote needs approver, nonce, expires_at and signature "
                    "(ask POST …/approvals/challenge for the nonce and the message to sign)",
                    field=name,
                    code="field_required",
                )
        assert body.approver and body.nonce and body.expires_at
        outcome = approvals.vote_signed(
            subject,
            approver_id=body.approver,
            vote=body.vote,
            nonce=body.nonce,
            expires_at=body.expires_at,
            signature=body.signature,
        )
    else:
        signed_only = [n for n in ("approver", "nonce", "expires_at") if getattr(body, n)]
        if signed_only:
            raise InvalidRequest(
                f"signature: {signed_only[0]} belongs to a signed vote, which needs the "
                "approver's signature too; to vote as yourself, send only vote",
                field="signature",
                code="field_required",
            )
        outcome = approvals.vote_as(subject, _own_voter(who), body.vote)
    voted = BallotOut(voter=outcome.voter, vote=outcome.vote.value, at=ctx.governance.clock.now())
    return _status(ctx, subject, voted)


def _own_voter(who: Principal) -> Voter:
    """The caller as a voter: an agent session, or a key that may approve."""
    if who.kind is PrincipalKind.AGENT:
        assert who.agent_id is not None
        return Voter(VoterKind.AGENT, who.agent_id)
    require(who, Permission.APPROVE)
    return Voter(VoterKind.KEY, who.credential_id)


# -- payments -------------------------------------------------------------------------------
@router.get(_PAYMENT, responses=responses(404, 503))
def payment_approvals(payment_id: str, ctx: Ctx, who: AnyCaller) -> ApprovalStatusOut:
    """Where the votes on a queued payment stand: requirements, ballots, verdict."""
    return _status(ctx, _of_payment(ctx, who, payment_id))


@router.post(f"{_PAYMENT}/challenge", status_code=201, responses=responses(404, 409, 503))
def payment_challenge(
    payment_id: str, body: ApprovalChallengeIn, ctx: Ctx, who: AnyCaller
) -> ApprovalChallengeOut:
    """A single-use nonce for a registered approver, and the message to sign for each vote."""
    subject = _of_payment(ctx, who, payment_id)
    return _challenge_out(_challenge(ctx, subject, body), subject)


@router.post(_PAYMENT, status_code=201, responses=responses(400, 403, 404, 409, 503))
def vote_on_payment(
    payment_id: str, body: ApprovalVoteIn, ctx: Ctx, who: AnyCaller
) -> ApprovalStatusOut:
    """Vote on a payment waiting for approval (signed by an approver, or as the caller)."""
    return _vote(ctx, who, _of_payment(ctx, who, payment_id), body)


# -- governance-mode authorizations --------------------------------------------------------
@router.get(_AUTHORIZATION, responses=responses(404))
def authorization_approvals(authorization_id: str, ctx: Ctx, who: AnyCaller) -> ApprovalStatusOut:
    """Where the votes on an authorization stand. Once approved its state is ``pending``
    (capturable until ``expires_at``); rejected or expired, its reservation is released."""
    return _status(ctx, _of_authorization(ctx, who, authorization_id))


@router.post(f"{_AUTHORIZATION}/challenge", status_code=201, responses=responses(404, 409))
def authorization_challenge(
    authorization_id: str, body: ApprovalChallengeIn, ctx: Ctx, who: AnyCaller
) -> ApprovalChallengeOut:
    """A single-use nonce for a registered approver, and the message to sign for each vote."""
    subject = _of_authorization(ctx, who, authorization_id)
    return _challenge_out(_challenge(ctx, subject, body), subject)


@router.post(_AUTHORIZATION, status_code=201, responses=responses(400, 403, 404, 409))
def vote_on_authorization(
    authorization_id: str, body: ApprovalVoteIn, ctx: Ctx, who: AnyCaller
) -> ApprovalStatusOut:
    """Vote on an authorization waiting for approval (signed, or as the caller)."""
    return _vote(ctx, who, _of_authorization(ctx, who, authorization_id), body)
