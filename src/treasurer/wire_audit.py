"""The JSON shapes of ``POST /v1/audit/purge`` (retention) and ``GET /v1/audit/verify``,
shared by server, SDK and CLI.

Kept beside :mod:`treasurer.wire` rather than in it so the retention feature stays one small
module; the same rule holds: pydantic models only, no server code (an import-linter contract).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from treasurer.wire import Request


class AuditPurgeIn(Request):
    """Purge sealed audit events older than the retention (``settings.audit_retention_days``).

    ``before`` purges less: only events before it (it may not be later than retention
    allows). ``dry_run`` reports what would go and changes nothing."""

    before: datetime | None = Field(
        default=None, description="purge only events before this time (ISO 8601, with a zone)"
    )
    dry_run: bool = False


class AuditPurgeOut(BaseModel):
    """What a purge deleted (or would delete). ``count`` 0 and ``upto_seq`` null: nothing was
    old enough. ``checkpoint_seq`` is the signed checkpoint anchoring the remaining chain."""

    id: str | None
    dry_run: bool
    cutoff: datetime
    retention_days: int
    count: int
    first_seq: int | None
    upto_seq: int | None
    upto_hash: str | None
    checkpoint_seq: int | None


class AuditFindingOut(BaseModel):
    """One problem of the chain: what, where, and in words."""

    problem: str
    message: str
    seq: int | None = None
    id: int | None = None


class AuditVerificationOut(BaseModel):
    """The verdict on the live hash chain (``ok`` false names the first broken event)."""

    ok: bool
    events: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    #: The chain starts at event 1 (linked to the genesis hash).
    from_genesis: bool
    #: After a retention purge: the purged event the chain starts after, whose hash the
    #: signed anchor checkpoint vouches for (None: the chain starts at event 1).
    anchor_seq: int | None
    checkpoints: int
    signed_through: int | None
    unsigned_events: int
    unsealed_events: int
    key_ids: list[str]
    first_broken: AuditFindingOut | None
    checkpoint_problems: list[AuditFindingOut]
    checkpoint_problem_count: int
