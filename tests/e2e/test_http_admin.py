"""Admin routes over HTTP: org objects, policies with versions, freezes, keys, approvers, reads."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

from treasurer.bootstrap import build_app
from treasurer.service.credentials import create_admin_key

Headers = dict[str, str]
ED25519_HEX = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"


@dataclass
class Api:
    client: TestClient
    admin: Headers

    def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.admin, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    def problem(self, method: str, path: str, status: int, code: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, headers=self.admin, **kwargs)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == code, response.text
        return dict(response.json())

    def agent_session(self, agent: str) -> Headers:
        token = self.ok("POST", f"/v1/agents/{agent}/sessions", 201)["token"]
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def api(sqlite_url: str, clock: FakeClock) -> Iterator[Api]:
    """The app with the cross-wallet org applied and a root admin key."""
    app = build_app(sqlite_url, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    with TestClient(app) as client:
        api = Api(client, {"Authorization": f"Bearer {token}"})
        api.ok("POST", "/v1/org", json=cross_wallet_org())
        yield api


def test_departments_can_be_created_changed_and_removed(api: Api) -> None:
    """Departments nest; a cycle, an unknown parent or removing a used one are refused."""
    api.ok("POST", "/v1/departments", 201, json={"id": "eng", "name": "Engineering"})
    team = {"id": "ml", "name": "ML", "parent": "eng"}
    assert api.ok("POST", "/v1/departments", 201, json=team) == team
    api.problem("POST", "/v1/departments", 409, "conflict", json=team)
    api.problem("POST", "/v1/departments", 404, "not_found", json={"id": "x", "parent": "nope"})
    api.problem("PATCH", "/v1/departments/eng", 400, "invalid_request", json={"parent": "ml"})
    moved = api.ok("PATCH", "/v1/departments/ml", json={"parent": None, "name": "Machine Learning"})
    assert moved == {"id": "ml", "name": "Machine Learning", "parent": None}
    api.problem("DELETE", "/v1/departments/ops", 409, "in_use")
    api.ok("DELETE", "/v1/departments/ml", 204)
    api.problem("GET", "/v1/departments/ml", 404, "not_found")
    listed = api.ok("GET", "/v1/departments?limit=1")
    assert listed == {
        "items": [{"id": "eng", "name": "Engineering", "parent": None}],
        "next": "eng",
    }
    rest = api.ok("GET", "/v1/departments?limit=1&after=eng")
    assert [d["id"] for d in rest["items"]] == ["ops"] and rest["next"] is None


def test_agents_and_wallets(api: Api) -> None:
    """Register an agent and a wallet; vendor rules and address uniqueness are checked."""
    api.ok("POST", "/v1/agents", 201, json={"id": "bot", "department": "ops"})
    api.problem("POST", "/v1/agents", 404, "not_found", json={"id": "b2", "department": "nope"})
    renamed = api.ok("PATCH", "/v1/agents/bot", json={"name": "Bot"})
    assert renamed == {"id": "bot", "name": "Bot", "department": "ops", "status": "active"}
    wallet = {"id": "wb", "agent": "bot", "chain": "base", "address": "0x" + "9" * 40}
    created = api.ok("POST", "/v1/wallets", 201, json={**wallet, "vendor": "privy"})
    assert created["vendor"] == "privy" and created["frozen"] is False
    dup = {**wallet, "id": "wc", "address": "0x" + "9" * 40}
    api.problem("POST", "/v1/wallets", 409, "conflict", json=dup)
    local = {
        **wallet,
        "id": "wd",
        "address": "0x" + "8" * 40,
        "custody": "local",
        "vendor": "privy",
    }
    api.problem("POST", "/v1/wallets", 400, "invalid_request", json=local)
    api.problem("GET", "/v1/wallets/wb/balance", 400, "chain_not_configured")
    api.ok("DELETE", "/v1/wallets/wb", 204)
    assert "wb" not in [w["id"] for w in api.ok("GET", "/v1/wallets")["items"]]


def test_policies_are_versioned_and_validated(api: Api) -> None:
    """Create is version 1, a change is version 2 with history; bad params name the field."""
    policy = {
        "id": "a-per-tx",
        "type": "budget",
        "scope": "agent:agent_a",
        "params": {"window": "per_transaction", "limit_usd": "100.00"},
    }
    assert api.ok("POST", "/v1/policies", 201, json=policy)["version"] == 1
    api.problem("POST", "/v1/policies", 409, "conflict", json=policy)
    changed = {k: v for k, v in policy.items() if k != "id"}
    changed["params"] = {"window": "per_transaction", "limit_usd": "50.00"}
    assert api.ok("PUT", "/v1/policies/a-per-tx", json=changed)["version"] == 2
    history = api.ok("GET", "/v1/policies/a-per-tx/history")
    assert [(v["version"], v["retired_at"] is None) for v in history] == [(1, False), (2, True)]
    bad = {**policy, "id": "bad", "params": {"window": "fortnight", "limit_usd": "1"}}
    assert api.problem("POST", "/v1/policies", 400, "policy_invalid", json=bad)["field"].startswith(
        "params.window"
    )
    api.problem(
        "POST", "/v1/policies", 404, "not_found", json={**policy, "id": "p", "scope": "agent:x"}
    )
    agent = api.agent_session("agent_a")
    body = {"wallet": "w1", "amount": "60.00", "asset": "USDC"}
    denied = api.client.post("/v1/authorizations/check", json=body, headers=agent).json()
    assert denied["allowed"] is False
    api.ok("DELETE", "/v1/policies/a-per-tx", 204)
    allowed = api.client.post("/v1/authorizations/check", json=body, headers=agent).json()
    assert allowed["allowed"] is True


def test_org_export_and_dry_run(api: Api) -> None:
    """The exported org applies as an empty plan; a dry run of a change writes nothing."""
    exported = api.ok("GET", "/v1/org")
    same = api.ok("POST", "/v1/org", json=exported)
    assert same["counts"] == {"create": 0, "update": 0, "delete": 0} and not same["applied"]
    changed = cross_wallet_org(agent_daily="800.00")
    plan = api.ok("POST", "/v1/org?dry_run=true", json=changed)
    assert plan["dry_run"] and not plan["applied"]
    updated = {c["id"] for c in plan["changes"] if c["action"] == "update"}
    assert updated == {"agent:agent_a:budget:day", "agent:agent_b:budget:day"}
    assert api.ok("GET", "/v1/org") == exported
    invalid = {"version": 1, "org": {"id": "acme", "timezone": "Mars/Base"}}
    api.problem("POST", "/v1/org", 400, "org_file_invalid", json=invalid)


def test_freezes_stop_spending_until_lifted(api: Api) -> None:
    """A frozen wallet denies at decision time; a finance key may freeze, not configure."""
    finance = api.ok("POST", "/v1/admin-keys", 201, json={"name": "fin", "role": "finance"})
    fin = {"Authorization": f"Bearer {finance['token']}"}
    frozen = api.client.post(
        "/v1/freezes", json={"scope": "wallet:w1", "reason": "lost"}, headers=fin
    )
    assert frozen.status_code == 201 and frozen.json() == {
        "scope": "wallet:w1",
        "frozen": True,
        "changed": True,
    }
    assert api.ok("GET", "/v1/freezes")["items"] == [{"scope": "wallet:w1"}]
    agent = api.agent_session("agent_a")
    body = {"wallet": "w1", "amount": "1.00", "asset": "USDC"}
    decision = api.client.post("/v1/authorizations/check", json=body, headers=agent).json()
    assert "wallet_frozen" in [r["code"] for r in decision["reasons"]]
    assert api.client.delete("/v1/freezes/wallet:w1", headers=fin).json()["changed"] is True
    assert api.client.post("/v1/departments", json={"id": "x"}, headers=fin).status_code == 403
    api.problem("POST", "/v1/freezes", 400, "invalid_request", json={"scope": "planet:mars"})


def test_manual_prices(api: Api) -> None:
    """An admin sets a manual price as a string; a float is refused like any amount."""
    api.problem("GET", "/v1/prices/ethereum:ETH", 404, "price_missing")
    price = api.ok("PUT", "/v1/prices/ethereum:ETH", json={"price_usd": "3100.25"})
    assert price["price_usd"] == "3100.25" and price["source"] == "manual"
    assert api.ok("GET", "/v1/prices/ethereum:ETH")["price_usd"] == "3100.25"
    api.problem(
        "PUT", "/v1/prices/ethereum:ETH", 400, "amount_not_a_string", json={"price_usd": 3100.25}
    )
    assert api.ok("GET", "/v1/prices/base:USDC")["source"] == "fixed"


def test_admin_keys_are_shown_once_and_revocable(api: Api) -> None:
    """A key's token appears only at creation; revoked keys fail; the last admin stays."""
    created = api.ok("POST", "/v1/admin-keys", 201, json={"name": "ops-admin", "role": "admin"})
    token = created["token"]
    listed = api.ok("GET", "/v1/admin-keys")
    assert token not in str(listed) and "secret_hash" not in str(listed)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/v1/agents", headers=headers).status_code == 200
    root_id = next(k["id"] for k in listed["items"] if k["name"] == "root")
    api.ok("DELETE", f"/v1/admin-keys/{created['id']}")
    assert api.client.get("/v1/agents", headers=headers).status_code == 401
    api.problem("DELETE", f"/v1/admin-keys/{root_id}", 409, "last_admin_key")
    scoped = {"name": "x", "role": "auditor", "department": "nope"}
    api.problem("POST", "/v1/admin-keys", 404, "not_found", json=scoped)


def test_approvers(api: Api) -> None:
    """Ed25519 keys (hex or base64) and EVM addresses are accepted; anything else is not."""
    alice = {"id": "alice", "name": "Alice", "kind": "ed25519", "public_key": ED25519_HEX}
    assert api.ok("POST", "/v1/approvers", 201, json={**alice, "groups": ["cfo"]})["groups"] == [
        "cfo"
    ]
    b64 = base64.b64encode(bytes.fromhex(ED25519_HEX)).decode()
    bob = api.ok("POST", "/v1/approvers", 201, json={**alice, "id": "bob", "public_key": b64})
    assert bob["public_key"] == ED25519_HEX
    carol = {"id": "carol", "name": "Carol", "kind": "evm", "public_key": "0x" + "Ab" * 20}
    assert api.ok("POST", "/v1/approvers", 201, json=carol)["public_key"] == "0x" + "ab" * 20
    api.problem(
        "POST",
        "/v1/approvers",
        400,
        "invalid_request",
        json={**carol, "id": "d", "public_key": "0x12"},
    )
    api.problem("POST", "/v1/approvers", 409, "conflict", json=alice)
    patched = api.ok("PATCH", "/v1/approvers/alice", json={"groups": ["cfo", "treasury"]})
    assert patched["groups"] == ["cfo", "treasury"]
    assert api.ok("DELETE", "/v1/approvers/bob")["revoked_at"] is not None
    assert [a["id"] for a in api.ok("GET", "/v1/approvers")["items"]] == ["alice", "carol"]


def test_audit_pages_and_verify_is_not_available_yet(api: Api) -> None:
    """The audit log pages by event id; verification answers 501 until the chain exists."""
    first = api.ok("GET", "/v1/audit?limit=2")
    assert len(first["items"]) == 2 and first["next"] == str(first["items"][1]["id"])
    second = api.ok("GET", f"/v1/audit?limit=2&after={first['next']}")
    assert second["items"][0]["id"] == first["items"][1]["id"] + 1
    api.problem("GET", "/v1/audit?after=abc", 400, "invalid_request")
    api.problem("GET", "/v1/audit?limit=501", 422, "validation_failed")
    assert api.ok("GET", "/v1/audit/verify")["ok"] is True
    kinds = {e["kind"] for e in api.ok("GET", "/v1/audit?limit=500")["items"]}
    assert {"org.created", "agent.created", "admin_key.created"} <= kinds


def test_spend_report_groups_and_filters(api: Api) -> None:
    """Spend groups by any dimension and filters by time and by dimension."""
    agent = api.agent_session("agent_a")
    for wallet, amount in (("w1", "10.00"), ("w2", "5.50")):
        body = {"wallet": wallet, "amount": amount, "asset": "USDC"}
        auth = api.client.post("/v1/authorizations", json=body, headers=agent).json()
        api.client.post(f"/v1/authorizations/{auth['id']}/capture", headers=agent)
    by_vendor = api.ok("GET", "/v1/spend?group_by=vendor")
    assert {r["group"]: r["captured_usd"] for r in by_vendor["rows"]} == {
        "coinbase-cdp": "10.00",
        "metamask": "5.50",
    }
    only_w2 = api.ok("GET", "/v1/spend?group_by=agent&wallet=w2")
    assert only_w2["rows"][0]["captured_usd"] == "5.50"
    later = api.ok("GET", "/v1/spend?since=2026-06-16T00:00:00Z")
    assert later["rows"] == []
    api.problem("GET", "/v1/spend?group_by=planet", 400, "invalid_request")
    api.problem("GET", "/v1/spend?since=2026-06-16T00:00:00", 400, "invalid_request")
