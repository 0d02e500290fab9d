"""Single-object edits of the org config, for the CRUD routes.

Each edit is a pure function from the current :class:`OrgConfig` to the desired one. The route
then applies it through the same plan machinery as an org file (``make_plan`` + one
transaction with audit events), so policy versions, history and audit stay exactly as if the
whole file had been edited and applied. Before that, the desired config is round-tripped
through the org file format: whatever the API writes, ``treasurer export`` can write back and
``apply`` accepts unchanged.

Why here and not in ``service``: these are thin translations of one HTTP request into a new
config value; the use case itself (plan and apply) is :meth:`Governance.apply_config`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import Conflict, InvalidRequest, NotFound
from treasurer.domain.org import VENDORS, Agent, Custody, Department, Scope, ScopeKind, Wallet
from treasurer.domain.policies import Policy
from treasurer.service.admin import Governance
from treasurer.service.orgfile import export_org_file, parse_org_file


def validated(config: OrgConfig) -> OrgConfig:
    """Refuse a config the org file format cannot express (every cross-reference checked)."""
    parse_org_file(export_org_file(config), source="request")
    return config


def parse_scope(config: OrgConfig, text: str) -> Scope:
    """``org``, ``department:<id>``, ``agent:<id>`` or ``wallet:<id>`` naming a real target."""
    if text in ("org", f"org:{config.org.id}"):
        return Scope(ScopeKind.ORG, config.org.id)
    kind, _, ident = text.partition(":")
    targets: dict[str, Collection[str]] = {
        "department": config.departments.keys(),
        "agent": config.agents.keys(),
        "wallet": config.wallets.keys(),
    }
    if kind not in targets or not ident:
        raise InvalidRequest(
            f"scope: {text!r} must be org, department:<id>, agent:<id> or wallet:<id>",
            field="scope",
        )
    if ident not in targets[kind]:
        raise NotFound(f"scope: {kind} {ident!r} does not exist", field="scope")
    return Scope(ScopeKind(kind), ident)


def _policies_on(config: OrgConfig, scope: Scope) -> list[str]:
    return sorted(p.id for p in config.policies.values() if p.scope == scope)


def _refuse_if_used(what: str, users: list[str]) -> None:
    if users:
        raise Conflict(
            f"{what} is still used by {', '.join(users[:5])}; remove or move those first",
            code="in_use",
        )


# -- departments -------------------------------------------------------------------------
def _check_parent(config: OrgConfig, department_id: str, parent: str | None) -> None:
    if parent is None:
        return
    if parent not in config.departments:
        raise NotFound(f"parent: department {parent!r} does not exist", field="parent")
    current: str | None = parent
    while current is not None:
        if current == department_id:
            raise InvalidRequest(
                f"parent: {parent!r} is inside {department_id!r}; departments may not form a cycle",
                field="parent",
            )
        current = config.departments[current].parent_id


def add_department(config: OrgConfig, department: Department) -> OrgConfig:
    if department.id in config.departments:
        raise Conflict(f"department {department.id!r} already exists", field="id")
    _check_parent(config, department.id, department.parent_id)
    return replace(config, departments={**config.departments, department.id: department})


def change_department(config: OrgConfig, department: Department) -> OrgConfig:
    _check_parent(config, department.id, department.parent_id)
    return replace(config, departments={**config.departments, department.id: department})


def remove_department(config: OrgConfig, department_id: str) -> OrgConfig:
    users = [
        f"department {d.id}" for d in config.departments.values() if d.parent_id == department_id
    ]
    users += [f"agent {a.id}" for a in config.agents.values() if a.department_id == department_id]
    users += [
        f"policy {p}" for p in _policies_on(config, Scope(ScopeKind.DEPARTMENT, department_id))
    ]
    _refuse_if_used(f"department {department_id}", users)
    departments = {k: v for k, v in config.departments.items() if k != department_id}
    return replace(config, departments=departments)


# -- agents and wallets ------------------------------------------------------------------
def _check_department(config: OrgConfig, department: str | None) -> None:
    if department is not None and department not in config.departments:
        raise NotFound(f"department: {department!r} does not exist", field="department")


def add_agent(config: OrgConfig, agent: Agent) -> OrgConfig:
    if agent.id in config.agents:
        raise Conflict(f"agent {agent.id!r} already exists", field="id")
    _check_department(config, agent.department_id)
    return replace(config, agents={**config.agents, agent.id: agent})


def change_agent(config: OrgConfig, agent: Agent) -> OrgConfig:
    _check_department(config, agent.department_id)
    return replace(config, agents={**config.agents, agent.id: agent})


def add_wallet(config: OrgConfig, wallet: Wallet) -> OrgConfig:
    if wallet.id in config.wallets:
        raise Conflict(f"wallet {wallet.id!r} already exists", field="id")
    if wallet.agent_id not in config.agents:
        raise NotFound(f"agent: {wallet.agent_id!r} does not exist", field="agent")
    if config.find_wallet(f"{wallet.chain}:{wallet.address}") is not None:
        raise Conflict(
            f"address: {wallet.chain}:{wallet.address} is already registered", field="address"
        )
    if wallet.vendor not in VENDORS:
        known = ", ".join(sorted(VENDORS))
        raise InvalidRequest(f"vendor: {wallet.vendor!r} is not one of {known}", field="vendor")
    if (wallet.custody is Custody.LOCAL) != (wallet.vendor == "treasurer"):
        raise InvalidRequest(
            "vendor: Treasurer holds the keys of exactly the local wallets; use custody local "
            "with vendor treasurer, or custody external with the wallet's vendor",
            field="vendor",
        )
    return replace(config, wallets={**config.wallets, wallet.id: wallet})


def remove_wallet(config: OrgConfig, wallet_id: str) -> OrgConfig:
    users = [f"policy {p}" for p in _policies_on(config, Scope(ScopeKind.WALLET, wallet_id))]
    _refuse_if_used(f"wallet {wallet_id}", users)
    return replace(config, wallets={k: v for k, v in config.wallets.items() if k != wallet_id})


# -- policies ----------------------------------------------------------------------------
def put_policy(config: OrgConfig, policy: Policy) -> OrgConfig:
    """Create or replace a policy; ``make_plan`` assigns the next version if it changed."""
    return replace(config, policies={**config.policies, policy.id: policy})


def remove_policy(config: OrgConfig, policy_id: str) -> OrgConfig:
    return replace(config, policies={k: v for k, v in config.policies.items() if k != policy_id})


def apply_edit(
    governance: Governance, actor: str, edit: Callable[[OrgConfig], OrgConfig]
) -> OrgConfig:
    """Edit the current config, validate it, apply it as a plan; return the config now stored.

    A concurrent change by another admin makes the edit re-run on the new config rather than
    overwrite it (see :meth:`Governance.edit_config`).
    """
    governance.edit_config(lambda current: validated(edit(current)), actor=actor)
    return governance.cache.get()
