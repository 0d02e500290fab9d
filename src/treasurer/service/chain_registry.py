"""Which :class:`~treasurer.service.chain_ports.Chain` serves a network, and what its fee costs.

The registry holds ``Chain`` Protocol objects only; the composition root (or a test) builds the
concrete adapters (``LocalEvm().chain``, ``SolanaLocal()``, ``EvmChain.over_rpc``) and hands them
in, so the payment pipeline never imports an adapter.

Fees are paid in the network's native coin, so valuing a fee needs that coin's price. The
native asset is the org's asset on that chain with no address (``evm-local:ETH``); its price is
read like any other (a fixed peg, or the admin-set price while it is fresh). When there is no
such asset or no usable price the fee's USD value is *unknown* (``None``), never zero: a
``fee_limit`` policy then denies with ``fee_unknown`` (fail closed, as the decision already does).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import InvalidRequest
from treasurer.domain.facts import PriceQuote
from treasurer.domain.money import Asset, value_usd_micros
from treasurer.service.chain_ports import Chain
from treasurer.service.ports import Store


class ChainRegistry:
    """Network name → chain adapter."""

    def __init__(self, chains: Mapping[str, Chain]) -> None:
        for name, chain in chains.items():
            if chain.network != name:
                raise ValueError(f"chain registered as {name!r} serves {chain.network!r}")
        self._chains = dict(chains)

    def get(self, network: str) -> Chain:
        """The chain of ``network``; ``chain_not_configured`` when this node has none."""
        chain = self._chains.get(network)
        if chain is None:
            known = ", ".join(sorted(self._chains)) or "none"
            raise InvalidRequest(
                f"network {network!r} has no chain connection on this node (configured: {known})",
                field="chain",
                code="chain_not_configured",
            )
        return chain

    def networks(self) -> list[str]:
        return sorted(self._chains)

    def __contains__(self, network: object) -> bool:
        return network in self._chains


def native_asset(config: OrgConfig, network: str) -> Asset | None:
    """The org's asset for ``network``'s native coin (the one without a token address)."""
    found = [a for a in config.assets.values() if a.chain == network and a.is_native]
    return sorted(found, key=lambda a: a.id)[0] if found else None


def usable_price(asset: Asset, store: Store, now: datetime) -> PriceQuote | None:
    """The asset's price if it may be used now: a fixed peg, or a manual price not yet stale."""
    if asset.price_source == "fixed" and asset.fixed_price_atto is not None:
        return PriceQuote(asset.fixed_price_atto, now, "fixed")
    quote = store.price(asset.id)
    if quote is None or quote.price_atto <= 0:
        return None
    if (now - quote.as_of).total_seconds() > asset.max_price_age_s:
        return None
    return quote


def fee_usd_micros(
    config: OrgConfig, store: Store, network: str, fee_native: int, now: datetime
) -> int | None:
    """USD micros of ``fee_native`` base units of ``network``'s coin (rounded up), or None."""
    asset = native_asset(config, network)
    if asset is None:
        return None
    quote = usable_price(asset, store, now)
    if quote is None:
        return None
    return value_usd_micros(fee_native, asset.decimals, quote.price_atto)
