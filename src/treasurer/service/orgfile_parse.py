"""Parse an org file ("policy as code") into an :class:`OrgConfig`.

The input is the YAML-loaded Python object (callers run ``yaml.safe_load``; the service layer
imports no parser). Reading goes top to bottom: org, settings, assets, departments, agents with
their wallets (each expanding its shorthand policies on the way), then full-form policies,
whose scopes can only be checked once every department, agent and wallet is known. The first
problem found is raised as :class:`OrgFileInvalid` naming the file, the path and the fix.

Operational state (agent and wallet status, freezes, prices of manual assets, policy versions)
is not in the file: a parsed config carries the defaults and ``make_plan`` keeps the store's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from treasurer.domain.config import OrgConfig, OrgSettings
from treasurer.domain.money import Asset
from treasurer.domain.org import (
    VENDORS,
    Agent,
    Custody,
    Department,
    Org,
    Scope,
    ScopeKind,
    Wallet,
)
from treasurer.domain.policies import Policy
from treasurer.service.orgfile_read import (
    Reader,
    ident,
    integer,
    items,
    key_path,
    mapping,
    reject_floats,
    suggest,
    text,
)
from treasurer.service.orgfile_sections import (
    parse_asset,
    parse_chain,
    parse_settings,
    parse_timezone,
)
from treasurer.service.orgfile_shorthand import SHORTHAND_KEYS, Where, build_policy, shorthand_key
from treasurer.service.orgfile_shorthand import shorthand_policies as _shorthand

FORMAT_VERSION = 1

_TOP_KEYS = ("version", "org", "settings", "assets", "departments", "agents", "policies")
_ORG_KEYS = ("id", "name", "timezone", *SHORTHAND_KEYS)
_DEPARTMENT_KEYS = ("id", "name", "parent", *SHORTHAND_KEYS)
_AGENT_KEYS = ("id", "name", "department", "wallets", *SHORTHAND_KEYS)
_WALLET_KEYS = ("id", "chain", "address", "custody", "vendor", *SHORTHAND_KEYS)
_POLICY_KEYS = ("id", "type", "scope", "mode", "description", "params")

_SCOPE_HELP = 'write "org", "department:<id>", "agent:<id>" or "wallet:<id>"'


def known_list(names: Iterable[str]) -> str:
    """``engineering, marketing, operations`` (sorted; ``(none)`` when empty)."""
    return ", ".join(sorted(names)) or "(none)"


@dataclass
class _Draft:
    """The config being built, entry by entry, in file order."""

    reader: Reader
    org: Org
    settings: OrgSettings = field(default_factory=OrgSettings)
    departments: dict[str, Department] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    wallets: dict[str, Wallet] = field(default_factory=dict)
    assets: dict[str, Asset] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)

    def add_policies(self, policies: list[Policy], path: str) -> None:
        for policy in policies:
            self.reader.claim("policy", policy.id, path)
            self.policies[policy.id] = policy

    def expand(self, scope: Scope, block: dict[str, object], path: str) -> None:
        """Turn the shorthand keys of one org/department/agent/wallet entry into policies."""
        for policy in _shorthand(self.reader, scope, block, path):
            self.add_policies([policy], key_path(path, shorthand_key(policy) or ""))

    def config(self) -> OrgConfig:
        return OrgConfig(
            org=self.org,
            departments=self.departments,
            agents=self.agents,
            wallets=self.wallets,
            assets=self.assets,
            policies=self.policies,
            settings=self.settings,
        )


def parse_org_file(data: object, *, source: str = "org.yaml") -> OrgConfig:
    """Validate a YAML-loaded org file and build the :class:`OrgConfig` it describes.

    Raises :class:`~treasurer.domain.errors.OrgFileInvalid` for the first problem, with
    ``field`` set to its path in the file (``agents[0].budgets[1].limit_usd``).
    """
    reader = Reader(source)
    if data is None:
        raise reader.error("", "the file is empty; start it with `version: 1` and an `org:` part")
    reject_floats(reader, data)
    top = mapping(reader, data, "", allowed=_TOP_KEYS, required=("version", "org"))
    version = integer(reader, top["version"], "version", low=0, high=10**6)
    if version != FORMAT_VERSION:
        raise reader.error("version", f"version {version} is not supported; write `version: 1`")
    draft = _parse_org(reader, top["org"])
    draft.settings = parse_settings(reader, top.get("settings"))
    for index, raw in enumerate(items(reader, top.get("assets"), "assets")):
        asset = parse_asset(reader, raw, f"assets[{index}]")
        draft.assets[asset.id] = asset
    _parse_departments(draft, top.get("departments"))
    for index, raw in enumerate(items(reader, top.get("agents"), "agents")):
        _parse_agent(draft, raw, f"agents[{index}]")
    for index, raw in enumerate(items(reader, top.get("policies"), "policies")):
        path = f"policies[{index}]"
        draft.add_policies([_parse_policy(draft, raw, path)], f"{path}.id")
    return draft.config()


def _parse_org(reader: Reader, raw: object) -> _Draft:
    block = mapping(reader, raw, "org", allowed=_ORG_KEYS, required=("id",))
    org_id = ident(reader, block["id"], "org.id")
    name = text(reader, block["name"], "org.name") if block.get("name") is not None else org_id
    timezone = parse_timezone(reader, block.get("timezone", "UTC"), "org.timezone")
    draft = _Draft(reader, Org(org_id, name, timezone))
    draft.expand(Scope(ScopeKind.ORG, org_id), block, "org")
    return draft


def _parse_departments(draft: _Draft, raw: object) -> None:
    reader = draft.reader
    paths: dict[str, str] = {}
    for index, entry in enumerate(items(reader, raw, "departments")):
        path = f"departments[{index}]"
        block = mapping(reader, entry, path, allowed=_DEPARTMENT_KEYS, required=("id",))
        dept_id = ident(reader, block["id"], f"{path}.id")
        draft.reader.claim("department", dept_id, f"{path}.id")
        name = dept_id
        if block.get("name") is not None:
            name = text(reader, block["name"], f"{path}.name")
        parent = None
        if block.get("parent") is not None:
            parent = ident(reader, block["parent"], f"{path}.parent")
        draft.departments[dept_id] = Department(dept_id, name, parent)
        paths[dept_id] = path
        draft.expand(Scope(ScopeKind.DEPARTMENT, dept_id), block, path)
    _check_parents(draft, paths)


def _check_parents(draft: _Draft, paths: dict[str, str]) -> None:
    """Every parent exists and no department is its own ancestor."""
    departments = draft.departments
    for dept_id, department in departments.items():
        parent = department.parent_id
        if parent is not None and parent not in departments:
            raise draft.reader.error(
                f"{paths[dept_id]}.parent",
                f"unknown department {parent!r}; known: {known_list(departments)}",
            )
    for dept_id in departments:
        seen = [dept_id]
        current = departments[dept_id].parent_id
        while current is not None and current not in seen:
            seen.append(current)
            current = departments[current].parent_id
        if current == dept_id:
            cycle = " -> ".join([*seen, dept_id])
            raise draft.reader.error(
                f"{paths[dept_id]}.parent",
                f"departments form a cycle ({cycle}); give one of them another parent or none",
            )


def _parse_agent(draft: _Draft, raw: object, path: str) -> None:
    reader = draft.reader
    block = mapping(reader, raw, path, allowed=_AGENT_KEYS, required=("id",))
    agent_id = ident(reader, block["id"], f"{path}.id")
    draft.reader.claim("agent", agent_id, f"{path}.id")
    name = agent_id
    if block.get("name") is not None:
        name = text(reader, block["name"], f"{path}.name")
    department = None
    if block.get("department") is not None:
        department = text(reader, block["department"], f"{path}.department")
        if department not in draft.departments:
            raise reader.error(
                f"{path}.department",
                f"unknown department {department!r}; known: {known_list(draft.departments)}",
            )
    draft.agents[agent_id] = Agent(agent_id, name, department)
    draft.expand(Scope(ScopeKind.AGENT, agent_id), block, path)
    for index, entry in enumerate(items(reader, block.get("wallets"), f"{path}.wallets")):
        _parse_wallet(draft, entry, f"{path}.wallets[{index}]", agent_id)


def _parse_wallet(draft: _Draft, raw: object, path: str, agent_id: str) -> None:
    reader = draft.reader
    block = mapping(reader, raw, path, allowed=_WALLET_KEYS, required=("id", "chain", "address"))
    wallet_id = ident(reader, block["id"], f"{path}.id")
    draft.reader.claim("wallet", wallet_id, f"{path}.id")
    chain = parse_chain(reader, block["chain"], f"{path}.chain")
    address = text(reader, block["address"], f"{path}.address")
    what = f"wallet address {chain}:{address}"
    draft.reader.claim("wallet address", f"{chain}:{address.lower()}", f"{path}.address", what=what)
    custody_word = text(reader, block.get("custody", "external"), f"{path}.custody")
    if custody_word not in ("local", "external"):
        raise reader.error(
            f"{path}.custody", f"{custody_word!r} is not a custody; use local or external"
        )
    custody = Custody(custody_word)
    default_vendor = "treasurer" if custody is Custody.LOCAL else "other"
    vendor = text(reader, block.get("vendor", default_vendor), f"{path}.vendor")
    if vendor not in VENDORS:
        hint = suggest(vendor, VENDORS)
        raise reader.error(
            f"{path}.vendor", f"unknown vendor {vendor!r}{hint}; known: {known_list(set(VENDORS))}"
        )
    if (custody is Custody.LOCAL) != (vendor == "treasurer"):
        raise reader.error(
            f"{path}.vendor",
            "Treasurer holds the keys of exactly the local wallets; use custody: local with "
            "vendor: treasurer, or custody: external with the wallet's vendor",
        )
    draft.wallets[wallet_id] = Wallet(wallet_id, agent_id, chain, address, custody, vendor)
    draft.expand(Scope(ScopeKind.WALLET, wallet_id), block, path)


def _parse_policy(draft: _Draft, raw: object, path: str) -> Policy:
    reader = draft.reader
    required = ("id", "type", "scope", "params")
    block = mapping(reader, raw, path, allowed=_POLICY_KEYS, required=required)
    policy_id = text(reader, block["id"], f"{path}.id")
    description = ""
    if block.get("description") is not None:
        description = text(reader, block["description"], f"{path}.description")
    return build_policy(
        reader,
        Where(f"{path}.params", policy_path=path),
        policy_id=policy_id,
        policy_type=text(reader, block["type"], f"{path}.type"),
        scope=_scope(draft, block["scope"], f"{path}.scope"),
        params=block["params"],
        mode=text(reader, block.get("mode", "enforce"), f"{path}.mode"),
        description=description,
    )


def _scope(draft: _Draft, value: object, path: str) -> Scope:
    """``org``, ``department:<id>``, ``agent:<id>`` or ``wallet:<id>``, naming a real target."""
    word = text(draft.reader, value, path)
    kind, colon, target = word.partition(":")
    if kind == "org" and (not colon or target == draft.org.id):
        return Scope(ScopeKind.ORG, draft.org.id)
    if kind == "org":
        raise draft.reader.error(path, f'this file is for org {draft.org.id!r}; write "org"')
    targets: dict[str, Mapping[str, object]] = {
        "department": draft.departments,
        "agent": draft.agents,
        "wallet": draft.wallets,
    }
    if kind not in targets or not target:
        raise draft.reader.error(path, f"{word!r} is not a scope; {_SCOPE_HELP}")
    if target not in targets[kind]:
        raise draft.reader.error(
            path, f"unknown {kind} {target!r}; known: {known_list(targets[kind])}"
        )
    return Scope(ScopeKind(kind), target)
