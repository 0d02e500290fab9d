"""Export an :class:`OrgConfig` as an org file, in the same format ``apply`` reads.

The promise is a round trip: ``make_plan(c, parse_org_file(export_org_file(c)))`` is empty, so
``treasurer export > org.yaml && treasurer apply -f org.yaml`` changes nothing. To keep the
file readable, a policy is folded back into its shorthand (``budgets:``, ``tiers:`` ...) only
when regenerating that shorthand gives back exactly the same policy; anything else is written
in full under ``policies:``. Operational state (status, freezes, versions) is not exported.

The result is plain data (dicts, lists, strings, ints, bools) in the file's key order; USD
amounts are quoted decimal strings. Callers dump it with ``yaml.safe_dump(..., sort_keys=False)``.
"""

from __future__ import annotations

from typing import Any

from treasurer.domain.config import OrgConfig, OrgSettings
from treasurer.domain.errors import InvalidState, OrgFileInvalid
from treasurer.domain.money import Asset, format_price
from treasurer.domain.org import Agent, Department, Scope, ScopeKind, Wallet
from treasurer.domain.plan import policy_dict
from treasurer.domain.policies import Policy
from treasurer.service.orgfile_parse import FORMAT_VERSION
from treasurer.service.orgfile_read import Reader
from treasurer.service.orgfile_sections import DEFAULT_PRICE_AGE_S, SECOND_UNITS
from treasurer.service.orgfile_shorthand import (
    SHORTHAND_KEYS,
    shorthand_key,
    shorthand_policies,
    shorthand_value,
)

_Blocks = dict[Scope, dict[str, Any]]
"""Shorthand keys to write on each org/department/agent/wallet entry."""


def export_org_file(config: OrgConfig) -> dict[str, Any]:
    """The org file describing ``config`` (see the module docstring for the round trip)."""
    _check_owners(config)
    blocks, full = _fold_policies(config)
    out: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "org": {
            "id": config.org.id,
            "name": config.org.name,
            "timezone": config.org.timezone,
            **_shorthand(blocks, Scope(ScopeKind.ORG, config.org.id)),
        },
        "settings": _settings(config.settings),
        "assets": [_asset(asset) for asset in config.assets.values()],
        "departments": [_department(d, blocks) for d in config.departments.values()],
        "agents": [_agent(config, agent, blocks) for agent in config.agents.values()],
    }
    if full:
        out["policies"] = [_policy(policy, config.org.id) for policy in full]
    return out


def _fold_policies(config: OrgConfig) -> tuple[_Blocks, list[Policy]]:
    """Split policies into shorthand blocks per scope and the rest, in config order."""
    targets = {
        ScopeKind.ORG: {config.org.id},
        ScopeKind.DEPARTMENT: set(config.departments),
        ScopeKind.AGENT: set(config.agents),
        ScopeKind.WALLET: set(config.wallets),
    }
    blocks: _Blocks = {}
    full: list[Policy] = []
    for policy in config.policies.values():
        key = _shorthand_key_of(policy)
        if key is None or policy.scope.id not in targets[policy.scope.kind]:
            full.append(policy)
            continue
        block = blocks.setdefault(policy.scope, {})
        if key == "budgets":
            block.setdefault("budgets", []).append(shorthand_value(policy))
        else:
            block[key] = shorthand_value(policy)
    return blocks, full


def _shorthand_key_of(policy: Policy) -> str | None:
    """The shorthand key that regenerates exactly ``policy``, or None if none does."""
    key = shorthand_key(policy)
    if key is None:
        return None
    value = shorthand_value(policy)
    block = {key: [value] if key == "budgets" else value}
    try:
        (regenerated,) = shorthand_policies(Reader("export"), policy.scope, block, "")
    except OrgFileInvalid:
        return None
    same = regenerated.id == policy.id and policy_dict(regenerated) == policy_dict(policy)
    return key if same else None


def _shorthand(blocks: _Blocks, scope: Scope) -> dict[str, Any]:
    block = blocks.get(scope, {})
    return {key: block[key] for key in SHORTHAND_KEYS if key in block}


def _settings(settings: OrgSettings) -> dict[str, Any]:
    days = settings.audit_retention_days
    return {
        "on_decommission": list(settings.on_decommission),
        "on_breach": list(settings.on_breach),
        "finance_contacts": list(settings.finance_contacts),
        "audit_retention": f"{days // 365}y" if days % 365 == 0 else f"{days}d",
        "authorization_ttl": _seconds_text(settings.authorization_ttl_s),
    }


def _seconds_text(seconds: int) -> str:
    """The largest whole unit: 900 -> ``15m``, 3600 -> ``1h``, 90 -> ``90s``."""
    for unit, size in sorted(SECOND_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _price_text(atto: int) -> str:
    """A price with at least cents, as people write it: ``1.00``, ``1.50``, ``0.9998``."""
    text = format_price(atto)
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _asset(asset: Asset) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": asset.id,
        "chain": asset.chain,
        "symbol": asset.symbol,
        "decimals": asset.decimals,
    }
    if asset.address is not None:
        out["address"] = asset.address
    price: dict[str, Any] = {"source": asset.price_source}
    if asset.fixed_price_atto is not None:
        price["usd"] = _price_text(asset.fixed_price_atto)
    if asset.price_source != "fixed" or asset.max_price_age_s != DEFAULT_PRICE_AGE_S:
        price["max_age"] = _seconds_text(asset.max_price_age_s)
    out["price"] = price
    if asset.price_source == "fixed":
        out["stablecoin"] = True  # a fixed peg is only accepted on a declared stablecoin
    return out


def _department(department: Department, blocks: _Blocks) -> dict[str, Any]:
    out: dict[str, Any] = {"id": department.id, "name": department.name}
    if department.parent_id is not None:
        out["parent"] = department.parent_id
    out.update(_shorthand(blocks, Scope(ScopeKind.DEPARTMENT, department.id)))
    return out


def _agent(config: OrgConfig, agent: Agent, blocks: _Blocks) -> dict[str, Any]:
    out: dict[str, Any] = {"id": agent.id, "name": agent.name}
    if agent.department_id is not None:
        out["department"] = agent.department_id
    out.update(_shorthand(blocks, Scope(ScopeKind.AGENT, agent.id)))
    wallets = [w for w in config.wallets.values() if w.agent_id == agent.id]
    out["wallets"] = [_wallet(wallet, blocks) for wallet in wallets]
    return out


def _wallet(wallet: Wallet, blocks: _Blocks) -> dict[str, Any]:
    return {
        "id": wallet.id,
        "chain": wallet.chain,
        "address": wallet.address,
        "custody": wallet.custody.value,
        "vendor": wallet.vendor,
        **_shorthand(blocks, Scope(ScopeKind.WALLET, wallet.id)),
    }


def _check_owners(config: OrgConfig) -> None:
    """Wallets are written under their agent, so a wallet without one cannot be exported."""
    for wallet in config.wallets.values():
        if wallet.agent_id not in config.agents:
            raise InvalidState(
                f"wallet {wallet.id} belongs to agent {wallet.agent_id!r}, which does not "
                "exist; it cannot be written to an org file",
                field="wallets",
            )


def _policy(policy: Policy, org_id: str) -> dict[str, Any]:
    scope = "org" if policy.scope == Scope(ScopeKind.ORG, org_id) else str(policy.scope)
    out: dict[str, Any] = {
        "id": policy.id,
        "type": policy.type,
        "scope": scope,
        "mode": policy.mode.value,
    }
    if policy.description:
        out["description"] = policy.description
    out["params"] = policy.params.model_dump(mode="json", exclude_defaults=True)
    return out
