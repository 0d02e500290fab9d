"""Persistence of approval votes and the single-use nonces approvers sign.

Both writes that make a vote — consuming its nonce and recording the ballot — happen in one
transaction with the vote's audit event, so a vote is never half-recorded: either the nonce is
spent and the ballot and its audit event exist, or nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from treasurer.domain.approvals import Ballot
from treasurer.service.ports import AuditRecord


@dataclass(frozen=True, slots=True)
class IssuedNonce:
    """A nonce the server handed one approver for one authorization's vote."""

    nonce: str
    authorization_id: str
    approver_id: str
    expires_at: datetime


class CastResult(StrEnum):
    RECORDED = "recorded"
    NONCE_UNKNOWN = "nonce_unknown"  # never issued, or issued for another approver/spend
    NONCE_USED = "nonce_used"  # a replay
    NONCE_EXPIRED = "nonce_expired"
    ALREADY_VOTED = "already_voted"


class ApprovalStore(Protocol):
    def issue_nonce(self, issued: IssuedNonce, now: datetime) -> None: ...

    def cast(
        self,
        authorization_id: str,
        ballot: Ballot,
        nonce: str | None,
        audit: AuditRecord,
        now: datetime,
    ) -> CastResult:
        """Spend ``nonce`` (when given: it must have been issued for this authorization and
        this approver, unused and unexpired) and record ``ballot`` once per voter, with
        ``audit``, in one transaction. Anything but ``RECORDED`` leaves nothing written."""
        ...

    def ballots(self, authorization_id: str) -> list[Ballot]:
        """Every ballot on the authorization, in the order they were cast."""
        ...
