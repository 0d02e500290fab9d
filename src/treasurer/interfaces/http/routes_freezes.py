"""``/v1/freezes`` (the kill switch at any scope) and ``/v1/prices`` (manual asset prices).

A freeze takes effect on the next decision on every node (it bumps the config version). Finance
keys may freeze and unfreeze; a scoped key only inside its department.
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import Forbidden, NotFound
from treasurer.domain.facts import PriceQuote
from treasurer.domain.org import Scope, ScopeKind
from treasurer.interfaces.http.deps import (
    Ctx,
    Freezer,
    HttpContext,
    Manager,
    Pages,
    Reader,
    page_of,
)
from treasurer.interfaces.http.org_edits import parse_scope
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import price_out
from treasurer.service.auth_access import require_org_wide
from treasurer.wire import FreezeIn, FreezeOut, FrozenScopeOut, Page, PriceIn, PriceOut

router = APIRouter(tags=["freezes"], responses=COMMON)


def _scope(ctx: HttpContext, who: Principal, text: str) -> Scope:
    scope = parse_scope(ctx.config, text)
    if not ctx.view(who).scope(scope):
        raise Forbidden(f"scope: this key may not freeze or unfreeze {text}", field="scope")
    return scope


def _label(scope: Scope) -> str:
    return "org" if scope.kind is ScopeKind.ORG else str(scope)


@router.get("/v1/freezes")
def list_freezes(ctx: Ctx, who: Reader, pages: Pages) -> Page[FrozenScopeOut]:
    """Frozen scopes the caller may see (a scoped key: its own ones and an org-wide freeze)."""
    view = ctx.view(who)
    frozen = [_label(s) for s in ctx.config.frozen if s.kind is ScopeKind.ORG or view.scope(s)]
    items, nxt = page_of(frozen, lambda s: s, pages)
    return Page[FrozenScopeOut](items=[FrozenScopeOut(scope=s) for s in items], next=nxt)


@router.post("/v1/freezes", status_code=201, responses=responses(400, 404))
def freeze(body: FreezeIn, ctx: Ctx, who: Freezer) -> FreezeOut:
    """Freeze ``org``, ``department:<id>``, ``agent:<id>`` or ``wallet:<id>``. Idempotent."""
    scope = _scope(ctx, who, body.scope)
    changed = ctx.governance.freeze(str(scope), reason=body.reason, actor=who.actor)
    return FreezeOut(scope=_label(scope), frozen=True, changed=changed)


@router.delete("/v1/freezes/{scope}", responses=responses(400, 404))
def unfreeze(scope: str, ctx: Ctx, who: Freezer) -> FreezeOut:
    """Lift a freeze. Idempotent: unfreezing a scope that is not frozen changes nothing."""
    parsed = _scope(ctx, who, scope)
    changed = ctx.governance.unfreeze(str(parsed), actor=who.actor)
    return FreezeOut(scope=_label(parsed), frozen=False, changed=changed)


@router.get("/v1/prices/{asset_id}", responses=responses(404))
def get_price(asset_id: str, ctx: Ctx, who: Reader) -> PriceOut:
    """The price a decision would use now (a fixed peg, or the last manual price)."""
    asset = ctx.config.find_asset(asset_id, None)
    if asset is None:
        raise NotFound(f"asset {asset_id!r} is not registered")
    if asset.price_source == "fixed" and asset.fixed_price_atto is not None:
        quote = PriceQuote(asset.fixed_price_atto, ctx.governance.clock.now(), "fixed")
        return price_out(asset.id, quote)
    found = ctx.governance.store.price(asset.id)
    if found is None:
        raise NotFound(f"asset {asset.id} has no price yet; PUT one", code="price_missing")
    return price_out(asset.id, found)


@router.put("/v1/prices/{asset_id}", responses=responses(400, 404))
def set_price(asset_id: str, body: PriceIn, ctx: Ctx, who: Manager) -> PriceOut:
    """Set the manual USD price of an asset; it goes stale after the asset's max age."""
    require_org_wide(who, "prices")
    quote = ctx.governance.set_price(asset_id, body.price_usd, actor=who.actor)
    asset = ctx.config.find_asset(asset_id, None)
    return price_out(asset.id if asset else asset_id, quote)
