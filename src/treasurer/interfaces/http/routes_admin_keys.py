"""``/v1/admin-keys``: API keys for people, with a role and an optional department scope.

Only an org-wide key may see or manage keys. The token is returned once, at creation. The last
active org-wide admin key cannot be revoked, so an org cannot lock itself out.
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.credentials import Role
from treasurer.domain.errors import NotFound
from treasurer.interfaces.http.deps import Ctx, Manager, Pages, Reader, stored_page
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import key_created, key_out
from treasurer.service.auth_access import require_org_wide
from treasurer.wire import AdminKeyCreated, AdminKeyIn, AdminKeyOut, Page

router = APIRouter(prefix="/v1/admin-keys", tags=["admin keys"], responses=COMMON)


@router.get("")
def list_keys(ctx: Ctx, who: Reader, pages: Pages) -> Page[AdminKeyOut]:
    """Every admin key, active or revoked (never a token or its hash)."""
    require_org_wide(who, "admin keys")
    rows = ctx.credentials.store.list_admin_keys(pages.after, pages.limit + 1)
    items, nxt = stored_page(rows, lambda k: k.id, pages.limit)
    return Page[AdminKeyOut](items=[key_out(k) for k in items], next=nxt)


@router.get("/{key_id}", responses=responses(404))
def get_key(key_id: str, ctx: Ctx, who: Reader) -> AdminKeyOut:
    require_org_wide(who, "admin keys")
    return key_out(ctx.credentials.get_key(key_id))


@router.post("", status_code=201, responses=responses(400, 404))
def create_key(body: AdminKeyIn, ctx: Ctx, who: Manager) -> AdminKeyCreated:
    """A new key; its token is in this response only."""
    require_org_wide(who, "admin keys")
    if body.department is not None and body.department not in ctx.config.departments:
        raise NotFound(f"department: {body.department!r} does not exist", field="department")
    key, token = ctx.credentials.create_key(body.name, Role(body.role), body.department, who.actor)
    return key_created(key, token)


@router.delete("/{key_id}", responses=responses(404, 409))
def revoke_key(key_id: str, ctx: Ctx, who: Manager) -> AdminKeyOut:
    """Revoke a key; it fails from the next request on."""
    require_org_wide(who, "admin keys")
    return key_out(ctx.credentials.revoke_key(key_id, who.actor))
