"""The chain registry and fee valuation: which adapter serves a network, and what a fee costs
in USD (or that it cannot be known, which a fee limit treats as a denial)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

import treasurer
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.domain.errors import InvalidRequest
from treasurer.service.chain_registry import ChainRegistry, fee_usd_micros, native_asset

GWEI = 10**9


class NamedChain:
    """Just enough of a ``Chain`` for the registry: its network name."""

    def __init__(self, network: str) -> None:
        self.network = network


@pytest.fixture
def gov(sqlite_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    """Governance with the cross-wallet org (``ethereum:ETH`` has a manual price, max age 1h)."""
    with treasurer.open(sqlite_url, clock=clock) as governance:
        governance.apply(cross_wallet_org())
        yield governance


def test_registry_serves_registered_networks_only() -> None:
    """An unknown network is a clear ``chain_not_configured``; a misnamed adapter is refused."""
    evm = NamedChain("evm-local")
    registry = ChainRegistry({"evm-local": evm})  # type: ignore[dict-item]
    assert registry.get("evm-local") is evm
    assert "evm-local" in registry and registry.networks() == ["evm-local"]
    with pytest.raises(InvalidRequest) as raised:
        registry.get("base")
    assert raised.value.code == "chain_not_configured"
    with pytest.raises(ValueError, match="serves"):
        ChainRegistry({"base": evm})  # type: ignore[dict-item]


def test_fee_is_valued_at_the_native_price_rounded_up(
    gov: EmbeddedGovernance, clock: FakeClock
) -> None:
    """21,000 gas at 10 gwei with ETH at $3,000 is $0.63; a stale or missing price is unknown."""
    config = gov.cache.get()
    assert native_asset(config, "ethereum") is not None
    assert native_asset(config, "base") is None  # no native asset registered: fee unknown
    fee = 21_000 * 10 * GWEI
    assert fee_usd_micros(config, gov.store, "ethereum", fee, clock.now()) is None  # no price
    gov.set_price("ethereum:ETH", "3000.00")
    assert fee_usd_micros(config, gov.store, "ethereum", fee, clock.now()) == 630_000
    assert fee_usd_micros(config, gov.store, "ethereum", 1, clock.now()) == 1  # never rounds to 0
    clock.advance(hours=2)
    assert fee_usd_micros(config, gov.store, "ethereum", fee, clock.now()) is None  # stale
    assert fee_usd_micros(config, gov.store, "base", fee, clock.now()) is None
