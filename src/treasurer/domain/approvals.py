"""Approval votes: what an approver signs, who may vote, and when a spend is approved.

Pure: the canonical message an approver signs, the hash of the exact spend it binds, and the
tally of votes against the requirements the decision recorded (``approval`` policies).

**What a signature binds.** The approver signs :func:`vote_message`: a short, line-oriented
text (so a person can read what their wallet asks them to sign) naming the payment or
authorization id, the SHA-256 of the exact spend (:func:`spend_hash`: chain, from, to, asset,
amount in base units, calldata), the vote, a single-use nonce the server issued for this
approver and this spend, and an expiry. A signature for one spend can therefore not be
replayed on another, nor twice on the same one, nor after it expires.

**Who may vote** (:func:`counts_for`):

- the initiating agent never votes on its own spend;
- an approver named in a requirement's ``approvers`` list, or in its ``group``;
- another agent of the org when the requirement asks for a ``second_agent``;
- a ``finance`` or ``admin`` key counts for every requirement: it is the org's own authority.

**When it is decided** (:func:`tally`): a requirement is met when ``required`` distinct eligible
voters approved. It fails when so many eligible voters rejected that ``required`` approvals can
no longer be reached from the pool (e.g. 2-of-3: one reject leaves two who may still approve;
a second reject fails it). When the pool's size is open-ended (a second agent, a finance key),
one reject fails it. The spend is approved when every requirement is met and rejected as soon
as one fails.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

MESSAGE_HEADER = "Treasurer approval vote v1"


class Vote(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class VoterKind(StrEnum):
    APPROVER = "approver"  # a registered approver, by signature
    KEY = "key"  # a finance or admin key
    AGENT = "agent"  # a second agent, by its session


class Verdict(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Requirement:
    """One ``approval`` policy's demand, as the decision recorded it."""

    policy_id: str | None
    required: int
    approvers: tuple[str, ...] = ()
    group: str | None = None
    second_agent: bool = False

    @classmethod
    def from_decision(cls, entry: Mapping[str, object]) -> Requirement:
        approvers = entry.get("approvers") or []
        assert isinstance(approvers, list)
        required = entry.get("required", 1)
        assert isinstance(required, int)
        group = entry.get("group")
        return cls(
            policy_id=None if entry.get("policy_id") is None else str(entry["policy_id"]),
            required=required,
            approvers=tuple(str(a) for a in approvers),
            group=None if group is None else str(group),
            second_agent=bool(entry.get("second_agent", False)),
        )

    def describe(self) -> str:
        who = []
        if self.approvers:
            who.append("approvers " + ", ".join(self.approvers))
        if self.group:
            who.append(f"group {self.group}")
        if self.second_agent:
            who.append("a second agent")
        pool = " or ".join(who) or "a finance key"
        return f"{self.required} approval(s) from {pool} (policy {self.policy_id})"


@dataclass(frozen=True, slots=True)
class Voter:
    """Who cast a vote: ``id`` is an approver id, a key id or an agent id."""

    kind: VoterKind
    id: str
    groups: tuple[str, ...] = ()

    @property
    def handle(self) -> str:
        return f"{self.kind.value}:{self.id}"


@dataclass(frozen=True, slots=True)
class Ballot:
    voter: Voter
    vote: Vote
    at: datetime


@dataclass(frozen=True, slots=True)
class Tally:
    verdict: Verdict
    #: Per requirement: (description, approvals counted, rejections counted, required).
    progress: tuple[tuple[str, int, int, int], ...]


def counts_for(requirement: Requirement, voter: Voter, initiator: str) -> bool:
    """Whether ``voter`` is one of the people (or agents) ``requirement`` asks."""
    if voter.kind is VoterKind.AGENT:
        return requirement.second_agent and voter.id != initiator
    if voter.kind is VoterKind.KEY:
        return True
    named = voter.id in requirement.approvers
    grouped = requirement.group is not None and requirement.group in voter.groups
    return named or grouped


def may_vote(requirements: Iterable[Requirement], voter: Voter, initiator: str) -> bool:
    """A voter may vote when it counts for at least one requirement (never the initiator)."""
    if voter.kind is VoterKind.AGENT and voter.id == initiator:
        return False
    return any(counts_for(r, voter, initiator) for r in requirements)


def tally(
    requirements: Sequence[Requirement],
    ballots: Iterable[Ballot],
    initiator: str,
    pool_sizes: Mapping[str | None, int | None] | None = None,
) -> Tally:
    """Decide from the ballots so far. ``pool_sizes`` maps a requirement's ``policy_id`` to how
    many distinct voters could ever count for it (None: open-ended)."""
    ballots = list(ballots)
    progress = []
    failed = False
    met = True
    for requirement in requirements:
        counted = [b for b in ballots if counts_for(requirement, b.voter, initiator)]
        approvals = len({b.voter.handle for b in counted if b.vote is Vote.APPROVE})
        rejections = len({b.voter.handle for b in counted if b.vote is Vote.REJECT})
        pool = (pool_sizes or {}).get(requirement.policy_id)
        if approvals < requirement.required:
            met = False
            if pool is None:
                failed = failed or rejections > 0
            else:
                failed = failed or pool - rejections < requirement.required
        progress.append((requirement.describe(), approvals, rejections, requirement.required))
    verdict = Verdict.REJECTED if failed else Verdict.APPROVED if met else Verdict.PENDING
    return Tally(verdict, tuple(progress))


def spend_hash(
    *, chain: str, sender: str, recipient: str, asset: str | None, amount: int, calldata: str
) -> str:
    """SHA-256 (hex) of the exact spend: canonical JSON, sorted keys, no spaces, UTF-8;
    addresses lower-cased (EVM addresses are case-insensitive; Solana ones are kept as given
    since base58 is case-sensitive), the amount in base units as a decimal string."""

    def norm(address: str) -> str:
        return address.lower() if address.startswith("0x") else address

    canonical = {
        "amount": str(amount),
        "asset": asset,
        "calldata": calldata.lower(),
        "chain": chain,
        "from": norm(sender),
        "to": norm(recipient),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vote_message(subject_id: str, spend: str, vote: Vote, nonce: str, expires: datetime) -> str:
    """The text an approver signs (UTF-8; Ed25519 over the bytes, or EIP-191 personal_sign)."""
    return "\n".join(
        (
            MESSAGE_HEADER,
            f"subject: {subject_id}",
            f"spend: {spend}",
            f"vote: {vote.value}",
            f"nonce: {nonce}",
            f"expires: {int(expires.timestamp())}",
        )
    )
