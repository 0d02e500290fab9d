"""Reading and writing the org configuration (org, departments, agents, wallets, assets,
policies with their version history, freezes, prices).

Every configuration write bumps ``meta.config_version`` in the same transaction, so services
that cache the config (it is read on every decision) see a change on their very next decision,
on every node.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from treasurer.adapters.sql.codec import amount_param, amount_value, dumps, from_us, loads, to_us
from treasurer.adapters.sql.db import Tx
from treasurer.domain.config import OrgConfig, OrgSettings
from treasurer.domain.errors import Conflict
from treasurer.domain.facts import PriceQuote
from treasurer.domain.money import Asset
from treasurer.domain.org import (
    Agent,
    AgentStatus,
    Custody,
    Department,
    Org,
    Scope,
    Wallet,
    WalletStatus,
)
from treasurer.domain.plan import Change, Plan
from treasurer.domain.policies import Policy, make_policy
from treasurer.service.ports import AuditRecord

BUMP_VERSION = (
    "INSERT INTO meta (key, value) VALUES ('config_version', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)"
)
INSERT_AUDIT = (
    "INSERT INTO audit_events (at_us, kind, actor, subject, payload) "
    "VALUES (:at_us, :kind, :actor, :subject, :payload)"
)


def audit_params(record: AuditRecord, now: datetime) -> dict[str, Any]:
    return {
        "at_us": to_us(now),
        "kind": record.kind,
        "actor": record.actor,
        "subject": record.subject,
        "payload": dumps(record.payload),
    }


def write_audit(tx: Tx, record: AuditRecord, now: datetime) -> None:
    tx.execute(INSERT_AUDIT, audit_params(record, now))


def read_config_version(tx: Tx) -> int:
    row = tx.one("SELECT value FROM meta WHERE key = 'config_version'")
    return int(row[0]) if row else 0


def _settings_from_json(text: str) -> OrgSettings:
    data = loads(text)
    return OrgSettings(
        on_decommission=tuple(data["on_decommission"]),
        on_breach=tuple(data["on_breach"]),
        finance_contacts=tuple(data["finance_contacts"]),
        audit_retention_days=int(data["audit_retention_days"]),
        authorization_ttl_s=int(data["authorization_ttl_s"]),
    )


def _policy_from_row(row: tuple[Any, ...]) -> Policy:
    ident, version, policy_type, scope, mode, params, description = row
    return make_policy(
        policy_id=ident,
        policy_type=policy_type,
        scope=Scope.parse(scope),
        params=loads(params),
        mode=mode,
        version=int(version),
        description=description,
    )


def load_config(tx: Tx) -> OrgConfig | None:
    org_row = tx.one("SELECT id, name, timezone, settings FROM orgs LIMIT 1")
    if org_row is None:
        return None
    departments = {
        r[0]: Department(r[0], r[1], r[2])
        for r in tx.all("SELECT id, name, parent_id FROM departments")
    }
    agents = {
        r[0]: Agent(r[0], r[1], r[2], AgentStatus(r[3]))
        for r in tx.all("SELECT id, name, department_id, status FROM agents")
    }
    wallets = {
        r[0]: Wallet(r[0], r[1], r[2], r[3], Custody(r[4]), r[5], WalletStatus(r[6]))
        for r in tx.all("SELECT id, agent_id, chain, address, custody, vendor, status FROM wallets")
    }
    assets = {
        r[0]: Asset(r[0], r[1], r[2], int(r[3]), r[4], r[5], amount_value(r[6]), int(r[7]))
        for r in tx.all(
            "SELECT id, chain, symbol, decimals, address, price_source, fixed_price_atto, "
            "max_price_age_s FROM assets"
        )
    }
    policies = {
        r[0]: _policy_from_row(r)
        for r in tx.all("SELECT id, version, type, scope, mode, params, description FROM policies")
    }
    frozen = frozenset(Scope.parse(r[0]) for r in tx.all("SELECT scope FROM freezes"))
    return OrgConfig(
        org=Org(org_row[0], org_row[1], org_row[2]),
        departments=departments,
        agents=agents,
        wallets=wallets,
        assets=assets,
        policies=policies,
        frozen=frozen,
        settings=_settings_from_json(org_row[3]),
    )


def _upsert(tx: Tx, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    values = ", ".join(f":{c}" for c in row)
    updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "id")
    tx.execute(
        f"INSERT INTO {table} ({columns}) VALUES ({values}) "
        f"ON CONFLICT (id) DO UPDATE SET {updates}",
        row,
    )


def _row_for(change: Change, desired: OrgConfig, dialect: str) -> tuple[str, dict[str, Any]]:
    kind, ident = change.kind, change.id
    if kind == "org":
        org = desired.org
        return "orgs", {
            "id": org.id,
            "name": org.name,
            "timezone": org.timezone,
            "settings": _settings_json(desired.settings),
        }
    if kind == "department":
        d = desired.departments[ident]
        return "departments", {"id": d.id, "name": d.name, "parent_id": d.parent_id}
    if kind == "agent":
        a = desired.agents[ident]
        return "agents", {
            "id": a.id,
            "name": a.name,
            "department_id": a.department_id,
            "status": a.status.value,
        }
    if kind == "wallet":
        w = desired.wallets[ident]
        return "wallets", {
            "id": w.id,
            "agent_id": w.agent_id,
            "chain": w.chain,
            "address": w.address,
            "custody": w.custody.value,
            "vendor": w.vendor,
            "status": w.status.value,
        }
    if kind == "asset":
        s = desired.assets[ident]
        return "assets", {
            "id": s.id,
            "chain": s.chain,
            "symbol": s.symbol,
            "decimals": s.decimals,
            "address": s.address,
            "price_source": s.price_source,
            "fixed_price_atto": amount_param(s.fixed_price_atto, dialect),
            "max_price_age_s": s.max_price_age_s,
        }
    p = desired.policies[ident]
    return "policies", {
        "id": p.id,
        "version": p.version,
        "type": p.type,
        "scope": str(p.scope),
        "mode": p.mode.value,
        "params": dumps(p.params_dict()),
        "description": p.description,
    }


def _settings_json(settings: OrgSettings) -> str:
    return dumps(
        {
            "on_decommission": list(settings.on_decommission),
            "on_breach": list(settings.on_breach),
            "finance_contacts": list(settings.finance_contacts),
            "audit_retention_days": settings.audit_retention_days,
            "authorization_ttl_s": settings.authorization_ttl_s,
        }
    )


_TABLES = {
    "org": "orgs",
    "department": "departments",
    "agent": "agents",
    "wallet": "wallets",
    "asset": "assets",
    "policy": "policies",
}


def apply_plan(
    tx: Tx,
    plan: Plan,
    audit: Sequence[AuditRecord],
    now: datetime,
    dialect: str,
    expected_version: int | None = None,
) -> int:
    """Write a plan's changes; record policy history; bump the config version.

    With ``expected_version``, the version row is locked first and compared, so two admins
    editing at once cannot silently overwrite each other (optimistic concurrency).
    """
    if expected_version is not None:
        tx.execute(BUMP_VERSION)  # takes the row lock (PostgreSQL) before comparing
        current = read_config_version(tx) - 1
        if current != expected_version:
            raise Conflict(
                f"the configuration changed (version {current}, expected {expected_version}) "
                "while this change was prepared; load it again and retry",
                code="config_changed",
            )
    now_us = to_us(now)
    for change in plan.changes:
        if change.kind == "settings":
            tx.execute(
                "UPDATE orgs SET settings = :s WHERE id = :id",
                {"s": _settings_json(plan.desired.settings), "id": plan.desired.org.id},
            )
            continue
        if change.action == "delete":
            tx.execute(f"DELETE FROM {_TABLES[change.kind]} WHERE id = :id", {"id": change.id})
        else:
            table, row = _row_for(change, plan.desired, dialect)
            _upsert(tx, table, row)
        if change.kind == "policy":
            _record_policy_version(tx, change, plan.desired, now_us)
    for record in audit:
        write_audit(tx, record, now)
    if expected_version is None:
        tx.execute(BUMP_VERSION)
    return read_config_version(tx)


def _record_policy_version(tx: Tx, change: Change, desired: OrgConfig, now_us: int | None) -> None:
    tx.execute(
        "UPDATE policy_versions SET retired_us = :now WHERE id = :id AND retired_us IS NULL",
        {"now": now_us, "id": change.id},
    )
    if change.action == "delete":
        return
    p = desired.policies[change.id]
    tx.execute(
        "INSERT INTO policy_versions (id, version, type, scope, mode, params, description, "
        "created_us) VALUES (:id, :version, :type, :scope, :mode, :params, :description, :now)",
        {
            "id": p.id,
            "version": p.version,
            "type": p.type,
            "scope": str(p.scope),
            "mode": p.mode.value,
            "params": dumps(p.params_dict()),
            "description": p.description,
            "now": now_us,
        },
    )


def policy_history(tx: Tx, policy_id: str) -> list[dict[str, Any]]:
    rows = tx.all(
        "SELECT version, type, scope, mode, params, description, created_us, retired_us "
        "FROM policy_versions WHERE id = :id ORDER BY version",
        {"id": policy_id},
    )
    return [
        {
            "version": r[0],
            "type": r[1],
            "scope": r[2],
            "mode": r[3],
            "params": loads(r[4]),
            "description": r[5],
            "created_at": from_us(r[6]),
            "retired_at": from_us(r[7]),
        }
        for r in rows
    ]


def set_price(tx: Tx, asset_id: str, quote: PriceQuote, dialect: str) -> None:
    tx.execute(
        "INSERT INTO prices (asset_id, price_atto, as_of_us, source) "
        "VALUES (:a, :p, :t, :s) ON CONFLICT (asset_id) DO UPDATE SET "
        "price_atto = excluded.price_atto, as_of_us = excluded.as_of_us, source = excluded.source",
        {
            "a": asset_id,
            "p": amount_param(quote.price_atto, dialect),
            "t": to_us(quote.as_of),
            "s": quote.source,
        },
    )


def get_price(tx: Tx, asset_id: str) -> PriceQuote | None:
    row = tx.one(
        "SELECT price_atto, as_of_us, source FROM prices WHERE asset_id = :a", {"a": asset_id}
    )
    if row is None:
        return None
    as_of = from_us(row[1])
    assert as_of is not None
    return PriceQuote(price_atto=int(str(row[0])), as_of=as_of, source=row[2])


def set_freeze(tx: Tx, scope: Scope, frozen: bool, reason: str, actor: str, now: datetime) -> bool:
    """Freeze or unfreeze a scope; returns whether anything changed."""
    if frozen:
        changed = tx.execute(
            "INSERT INTO freezes (scope, reason, actor, created_us) VALUES (:s, :r, :a, :t) "
            "ON CONFLICT (scope) DO NOTHING",
            {"s": str(scope), "r": reason, "a": actor, "t": to_us(now)},
        )
    else:
        changed = tx.execute("DELETE FROM freezes WHERE scope = :s", {"s": str(scope)})
    if changed:
        tx.execute(BUMP_VERSION)
    return changed > 0


def set_agent_status(tx: Tx, agent_id: str, status: AgentStatus) -> bool:
    changed = tx.execute(
        "UPDATE agents SET status = :s WHERE id = :id AND status <> :s",
        {"s": status.value, "id": agent_id},
    )
    if changed:
        tx.execute(BUMP_VERSION)
    return changed > 0
