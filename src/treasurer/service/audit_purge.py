"""Retention: delete sealed audit events older than the org's ``audit_retention_days``.

Why it is a job and not a background sweep: deleting evidence should be a deliberate, audited
act (``treasurer audit purge``, ``POST /v1/audit/purge``), run when the operator decides, e.g.
from cron after taking an export for the archive.

How the chain survives it: the purge deletes a *prefix* of the chain (every event up to
``upto_seq``, all older than the cutoff), after verifying that prefix and signing a checkpoint
over its last event. That checkpoint is the chain's new *anchor*: the first remaining event
links to its hash, and verification (live and offline, where the export carries it as an
``anchor`` line) starts there. The checkpoint, the ``audit_purges`` record, the
``audit.purged`` event and the deletes are one transaction.

Never more than retention allows: ``before`` can only move the cutoff earlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from treasurer.domain.audit_chain import Checkpoint, checkpoint_message
from treasurer.domain.config import OrgSettings
from treasurer.domain.errors import InvalidRequest
from treasurer.service.audit import AuditTrail, SigningKeyMissing
from treasurer.service.audit_ports import PurgeRecord
from treasurer.service.governance import GovernanceCore, new_id
from treasurer.service.ports import AuditRecord

#: The event that records a purge, in the chain that remains.
PURGED_KIND = "audit.purged"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PurgeBeyondRetention(InvalidRequest):
    """``before`` would delete events the retention setting says to keep."""

    code = "audit_purge_beyond_retention"


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge deleted (or, with ``dry_run``, would delete).

    ``count`` is 0 and ``upto_seq`` None when nothing is old enough; ``id`` and
    ``checkpoint_seq`` are None for a dry run or when nothing was purged.
    """

    dry_run: bool
    cutoff: datetime
    retention_days: int
    count: int
    first_seq: int | None
    upto_seq: int | None
    upto_hash: str | None
    id: str | None = None
    checkpoint_seq: int | None = None


def purge_audit(
    trail: AuditTrail,
    retention_days: int,
    *,
    actor: str,
    before: datetime | None = None,
    dry_run: bool = False,
) -> PurgeResult:
    """Purge sealed events older than ``retention_days`` (and older than ``before`` when
    given); see the module docstring. Raises :class:`PurgeBeyondRetention` when ``before`` is
    later than retention allows, :class:`~treasurer.service.audit.SigningKeyMissing` without
    the deployment's key (a purge without a signed anchor could not be verified), and
    :class:`~treasurer.service.audit.AuditChainBroken` when the events to purge do not verify
    (destroying them would hide the tampering)."""
    now = trail.clock.now()
    limit = now - timedelta(days=retention_days)
    if before is not None and before > limit:
        raise PurgeBeyondRetention(
            f"before: {before.isoformat()} is later than retention allows; events are kept "
            f"{retention_days} days (settings.audit_retention_days), so the latest allowed "
            f"is {limit.isoformat()}",
            field="before",
        )
    cutoff = before if before is not None else limit
    if not dry_run and trail.signer is None:
        raise SigningKeyMissing(
            "no audit signing key: a purge signs a checkpoint anchoring what remains"
        )
    trail.settle()
    span = trail.log.purge_span(_micros(cutoff))
    if span is None:
        return PurgeResult(dry_run, cutoff, retention_days, 0, None, None, None)
    planned = PurgeResult(
        dry_run, cutoff, retention_days, span.count, span.first_seq, span.upto_seq, span.upto_hash
    )
    if dry_run:
        return planned
    signer = trail.signer
    assert signer is not None  # checked above
    trail.verify_range(span.upto_seq, purpose="purged")
    at_us = _micros(now)
    message = checkpoint_message(span.upto_seq, span.upto_hash, at_us, signer.key_id)
    checkpoint = Checkpoint(
        span.upto_seq,
        span.upto_hash,
        at_us,
        signer.key_id,
        signer.public_key,
        signer.sign(message).hex(),
    )
    record = PurgeRecord(
        id=new_id("apg"),
        at_us=at_us,
        actor=actor,
        upto_seq=span.upto_seq,
        upto_hash=span.upto_hash,
        count=span.count,
        cutoff_us=_micros(cutoff),
    )
    event = AuditRecord(
        kind=PURGED_KIND,
        actor=actor,
        subject=record.id,
        payload={
            "count": record.count,
            "first_seq": span.first_seq,
            "upto_seq": record.upto_seq,
            "upto_hash": record.upto_hash,
            "cutoff_us": record.cutoff_us,
            "retention_days": retention_days,
            "checkpoint_seq": record.checkpoint_seq,
        },
    )
    anchor = trail.log.purge(record, checkpoint, event)
    return PurgeResult(
        False,
        cutoff,
        retention_days,
        record.count,
        span.first_seq,
        record.upto_seq,
        record.upto_hash,
        record.id,
        anchor.seq,
    )


def retention_days_of(governance: GovernanceCore) -> int:
    """The org's ``settings.audit_retention_days`` (the default, 7 years, before any org file
    was applied)."""
    config = governance.cache.peek()
    settings = config.settings if config is not None else OrgSettings()
    return settings.audit_retention_days


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
