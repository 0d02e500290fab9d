"""The whole governed configuration of one org, as a value.

An org file parses into an :class:`OrgConfig`; the store loads one; ``apply`` diffs two of
them into a :class:`~treasurer.domain.plan.Plan`. Decisions read the config through
:meth:`OrgConfig.policies_for`, which returns every policy whose scope covers a spend.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treasurer.domain.money import Asset
from treasurer.domain.org import Agent, Department, Org, Scope, ScopeKind, Wallet, department_chain
from treasurer.domain.policies import Policy


@dataclass(frozen=True, slots=True)
class OrgSettings:
    """Org-wide behaviour the org file sets: lifecycle reactions and retention."""

    on_decommission: tuple[str, ...] = ("revoke_sessions", "freeze_wallets", "cancel_pending")
    on_breach: tuple[str, ...] = ("block", "alert_finance")
    finance_contacts: tuple[str, ...] = ()
    audit_retention_days: int = 7 * 365
    authorization_ttl_s: int = 900


@dataclass(frozen=True, slots=True)
class OrgConfig:
    """Org, departments, agents, wallets, assets, policies and freezes at one moment."""

    org: Org
    departments: dict[str, Department] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    wallets: dict[str, Wallet] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    frozen: frozenset[Scope] = frozenset()
    settings: OrgSettings = field(default_factory=OrgSettings)
    #: Policies by scope, built on first use (the config is immutable, so it never goes stale).
    _by_scope: dict[Scope, tuple[Policy, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def departments_of(self, agent: Agent) -> tuple[str, ...]:
        return tuple(department_chain(self.departments, agent.department_id))

    def department_subtree(self, department_id: str) -> tuple[str, ...]:
        """``department_id`` and every department nested below it."""
        found = [department_id]
        for current in found:
            found.extend(
                d.id
                for d in self.departments.values()
                if d.parent_id == current and d.id not in found
            )
        return tuple(found)

    def covering_scopes(self, agent: Agent, wallet: Wallet | None) -> list[Scope]:
        """Every scope a spend by ``agent`` from ``wallet`` falls under (org last)."""
        scopes: list[Scope] = []
        if wallet is not None:
            scopes.append(Scope(ScopeKind.WALLET, wallet.id))
        scopes.append(Scope(ScopeKind.AGENT, agent.id))
        scopes.extend(Scope(ScopeKind.DEPARTMENT, d) for d in self.departments_of(agent))
        scopes.append(Scope(ScopeKind.ORG, self.org.id))
        return scopes

    def policies_for(self, agent: Agent, wallet: Wallet | None) -> tuple[Policy, ...]:
        """Every policy attached to a scope covering this spend (in a stable order)."""
        if not self._by_scope and self.policies:
            index: dict[Scope, list[Policy]] = {}
            for policy in sorted(self.policies.values(), key=lambda p: p.id):
                index.setdefault(policy.scope, []).append(policy)
            self._by_scope.update({scope: tuple(items) for scope, items in index.items()})
        found: list[Policy] = []
        for scope in self.covering_scopes(agent, wallet):
            found.extend(self._by_scope.get(scope, ()))
        return tuple(found)

    def find_wallet(self, ref: str) -> Wallet | None:
        """A wallet by id, or by ``chain:address`` (address compared case-insensitively)."""
        if ref in self.wallets:
            return self.wallets[ref]
        chain, _, address = ref.partition(":")
        for wallet in self.wallets.values():
            if wallet.chain == chain and wallet.address.lower() == address.lower():
                return wallet
        return None

    def find_asset(self, ref: str, chain: str | None) -> Asset | None:
        """An asset by id (``base:USDC``), or by symbol on the given chain (``USDC``)."""
        if ref in self.assets:
            return self.assets[ref]
        for asset in self.assets.values():
            if asset.symbol.lower() == ref.lower() and (chain is None or asset.chain == chain):
                return asset
        return None
