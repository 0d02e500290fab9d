"""Plans: the difference between the current config and a desired one.

``apply`` is declarative and idempotent: it computes a :class:`Plan` (what will be created,
changed, removed), shows it, and only then writes it. Applying the same file twice yields an
empty plan. Operational state (agent and wallet status, freezes, prices) is not part of the org
file and is never changed by a plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from treasurer.domain.config import OrgConfig, OrgSettings
from treasurer.domain.money import Asset, format_price
from treasurer.domain.org import Agent, Department, Org, Wallet
from treasurer.domain.policies import Policy

OBJECT_KINDS = ("org", "settings", "department", "agent", "wallet", "asset", "policy")


def org_dict(org: Org) -> dict[str, Any]:
    return {"id": org.id, "name": org.name, "timezone": org.timezone}


def settings_dict(settings: OrgSettings) -> dict[str, Any]:
    return {
        "on_decommission": list(settings.on_decommission),
        "on_breach": list(settings.on_breach),
        "finance_contacts": list(settings.finance_contacts),
        "audit_retention_days": settings.audit_retention_days,
        "authorization_ttl_s": settings.authorization_ttl_s,
    }


def department_dict(department: Department) -> dict[str, Any]:
    return {"id": department.id, "name": department.name, "parent": department.parent_id}


def agent_dict(agent: Agent) -> dict[str, Any]:
    return {"id": agent.id, "name": agent.name, "department": agent.department_id}


def wallet_dict(wallet: Wallet) -> dict[str, Any]:
    return {
        "id": wallet.id,
        "agent": wallet.agent_id,
        "chain": wallet.chain,
        "address": wallet.address,
        "custody": wallet.custody.value,
        "vendor": wallet.vendor,
    }


def asset_dict(asset: Asset) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": asset.id,
        "chain": asset.chain,
        "symbol": asset.symbol,
        "decimals": asset.decimals,
        "address": asset.address,
        "price_source": asset.price_source,
        "max_price_age_s": asset.max_price_age_s,
    }
    if asset.fixed_price_atto is not None:
        out["price_usd"] = format_price(asset.fixed_price_atto)
    return out


def policy_dict(policy: Policy) -> dict[str, Any]:
    """Declarative content of a policy (version excluded: it is derived, not declared)."""
    return {
        "id": policy.id,
        "type": policy.type,
        "scope": str(policy.scope),
        "mode": policy.mode.value,
        "params": policy.params_dict(),
        "description": policy.description,
    }


@dataclass(frozen=True, slots=True)
class Change:
    """One line of a plan: ``create``, ``update`` or ``delete`` of one object."""

    action: str
    kind: str
    id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    def summary(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        return f"{sign} {self.kind} {self.id}"

    def changed_fields(self) -> list[str]:
        if self.before is None or self.after is None:
            return []
        keys = set(self.before) | set(self.after)
        return sorted(k for k in keys if self.before.get(k) != self.after.get(k))


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``apply`` will do; ``desired`` carries the config with policy versions bumped."""

    changes: tuple[Change, ...]
    desired: OrgConfig
    previous: OrgConfig | None = field(default=None)

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0}
        for change in self.changes:
            out[change.action] += 1
        return out


def _diff_maps(
    kind: str, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[Change]:
    changes: list[Change] = []
    for ident in sorted(set(before) | set(after)):
        old, new = before.get(ident), after.get(ident)
        if old is None:
            changes.append(Change("create", kind, ident, None, new))
        elif new is None:
            changes.append(Change("delete", kind, ident, old, None))
        elif old != new:
            changes.append(Change("update", kind, ident, old, new))
    return changes


def _keep_operational_state(current: OrgConfig | None, desired: OrgConfig) -> OrgConfig:
    """Carry status, freezes and policy versions over from the current config."""
    if current is None:
        return desired
    agents = {
        ident: replace(agent, status=current.agents[ident].status)
        if ident in current.agents
        else agent
        for ident, agent in desired.agents.items()
    }
    wallets = {
        ident: replace(wallet, status=current.wallets[ident].status)
        if ident in current.wallets
        else wallet
        for ident, wallet in desired.wallets.items()
    }
    policies: dict[str, Policy] = {}
    for ident, policy in desired.policies.items():
        old = current.policies.get(ident)
        if old is None:
            policies[ident] = replace(policy, version=1)
        elif policy_dict(old) == policy_dict(policy):
            policies[ident] = replace(policy, version=old.version)
        else:
            policies[ident] = replace(policy, version=old.version + 1)
    return replace(
        desired, agents=agents, wallets=wallets, policies=policies, frozen=current.frozen
    )


def make_plan(current: OrgConfig | None, desired: OrgConfig) -> Plan:
    """Diff ``current`` (None for an empty store) against ``desired``."""
    desired = _keep_operational_state(current, desired)
    changes: list[Change] = []
    old_org = {current.org.id: org_dict(current.org)} if current else {}
    changes += _diff_maps("org", old_org, {desired.org.id: org_dict(desired.org)})
    old_settings = {"settings": settings_dict(current.settings)} if current else {}
    changes += _diff_maps("settings", old_settings, {"settings": settings_dict(desired.settings)})
    sections: list[tuple[str, Any, Any]] = [
        ("department", department_dict, "departments"),
        ("agent", agent_dict, "agents"),
        ("wallet", wallet_dict, "wallets"),
        ("asset", asset_dict, "assets"),
        ("policy", policy_dict, "policies"),
    ]
    for kind, to_dict, attr in sections:
        before = {k: to_dict(v) for k, v in getattr(current, attr).items()} if current else {}
        after = {k: to_dict(v) for k, v in getattr(desired, attr).items()}
        changes += _diff_maps(kind, before, after)
    return Plan(changes=tuple(changes), desired=desired, previous=current)
