"""``/v1/wallets``: register, list and remove wallets; balances come with the chain adapters.

An agent session sees only its own agent's wallets; a scoped key those of its department.
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.credentials import Principal
from treasurer.domain.org import Custody, Wallet
from treasurer.interfaces.http.deps import (
    Ctx,
    HttpContext,
    Manager,
    Pages,
    ReaderOrAgent,
    page_of,
    visible_or_404,
)
from treasurer.interfaces.http.org_edits import add_wallet, apply_edit, remove_wallet
from treasurer.interfaces.http.problems import COMMON, NotImplementedYet, responses
from treasurer.interfaces.http.views import wallet_out
from treasurer.wire import Page, WalletIn, WalletOut

router = APIRouter(prefix="/v1/wallets", tags=["wallets"], responses=COMMON)


def _wallet(ctx: HttpContext, who: Principal, wallet_id: str) -> Wallet:
    found = ctx.config.wallets.get(wallet_id)
    visible_or_404(found is not None and ctx.view(who).wallet(wallet_id), f"wallet {wallet_id!r}")
    assert found is not None
    return found


@router.get("")
def list_wallets(ctx: Ctx, who: ReaderOrAgent, pages: Pages) -> Page[WalletOut]:
    """Wallets the caller may see; an agent session sees its own."""
    config, view = ctx.config, ctx.view(who)
    visible = [w for w in config.wallets.values() if view.wallet(w.id)]
    items, nxt = page_of(visible, lambda w: w.id, pages)
    return Page[WalletOut](items=[wallet_out(w, config) for w in items], next=nxt)


@router.get("/{wallet_id}", responses=responses(404))
def get_wallet(wallet_id: str, ctx: Ctx, who: ReaderOrAgent) -> WalletOut:
    return wallet_out(_wallet(ctx, who, wallet_id), ctx.config)


@router.post("", status_code=201, responses=responses(400, 404, 409))
def create_wallet(body: WalletIn, ctx: Ctx, who: Manager) -> WalletOut:
    """Register a wallet for an agent (governance mode: ``custody: external`` + vendor)."""
    visible_or_404(ctx.view(who).agent(body.agent), f"agent {body.agent!r}")
    custody = Custody(body.custody)
    vendor = body.vendor or ("treasurer" if custody is Custody.LOCAL else "other")
    wallet = Wallet(body.id, body.agent, body.chain, body.address, custody, vendor)
    config = apply_edit(ctx.governance, who.actor, lambda c: add_wallet(c, wallet))
    return wallet_out(config.wallets[body.id], config)


@router.delete("/{wallet_id}", status_code=204, responses=responses(404, 409))
def delete_wallet(wallet_id: str, ctx: Ctx, who: Manager) -> None:
    """Remove a wallet with no policies attached (its history stays in the audit trail)."""
    _wallet(ctx, who, wallet_id)
    apply_edit(ctx.governance, who.actor, lambda c: remove_wallet(c, wallet_id))


@router.get("/{wallet_id}/balance", responses=responses(404, 501))
def wallet_balance(wallet_id: str, ctx: Ctx, who: ReaderOrAgent) -> dict[str, str]:
    """On-chain balance of a wallet. Not available yet: it needs the chain adapters (501)."""
    wallet = _wallet(ctx, who, wallet_id)
    raise NotImplementedYet(
        f"balances of {wallet.chain} wallets are not available yet: reading them needs the "
        "chain adapters, which a later release adds"
    )
