"""``POST /v1/audit/purge``: the retention job over HTTP, admin keys only.

Deleting evidence is the most destructive thing the audit API does, so it needs ``manage``
(admin keys) and an unscoped key, and it is itself audited (``audit.purged``). Errors are
problems with stable codes: ``audit_purge_beyond_retention`` (400, ``before`` later than
retention allows), ``audit_chain_broken`` (409, the events to purge do not verify),
``audit_purge_conflict`` (409, another purge ran at the same time),
``audit_signing_key_missing`` (503, the server has no key to sign the anchor) and
``not_implemented`` (501, a server built without the audit trail).
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.errors import InvalidRequest
from treasurer.interfaces.http.deps import Ctx, Manager
from treasurer.interfaces.http.problems import COMMON, NotImplementedYet, responses
from treasurer.service.audit import audit_of
from treasurer.service.audit_purge import PurgeResult, purge_audit, retention_days_of
from treasurer.service.auth_access import require_org_wide
from treasurer.wire_audit import AuditPurgeIn, AuditPurgeOut

router = APIRouter(tags=["reports"], responses=COMMON)


@router.post("/v1/audit/purge", responses=responses(400, 409, 501, 503))
def purge(ctx: Ctx, who: Manager, body: AuditPurgeIn | None = None) -> AuditPurgeOut:
    """Delete sealed audit events older than ``settings.audit_retention_days``.

    First signs a checkpoint over the last purged event (the anchor the remaining chain
    starts from), in the same transaction as the delete, so ``GET /v1/audit/verify`` and an
    offline verify of a new export still pass. ``dry_run`` changes nothing."""
    require_org_wide(who, "the audit log")
    given = body or AuditPurgeIn()
    if given.before is not None and given.before.tzinfo is None:
        raise InvalidRequest("before: give a time zone (e.g. 2026-04-01T00:00:00Z)", field="before")
    trail = audit_of(ctx.governance)
    if trail is None:
        raise NotImplementedYet("this server was built without the audit trail")
    result = purge_audit(
        trail,
        retention_days_of(ctx.governance),
        actor=who.actor,
        before=given.before,
        dry_run=given.dry_run,
    )
    return audit_purge_out(result)


def audit_purge_out(result: PurgeResult) -> AuditPurgeOut:
    """The wire shape of a purge (also what the local CLI prints)."""
    return AuditPurgeOut(
        id=result.id,
        dry_run=result.dry_run,
        cutoff=result.cutoff,
        retention_days=result.retention_days,
        count=result.count,
        first_seq=result.first_seq,
        upto_seq=result.upto_seq,
        upto_hash=result.upto_hash,
        checkpoint_seq=result.checkpoint_seq,
    )
