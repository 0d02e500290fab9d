"""``/v1/wallets``: register, list and remove wallets, and read their on-chain balances.

An agent session sees only its own agent's wallets; a scoped key those of its department.

A custodial wallet (``custody: local``) registered without an address gets a new key from
the vault, so the key is born where it will be used and never crosses the API. One registered
with an address must name a key the vault already holds (``key_not_in_vault`` otherwise):
Treasurer could never sign for it, and every payment from it would fail at signing time.
"""

from __future__ import annotations

from fastapi import APIRouter

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import Conflict, InvalidRequest, TreasurerError
from treasurer.domain.facts import normalize_address
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
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views import wallet_out
from treasurer.interfaces.http.views_payments import asset_balance_out
from treasurer.wire import AssetBalanceOut, Page, WalletBalanceOut, WalletIn, WalletOut

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


@router.post("", status_code=201, responses=responses(400, 404, 409, 503))
def create_wallet(body: WalletIn, ctx: Ctx, who: Manager) -> WalletOut:
    """Register a wallet for an agent: ``custody: external`` with its address and vendor
    (governance mode), or ``custody: local`` (Treasurer holds the key; omit ``address`` to
    have the vault create one)."""
    visible_or_404(ctx.view(who).agent(body.agent), f"agent {body.agent!r}")
    custody = Custody(body.custody)
    vendor = body.vendor or ("treasurer" if custody is Custody.LOCAL else "other")
    if custody is Custody.EXTERNAL and body.address is None:
        raise InvalidRequest(
            "address: required for an external wallet (Treasurer creates addresses only for "
            "custody local wallets, whose keys it holds)",
            field="address",
        )
    # Every check that does not need the key runs first, so a refused request never leaves
    # a fresh, unused key behind in the vault.
    draft = Wallet(body.id, body.agent, body.chain, body.address or "", custody, vendor)
    add_wallet(ctx.config, draft)
    address = _custodial_address(ctx, body) if custody is Custody.LOCAL else body.address
    assert address is not None
    wallet = Wallet(body.id, body.agent, body.chain, address, custody, vendor)
    config = apply_edit(ctx.governance, who.actor, lambda c: add_wallet(c, wallet))
    return wallet_out(config.wallets[body.id], config)


def _custodial_address(ctx: HttpContext, body: WalletIn) -> str:
    """A new vault key for ``body.chain``'s family, or the given address if the vault has it."""
    payments = ctx.require_payments()
    family = payments.chains.get(body.chain).family  # chain_not_configured if not reachable
    if body.address is None:
        return payments.vault.create_key(family)
    wanted = normalize_address(body.address)
    held = {
        normalize_address(address) for kind, address in payments.vault.addresses() if kind == family
    }
    if wanted not in held:
        raise Conflict(
            f"address: {body.address} is not a {family} key in this server's vault; omit "
            "address to have Treasurer create the key, or register the wallet with custody "
            "external",
            field="address",
            code="key_not_in_vault",
        )
    return body.address


@router.delete("/{wallet_id}", status_code=204, responses=responses(404, 409))
def delete_wallet(wallet_id: str, ctx: Ctx, who: Manager) -> None:
    """Remove a wallet with no policies attached (its history stays in the audit trail)."""
    _wallet(ctx, who, wallet_id)
    apply_edit(ctx.governance, who.actor, lambda c: remove_wallet(c, wallet_id))


@router.get("/{wallet_id}/balance", responses=responses(400, 404, 503))
def wallet_balance(wallet_id: str, ctx: Ctx, who: ReaderOrAgent) -> WalletBalanceOut:
    """What the wallet holds on its chain now, for every org asset on that chain.

    One asset that cannot be read (say, a token not deployed on this chain) shows its
    ``error``; a chain that does not answer fails the whole call (503, retry later).
    """
    wallet = _wallet(ctx, who, wallet_id)
    if ctx.payments is None:
        # Not payments_not_configured (503): reading a balance needs only a chain connection,
        # and "this node reaches no chain" is the same answer as for any unreachable network.
        raise InvalidRequest(
            f"network {wallet.chain!r} has no chain connection on this node: the server runs "
            "without chains (governance mode), so it reads no balances",
            field="chain",
            code="chain_not_configured",
        )
    chain = ctx.payments.chains.get(wallet.chain)  # chain_not_configured if not this one
    assets = sorted(
        (a for a in ctx.config.assets.values() if a.chain == wallet.chain),
        key=lambda a: (not a.is_native, a.id),
    )
    balances: list[AssetBalanceOut] = []
    for asset in assets:
        try:
            units: int | None = chain.balance(wallet.address, asset.address)
            error = None
        except TreasurerError as exc:
            if exc.transient:
                raise
            units, error = None, f"{exc.code}: {exc.message}"
        balances.append(asset_balance_out(asset, units, error))
    return WalletBalanceOut(
        wallet=wallet.id, chain=wallet.chain, address=wallet.address, balances=balances
    )
