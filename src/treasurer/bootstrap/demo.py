"""The demo org of ``treasurer init --demo``: the packaged example plus custodial wallets.

The packaged ``treasurer/examples/org.yaml`` stays a plain org file that loads on its own (and
that tests and the docs use): it only names external wallets on public chains. ``init --demo``
extends it in code with what needs this node's vault and its embedded chains:

- the demo stablecoin (DUSD, ``stablecoin: true``, fixed at $1) and the native coin (manual
  price) on ``evm-local`` and ``solana-local``;
- two custodial wallets of ``procurement_bot``, ``pb-evm-local`` and ``pb-solana-local``,
  whose keys were just created in the vault;
- what lets the agent pay from them: both chains and DUSD allowed at the org and the agent,
  and wallet-level tiers. A payment up to $50 executes at once (instant), up to $200 executes
  and notifies, above $200 is denied by the agent's per-transaction maximum, and everything
  counts against its $800 daily budget across all its wallets.
"""

from __future__ import annotations

import copy
from importlib import resources
from typing import Any, Final

from treasurer.adapters.yaml_files import load_org_text
from treasurer.bootstrap.chains import (
    DEMO_TOKEN_DECIMALS,
    DEMO_TOKEN_SYMBOL,
    EVM_DEMO_TOKEN,
    SOLANA_DEMO_MINT,
)

DEMO_AGENT: Final = "procurement_bot"
#: Demo agents that get a session token at ``init --demo``.
DEMO_AGENTS: Final = ("procurement_bot", "infra_bot", "ads_bot")
EVM_WALLET: Final = "pb-evm-local"
SOLANA_WALLET: Final = "pb-solana-local"
#: Wallet-level tiers of the custodial demo wallets (the agent's $200 maximum caps notify).
DEMO_TIERS: Final = {"instant_max_usd": "50.00", "notify_max_usd": "200.00"}
EMBEDDED: Final = ("evm-local", "solana-local")


def packaged_demo_org() -> dict[str, object]:
    """The packaged example org (``treasurer/examples/org.yaml``), as loaded from YAML."""
    text = resources.files("treasurer").joinpath("examples/org.yaml").read_text("utf-8")
    return load_org_text(text, source="examples/org.yaml")


def demo_assets() -> list[dict[str, object]]:
    """DUSD (fixed $1) and the native coin (manual price) on both embedded chains."""
    dusd = {
        "symbol": DEMO_TOKEN_SYMBOL,
        "decimals": DEMO_TOKEN_DECIMALS,
        "stablecoin": True,
        "price": {"source": "fixed", "usd": "1.00"},
    }
    manual = {"source": "manual", "max_age": "1h"}
    return [
        {"id": f"evm-local:{DEMO_TOKEN_SYMBOL}", "chain": "evm-local", "address": EVM_DEMO_TOKEN}
        | dusd,
        {"id": "evm-local:ETH", "chain": "evm-local", "symbol": "ETH", "decimals": 18}
        | {"price": dict(manual)},
        {
            "id": f"solana-local:{DEMO_TOKEN_SYMBOL}",
            "chain": "solana-local",
            "address": SOLANA_DEMO_MINT,
        }
        | dusd,
        {"id": "solana-local:SOL", "chain": "solana-local", "symbol": "SOL", "decimals": 9}
        | {"price": dict(manual)},
    ]


def custodial_demo_org(
    evm_address: str, solana_address: str, base: dict[str, object] | None = None
) -> dict[str, Any]:
    """The demo org with ``procurement_bot``'s custodial wallets at these vault addresses.

    ``base`` defaults to the packaged example; it is copied, never changed.
    """
    org: dict[str, Any] = copy.deepcopy(base if base is not None else packaged_demo_org())
    org.setdefault("assets", []).extend(demo_assets())
    _allow(org["org"])
    agent = next(a for a in org["agents"] if a["id"] == DEMO_AGENT)
    _allow(agent)
    wallet = {"custody": "local", "vendor": "treasurer", "tiers": dict(DEMO_TIERS)}
    agent.setdefault("wallets", []).extend(
        [
            {"id": EVM_WALLET, "chain": "evm-local", "address": evm_address} | wallet,
            {"id": SOLANA_WALLET, "chain": "solana-local", "address": solana_address} | wallet,
        ]
    )
    return org


def _allow(scope: dict[str, Any]) -> None:
    """Add the embedded chains and DUSD to a scope's allow-lists, where it has them.

    A scope without an ``allowed_chains`` (or ``allowed_assets``) list does not restrict
    chains (assets) at all, so there is nothing to add.
    """
    if "allowed_chains" in scope:
        scope["allowed_chains"] = [*scope["allowed_chains"], *EMBEDDED]
    if "allowed_assets" in scope:
        scope["allowed_assets"] = [*scope["allowed_assets"], DEMO_TOKEN_SYMBOL]
