"""``/v1/policies``: policies with versions; every write is validated against its type.

Creating or replacing a policy goes through the plan machinery, which assigns the next version
and records the previous one in the history. An agent session reads the policies in force for
it (any scope covering it or one of its wallets), nothing else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from treasurer.domain.config import OrgConfig
from treasurer.domain.credentials import Principal
from treasurer.domain.errors import Conflict, Forbidden
from treasurer.domain.policies import Policy, make_policy
from treasurer.interfaces.http.deps import (
    Ctx,
    HttpContext,
    Manager,
    Pages,
    ReaderOrAgent,
    page_of,
    visible_or_404,
)
from treasurer.interfaces.http.org_edits import apply_edit, parse_scope, put_policy, remove_policy
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import policy_out, policy_version_out
from treasurer.wire import Page, PolicyIn, PolicyOut, PolicyReplace, PolicyVersionOut

router = APIRouter(prefix="/v1/policies", tags=["policies"], responses=COMMON)


def _policy(ctx: HttpContext, who: Principal, policy_id: str) -> Policy:
    found = ctx.config.policies.get(policy_id)
    visible_or_404(found is not None and ctx.view(who).policy(found), f"policy {policy_id!r}")
    assert found is not None
    return found


def _build(
    ctx: HttpContext, who: Principal, policy_id: str, body: PolicyIn | PolicyReplace
) -> Policy:
    """Validate the policy (schema and scope) and check the caller may attach it there."""
    config = ctx.config
    scope = parse_scope(config, body.scope)
    if not ctx.view(who).scope(scope):
        raise Forbidden(f"scope: this key may not attach policies to {scope}", field="scope")
    return make_policy(
        policy_id=policy_id,
        policy_type=body.type,
        scope=scope,
        params=body.params,
        mode=body.mode,
        description=body.description,
    )


@router.get("")
def list_policies(
    ctx: Ctx,
    who: ReaderOrAgent,
    pages: Pages,
    scope: Annotated[str | None, Query(description="only policies attached here")] = None,
) -> Page[PolicyOut]:
    """Policies the caller may see; for an agent session, those in force for it."""
    config, view = ctx.config, ctx.view(who)
    visible = [p for p in config.policies.values() if view.policy(p)]
    if scope is not None:
        wanted = parse_scope(config, scope)
        visible = [p for p in visible if p.scope == wanted]
    items, nxt = page_of(visible, lambda p: p.id, pages)
    return Page[PolicyOut](items=[policy_out(p) for p in items], next=nxt)


@router.get("/{policy_id}", responses=responses(404))
def get_policy(policy_id: str, ctx: Ctx, who: ReaderOrAgent) -> PolicyOut:
    return policy_out(_policy(ctx, who, policy_id))


@router.get("/{policy_id}/history", responses=responses(404))
def policy_history(policy_id: str, ctx: Ctx, who: ReaderOrAgent) -> list[PolicyVersionOut]:
    """Every version of the policy, oldest first, with when each was in force."""
    _policy(ctx, who, policy_id)
    return [policy_version_out(row) for row in ctx.governance.store.policy_history(policy_id)]


@router.post("", status_code=201, responses=responses(400, 404, 409))
def create_policy(body: PolicyIn, ctx: Ctx, who: Manager) -> PolicyOut:
    """Create a policy at version 1."""
    if body.id in ctx.config.policies:
        raise Conflict(f"policy {body.id!r} already exists; PUT it to change it", field="id")
    policy = _build(ctx, who, body.id, body)
    config = apply_edit(ctx.governance, who.actor, lambda c: put_policy(c, policy))
    return policy_out(config.policies[body.id])


@router.put("/{policy_id}", responses=responses(400, 404))
def replace_policy(policy_id: str, body: PolicyReplace, ctx: Ctx, who: Manager) -> PolicyOut:
    """Replace a policy; a changed policy gets the next version (the old one goes to history)."""
    current = _policy(ctx, who, policy_id)
    if not ctx.view(who).scope(current.scope):
        raise Forbidden(f"this key may not change policies attached to {current.scope}")
    policy = _build(ctx, who, policy_id, body)
    config: OrgConfig = apply_edit(ctx.governance, who.actor, lambda c: put_policy(c, policy))
    return policy_out(config.policies[policy_id])


@router.delete("/{policy_id}", status_code=204, responses=responses(404))
def delete_policy(policy_id: str, ctx: Ctx, who: Manager) -> None:
    """Remove a policy (its versions stay in the history)."""
    current = _policy(ctx, who, policy_id)
    if not ctx.view(who).scope(current.scope):
        raise Forbidden(f"this key may not remove policies attached to {current.scope}")
    apply_edit(ctx.governance, who.actor, lambda c: remove_policy(c, policy_id))
