"""Org files used by the scenario and contract tests, written as a finance team would."""

from __future__ import annotations

from typing import Any

W1 = "0x1111111111111111111111111111111111111111"
W2 = "0x2222222222222222222222222222222222222222"
W3 = "0x3333333333333333333333333333333333333333"
SHOP = "0x5555555555555555555555555555555555555555"


def usdc(chain: str) -> dict[str, Any]:
    return {
        "id": f"{chain}:USDC",
        "chain": chain,
        "symbol": "USDC",
        "decimals": 6,
        "address": "0x" + chain.encode().hex().ljust(40, "0")[:40],
        "stablecoin": True,
        "price": {"source": "fixed", "usd": "1.00"},
    }


def cross_wallet_org(
    *,
    agent_daily: str = "1000.00",
    department_daily: str = "20000.00",
    org_daily: str = "50000.00",
    vendors: tuple[str, str] = ("coinbase-cdp", "metamask"),
    chains: tuple[str, str] = ("base", "ethereum"),
) -> dict[str, Any]:
    """Agent ``agent_a`` with a daily budget and two wallets on two chains (two vendors)."""
    return {
        "version": 1,
        "org": {
            "id": "acme",
            "name": "Acme",
            "timezone": "America/New_York",
            "budgets": [{"window": "day", "limit_usd": org_daily}],
        },
        "assets": [
            usdc(chains[0]),
            usdc(chains[1]),
            {
                "id": "ethereum:ETH",
                "chain": "ethereum",
                "symbol": "ETH",
                "decimals": 18,
                "price": {"source": "manual", "max_age": "1h"},
            },
        ],
        "departments": [
            {
                "id": "ops",
                "name": "Operations",
                "budgets": [{"window": "day", "limit_usd": department_daily}],
            }
        ],
        "agents": [
            {
                "id": "agent_a",
                "name": "Agent A",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": agent_daily}],
                "wallets": [
                    {
                        "id": "w1",
                        "chain": chains[0],
                        "address": W1,
                        "custody": "external",
                        "vendor": vendors[0],
                    },
                    {
                        "id": "w2",
                        "chain": chains[1],
                        "address": W2,
                        "custody": "external",
                        "vendor": vendors[1],
                    },
                ],
            },
            {
                "id": "agent_b",
                "name": "Agent B",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": agent_daily}],
                "wallets": [
                    {
                        "id": "w3",
                        "chain": chains[0],
                        "address": W3,
                        "custody": "external",
                        "vendor": "privy",
                    }
                ],
            },
        ],
    }
