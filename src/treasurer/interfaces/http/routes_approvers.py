"""``/v1/approvers``: the people (or second agents) who may approve payments.

Identities only: id, name, key and groups. A key change is a new approver, so a vote can always
be traced to the exact key that signed it; removing an approver keeps its record for the audit.
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.credentials import ApproverKind
from treasurer.interfaces.http.deps import Ctx, Manager, Pages, Reader, stored_page
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import approver_out
from treasurer.service.auth_access import require_org_wide
from treasurer.wire import ApproverIn, ApproverOut, ApproverPatch, Page

router = APIRouter(prefix="/v1/approvers", tags=["approvers"], responses=COMMON)


@router.get("")
def list_approvers(ctx: Ctx, who: Reader, pages: Pages) -> Page[ApproverOut]:
    """Current approvers (removed ones are kept but not listed)."""
    rows = ctx.credentials.store.list_approvers(pages.after, pages.limit + 1)
    items, nxt = stored_page(rows, lambda a: a.id, pages.limit)
    return Page[ApproverOut](items=[approver_out(a) for a in items], next=nxt)


@router.get("/{approver_id}", responses=responses(404))
def get_approver(approver_id: str, ctx: Ctx, who: Reader) -> ApproverOut:
    return approver_out(ctx.credentials.get_approver(approver_id))


@router.post("", status_code=201, responses=responses(400, 409))
def create_approver(body: ApproverIn, ctx: Ctx, who: Manager) -> ApproverOut:
    """Register an approver with an Ed25519 public key or an EVM address."""
    require_org_wide(who, "approvers")
    approver = ctx.credentials.add_approver(
        body.id, body.name, ApproverKind(body.kind), body.public_key, tuple(body.groups), who.actor
    )
    return approver_out(approver)


@router.patch("/{approver_id}", responses=responses(404, 409))
def update_approver(approver_id: str, body: ApproverPatch, ctx: Ctx, who: Manager) -> ApproverOut:
    """Rename an approver or change its groups."""
    require_org_wide(who, "approvers")
    groups = None if body.groups is None else tuple(body.groups)
    return approver_out(ctx.credentials.update_approver(approver_id, body.name, groups, who.actor))


@router.delete("/{approver_id}", responses=responses(404))
def delete_approver(approver_id: str, ctx: Ctx, who: Manager) -> ApproverOut:
    """Remove an approver: it can no longer vote; its record stays for the audit trail."""
    require_org_wide(who, "approvers")
    return approver_out(ctx.credentials.revoke_approver(approver_id, who.actor))
