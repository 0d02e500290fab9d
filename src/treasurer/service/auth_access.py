"""Who may do what: role permissions and what a caller may see of the org.

Roles (SPEC 8): ``admin`` may do everything; ``finance`` reads, runs reports, freezes and
unfreezes and approves; ``auditor`` only reads. An agent session may only spend from, and read,
its own agent's wallets, authorizations and policies. A key scoped to a department sees only
that department (and the teams under it): its agents, their wallets and their spend.

Objects a caller may not see are reported as not found, so probing ids reveals nothing.
"""

from __future__ import annotations

from enum import StrEnum

from treasurer.domain.config import OrgConfig
from treasurer.domain.credentials import Principal, PrincipalKind, Role
from treasurer.domain.errors import Forbidden
from treasurer.domain.org import Scope, ScopeKind, department_chain
from treasurer.domain.policies import Policy


class Permission(StrEnum):
    READ = "read"  # configuration, authorizations, audit
    REPORT = "report"  # spend reports and dry-run checks
    FREEZE = "freeze"  # freeze and unfreeze
    APPROVE = "approve"  # vote on payments
    MANAGE = "manage"  # change configuration, keys, sessions, approvers, prices
    SPEND = "spend"  # agents: authorize, capture, void their own spends


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission) - {Permission.SPEND},
    Role.FINANCE: frozenset(
        {Permission.READ, Permission.REPORT, Permission.FREEZE, Permission.APPROVE}
    ),
    Role.AUDITOR: frozenset({Permission.READ, Permission.REPORT}),
}
AGENT_PERMISSIONS = frozenset({Permission.SPEND})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def permissions_of(principal: Principal) -> frozenset[Permission]:
    if principal.kind is PrincipalKind.AGENT or principal.role is None:
        return AGENT_PERMISSIONS
    return ROLE_PERMISSIONS[principal.role]


def require(principal: Principal, *allowed: Permission) -> None:
    """Pass when the caller holds any of ``allowed``; else ``forbidden`` naming what is needed."""
    if permissions_of(principal) & set(allowed):
        return
    who = "an agent session" if principal.kind is PrincipalKind.AGENT else f"a {principal.role} key"
    needed = " or ".join(sorted(p.value for p in allowed))
    raise Forbidden(f"{who} may not do this; it needs the {needed} permission")


def require_method(principal: Principal, method: str) -> None:
    """Auditors are read-only, whatever a route allows otherwise."""
    if principal.role is Role.AUDITOR and method.upper() not in READ_METHODS:
        raise Forbidden("an auditor key is read-only")


def require_org_wide(principal: Principal, what: str) -> None:
    """Org-wide objects (org file, admin keys, audit log, prices) need an unscoped key."""
    if principal.kind is PrincipalKind.AGENT:
        raise Forbidden(f"an agent session may not access {what}")
    if principal.department_id is not None:
        raise Forbidden(
            f"a key scoped to department {principal.department_id} may not access {what}"
        )


class View:
    """What one caller may see and change in one config."""

    def __init__(self, principal: Principal, config: OrgConfig) -> None:
        self.principal = principal
        self.config = config

    @property
    def unrestricted(self) -> bool:
        return self.principal.kind is PrincipalKind.KEY and self.principal.department_id is None

    def department(self, department_id: str | None) -> bool:
        """The department is the caller's own department or one of its teams."""
        if self.unrestricted:
            return True
        home = self.principal.department_id
        if home is None or department_id is None:
            return False
        return home in department_chain(self.config.departments, department_id)

    def agent(self, agent_id: str) -> bool:
        if self.principal.kind is PrincipalKind.AGENT:
            return agent_id == self.principal.agent_id
        found = self.config.agents.get(agent_id)
        return found is not None and self.department(found.department_id)

    def wallet(self, wallet_id: str) -> bool:
        found = self.config.wallets.get(wallet_id)
        return found is not None and self.agent(found.agent_id)

    def scope(self, scope: Scope) -> bool:
        """May the caller change (freeze, attach a policy to) this scope?"""
        if scope.kind is ScopeKind.ORG:
            return self.unrestricted
        if scope.kind is ScopeKind.DEPARTMENT:
            return self.department(scope.id)
        if scope.kind is ScopeKind.AGENT:
            return self.agent(scope.id)
        return self.wallet(scope.id)

    def policy(self, policy: Policy) -> bool:
        """May the caller read this policy? Agents see those in force for them."""
        if self.principal.kind is PrincipalKind.AGENT:
            return policy.id in {p.id for p in self.agent_policies()}
        if self.unrestricted or policy.scope.kind is ScopeKind.ORG:
            return True
        if policy.scope.kind is ScopeKind.DEPARTMENT and self.principal.department_id:
            above = department_chain(self.config.departments, self.principal.department_id)
            if policy.scope.id in above:
                return True  # an enclosing department's rules bind the caller's agents too
        return self.scope(policy.scope)

    def agent_policies(self) -> list[Policy]:
        """Every policy in force for the calling agent, on any of its wallets."""
        agent = self.config.agents.get(self.principal.agent_id or "")
        if agent is None:
            return []
        found = {p.id: p for p in self.config.policies_for(agent, None)}
        for wallet in self.config.wallets.values():
            if wallet.agent_id == agent.id:
                found.update((p.id, p) for p in self.config.policies_for(agent, wallet))
        return [found[k] for k in sorted(found)]

    def departments_in_scope(self) -> list[str] | None:
        """The departments a scoped key covers (its own and every team below); None for all."""
        if self.unrestricted:
            return None
        return sorted(d for d in self.config.departments if self.department(d))
