"""Authentication and authorization of the HTTP API, route by route.

Every route of the app is enumerated from ``app.routes``, so a route added later without a
credential check fails here without anyone having to remember to list it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

from treasurer.bootstrap import build_app
from treasurer.bootstrap.vendors import install_vendor_hooks
from treasurer.interfaces.http import PUBLIC_PATHS, HttpSettings
from treasurer.interfaces.http.app import CALLBACK_PATHS
from treasurer.service.credentials import create_admin_key

Headers = dict[str, str]
#: What an agent session may call; every other route must refuse it.
AGENT_ROUTES = {
    ("POST", "/v1/authorizations"),
    ("POST", "/v1/authorizations/check"),
    ("GET", "/v1/authorizations/{authorization_id}"),
    ("POST", "/v1/authorizations/{authorization_id}/capture"),
    ("POST", "/v1/authorizations/{authorization_id}/void"),
    ("GET", "/v1/wallets"),
    ("GET", "/v1/wallets/{wallet_id}"),
    ("GET", "/v1/wallets/{wallet_id}/balance"),
    ("GET", "/v1/policies"),
    ("GET", "/v1/policies/{policy_id}"),
    ("GET", "/v1/policies/{policy_id}/history"),
    ("POST", "/v1/payments"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/{payment_id}"),
    ("POST", "/v1/payments/{payment_id}/cancel"),
    # Approvals: an agent votes as the second agent a policy asks for, and relays the signed
    # votes of approvers (the signature, not the session, says who voted).
    ("GET", "/v1/payments/{payment_id}/approvals"),
    ("POST", "/v1/payments/{payment_id}/approvals"),
    ("POST", "/v1/payments/{payment_id}/approvals/challenge"),
    ("GET", "/v1/authorizations/{authorization_id}/approvals"),
    ("POST", "/v1/authorizations/{authorization_id}/approvals"),
    ("POST", "/v1/authorizations/{authorization_id}/approvals/challenge"),
}
#: Writes nothing although it is a POST (its input is a whole draft org file): auditors may run it.
AUDITOR_POSTS = {("POST", "/v1/backtests")}
#: Routes only an agent session may call: every key, whatever its role, gets 403.
AGENT_ONLY_ROUTES = {("POST", "/v1/payments")}
#: Paths that take no Treasurer credential: the public ones, and vendor callbacks, which
#: authenticate by the vendor's own signature (tested below and in test_vendor_fireblocks).
UNCREDENTIALED = PUBLIC_PATHS | CALLBACK_PATHS


@dataclass
class Api:
    """A running app with an org applied and helpers to mint credentials."""

    app: FastAPI
    client: TestClient
    clock: FakeClock
    admin: Headers

    def key(self, role: str, department: str | None = None) -> Headers:
        store = self.app.state.treasurer.credentials.store
        _key, token = create_admin_key(store, role, role, department, now=self.clock.now())
        return bearer(token)

    def session(self, agent: str, **body: object) -> tuple[str, Headers]:
        created = self.client.post(f"/v1/agents/{agent}/sessions", json=body, headers=self.admin)
        assert created.status_code == 201, created.text
        return created.json()["id"], bearer(created.json()["token"])


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_api(sqlite_url: str, clock: FakeClock) -> Iterator[Callable[..., Api]]:
    """Build the app (optionally with other HTTP settings), apply the org, mint a root key."""
    clients: list[TestClient] = []

    def make(**settings: Any) -> Api:
        app = build_app(sqlite_url, clock, settings=HttpSettings(**settings))
        store = app.state.treasurer.credentials.store
        _key, token = create_admin_key(store, "root", "admin", now=clock.now())
        client = TestClient(app)
        clients.append(client)
        applied = client.post("/v1/org", json=cross_wallet_org(), headers=bearer(token))
        assert applied.status_code == 200, applied.text
        return Api(app, client, clock, bearer(token))

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    """An app whose failure limit is out of reach, so route sweeps are not rate limited."""
    return make_api(auth_max_failures=100_000)


def operations(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route of the app, HEAD aside.

    Recent FastAPI versions keep included routers lazily in ``app.routes``;
    ``iter_route_contexts`` flattens them (older versions list plain routes).
    """
    flatten = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: list[Any] = list(flatten(app.routes)) if flatten else list(app.routes)
    found = []
    for route in routes:
        assert isinstance(route.path, str) and route.methods, route
        for method in sorted(set(route.methods) - {"HEAD"}):
            found.append((method, route.path))
    assert len(set(found)) == len(found)
    return found


def fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "dummy", path)


def call(client: TestClient, method: str, path: str, headers: Headers) -> Response:
    """Send a request with a body that would not even parse: credentials come first."""
    body = None if method == "GET" else b'{"broken json'
    headers = {**headers, "Content-Type": "application/json"}
    response: Response = client.request(method, fill(path), content=body, headers=headers)
    return response


def assert_problem(response: Response, status: int, code: str) -> Any:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert {"type", "title", "detail"} <= set(body)
    return body


def test_only_three_routes_are_public(api: Api) -> None:
    """/health, /openapi.json and /docs answer without a credential; nothing else does."""
    public = {path for _method, path in operations(api.app) if path in PUBLIC_PATHS}
    assert public == {"/health", "/openapi.json", "/docs"}
    for path in sorted(public):
        assert api.client.get(path).status_code == 200
    assert api.client.get("/health").json() == {"status": "ok"}


def test_vendor_callbacks_are_the_only_other_routes_without_a_credential(
    api: Api, tmp_path: Path
) -> None:
    """Each vendor callback route refuses, with 401, whatever its vendor did not sign: no
    credential, a broken body, even a valid admin key (a Treasurer credential is not the
    vendor's signature). Without a configured handler it answers 404 vendor_not_configured."""
    callbacks = {(m, p) for m, p in operations(api.app) if p in CALLBACK_PATHS}
    assert {p for _m, p in callbacks} == set(CALLBACK_PATHS)
    for method, path in sorted(callbacks):
        assert api.client.request(method, path, content=b"x").status_code == 404
    install_fireblocks_handler(api.app, tmp_path)
    for method, path in sorted(callbacks):
        for headers in ({}, api.admin, {"Authorization": "Bearer not-a-token"}):
            response = call(api.client, method, path, headers)
            assert response.status_code == 401, (path, response.text)


def install_fireblocks_handler(app: FastAPI, data_dir: Path) -> None:
    """A Fireblocks handler with fresh keys (nobody in this test holds the Co-Signer's)."""
    pems = {
        name: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for name in ("cosigner", "callback")
    }
    (data_dir / "cosigner.pem").write_bytes(
        pems["cosigner"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    private = data_dir / "callback.pem"
    private.write_bytes(
        pems["callback"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    (data_dir / "fireblocks.yaml").write_text(
        "cosigner_public_key: cosigner.pem\n"
        "callback_private_key: callback.pem\n"
        'wallets: {"0": w1}\n'
    )
    install_vendor_hooks(app, data_dir)


def test_every_private_route_rejects_missing_and_wrong_credentials(api: Api) -> None:
    """Each route, with no credential, a malformed one, an unknown key and a wrong secret: 401."""
    root_id = api.client.get("/v1/admin-keys", headers=api.admin).json()["items"][0]["id"]
    wrong = [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer("tsk_0123456789abcdef_" + "x" * 43),
        bearer(f"tsk_{root_id}_" + "y" * 43),
        bearer("tss_0123456789abcdef_" + "z" * 43),
    ]
    private = [(m, p) for m, p in operations(api.app) if p not in UNCREDENTIALED]
    assert len(private) >= 40
    for method, path in [*private, ("GET", "/v1/no-such-route"), ("POST", "/nowhere")]:
        for headers in wrong:
            response = call(api.client, method, path, headers)
            assert_problem(response, 401, "unauthenticated")
            assert response.headers["www-authenticate"].startswith("Bearer")


def test_an_agent_session_is_refused_on_every_admin_route(api: Api) -> None:
    """Every route outside the agent's own spend, wallet and policy routes answers 403."""
    _sid, agent = api.session("agent_a")
    private = [(m, p) for m, p in operations(api.app) if p not in UNCREDENTIALED]
    admin_routes = [op for op in private if op not in AGENT_ROUTES]
    assert len(admin_routes) >= 30
    for method, path in admin_routes:
        body: dict[str, str] | None = None if method == "GET" else {}
        response = api.client.request(method, fill(path), json=body, headers=agent)
        assert_problem(response, 403, "forbidden")


def test_an_auditor_key_is_refused_on_every_non_get_route(api: Api) -> None:
    """An auditor reads everything but any POST, PUT, PATCH or DELETE is 403 (a backtest,
    which only reads, aside: tested in test_http_simulation)."""
    auditor = api.key("auditor")
    assert set(operations(api.app)) >= AUDITOR_POSTS
    writes = [
        (m, p)
        for m, p in operations(api.app)
        if m != "GET" and p not in UNCREDENTIALED and (m, p) not in AUDITOR_POSTS
    ]
    assert len(writes) >= 20
    for method, path in writes:
        response = api.client.request(method, fill(path), json={}, headers=auditor)
        assert_problem(response, 403, "forbidden")
    assert api.client.get("/v1/agents", headers=auditor).status_code == 200
    assert api.client.get("/v1/audit", headers=auditor).status_code == 200


def test_only_an_agent_session_may_pay(api: Api) -> None:
    """Every key role is refused on the agent-only routes, with a message naming the fix."""
    assert set(operations(api.app)) >= AGENT_ONLY_ROUTES
    body = {"wallet": "w1", "recipient": "0x" + "5" * 40, "amount": "1.00", "asset": "USDC"}
    for role in ("admin", "finance", "auditor"):
        for method, path in AGENT_ONLY_ROUTES:
            response = api.client.request(method, path, json=body, headers=api.key(role))
            detail = assert_problem(response, 403, "forbidden")["detail"]
            assert "session" in detail or "read-only" in detail


def test_an_agent_cannot_see_or_use_another_agents_wallets(api: Api) -> None:
    """agent_b neither lists, reads nor spends from agent_a's wallets."""
    _sid, agent_b = api.session("agent_b")
    listed = api.client.get("/v1/wallets", headers=agent_b).json()["items"]
    assert [w["id"] for w in listed] == ["w3"]
    for path in ("/v1/wallets/w1", "/v1/wallets/w1/balance"):
        assert_problem(api.client.get(path, headers=agent_b), 404, "not_found")
    spend = {"wallet": "w1", "amount": "10.00", "asset": "USDC"}
    for route in ("/v1/authorizations", "/v1/authorizations/check"):
        assert_problem(api.client.post(route, json=spend, headers=agent_b), 404, "not_found")
        as_other = {**spend, "wallet": "w3", "agent": "agent_a"}
        refused = api.client.post(route, json=as_other, headers=agent_b)
        assert assert_problem(refused, 403, "forbidden")["field"] == "agent"
    audit = api.client.get("/v1/audit?limit=500", headers=api.admin).json()["items"]
    assert any(e["kind"] == "access.denied" and e["actor"] == "agent:agent_b" for e in audit)


def test_an_agent_cannot_read_or_settle_another_agents_authorization(api: Api) -> None:
    """agent_a's authorization is invisible to agent_b: read, capture and void are 404."""
    _sa, agent_a = api.session("agent_a")
    _sb, agent_b = api.session("agent_b")
    spend = {"wallet": "w1", "amount": "10.00", "asset": "USDC"}
    auth_id = api.client.post("/v1/authorizations", json=spend, headers=agent_a).json()["id"]
    base = f"/v1/authorizations/{auth_id}"
    assert_problem(api.client.get(base, headers=agent_b), 404, "not_found")
    for action in ("capture", "void"):
        assert_problem(api.client.post(f"{base}/{action}", headers=agent_b), 404, "not_found")
    assert api.client.get(base, headers=agent_a).json()["state"] == "pending"


def test_an_agent_reads_only_the_policies_in_force_for_it(api: Api) -> None:
    """agent_b sees its own, its department's and the org's budgets, never agent_a's."""
    _sid, agent_b = api.session("agent_b")
    ids = {p["id"] for p in api.client.get("/v1/policies", headers=agent_b).json()["items"]}
    assert ids == {"agent:agent_b:budget:day", "department:ops:budget:day", "org:acme:budget:day"}
    other = "/v1/policies/agent:agent_a:budget:day"
    for path in (other, f"{other}/history"):
        assert_problem(api.client.get(path, headers=agent_b), 404, "not_found")
    mine = api.client.get("/v1/policies/agent:agent_b:budget:day/history", headers=agent_b)
    assert [v["version"] for v in mine.json()] == [1]


def test_rotation_and_revocation_take_effect_on_the_next_request(api: Api) -> None:
    """After rotate the old token fails at once and the new one works; revoke ends it."""
    session_id, old = api.session("agent_a")
    assert api.client.get("/v1/wallets", headers=old).status_code == 200
    rotated = api.client.post(f"/v1/agents/agent_a/sessions/{session_id}/rotate", headers=api.admin)
    assert rotated.status_code == 201
    new = bearer(rotated.json()["token"])
    assert_problem(api.client.get("/v1/wallets", headers=old), 401, "unauthenticated")
    assert api.client.get("/v1/wallets", headers=new).status_code == 200
    revoked = api.client.delete(
        f"/v1/agents/agent_a/sessions/{rotated.json()['id']}", headers=api.admin
    )
    assert revoked.json()["active"] is False
    assert_problem(api.client.get("/v1/wallets", headers=new), 401, "unauthenticated")
    again = api.client.post(f"/v1/agents/agent_a/sessions/{session_id}/rotate", headers=api.admin)
    assert_problem(again, 409, "session_not_active")


def test_a_session_expires(api: Api) -> None:
    """A session created for one hour fails once the clock passes that hour."""
    _sid, agent = api.session("agent_a", ttl_s=3600)
    assert api.client.get("/v1/wallets", headers=agent).status_code == 200
    api.clock.advance(seconds=3600)
    assert_problem(api.client.get("/v1/wallets", headers=agent), 401, "unauthenticated")


def test_decommission_revokes_every_session(api: Api) -> None:
    """Decommissioning an agent ends all its sessions and refuses new ones."""
    _s1, first = api.session("agent_a")
    _s2, second = api.session("agent_a")
    done = api.client.post("/v1/agents/agent_a/decommission", headers=api.admin)
    assert done.json() == {
        "agent": "agent_a",
        "status": "decommissioned",
        "changed": True,
        "sessions_revoked": 2,
        "wallets_frozen": 2,
        "payments_cancelled": 0,
        "authorizations_voided": 0,
        "payments_in_flight": 0,
    }
    for headers in (first, second):
        assert_problem(api.client.get("/v1/wallets", headers=headers), 401, "unauthenticated")
    refused = api.client.post("/v1/agents/agent_a/sessions", headers=api.admin)
    assert_problem(refused, 409, "agent_decommissioned")


def test_repeated_failures_from_one_source_are_rate_limited_and_audited(
    make_api: Callable[..., Api],
) -> None:
    """Ten failures in a minute block the source (429 + Retry-After), even for a good key."""
    api = make_api()
    wrong = bearer("tsk_0123456789abcdef_" + "w" * 43)
    for _ in range(10):
        assert_problem(api.client.get("/v1/agents", headers=wrong), 401, "unauthenticated")
    blocked = api.client.get("/v1/agents", headers=api.admin)
    assert_problem(blocked, 429, "rate_limited")
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert api.client.get("/health").status_code == 200
    api.clock.advance(seconds=61)
    events = api.client.get("/v1/audit?limit=500", headers=api.admin).json()["items"]
    failed = [e for e in events if e["kind"] == "auth.failed"]
    assert len(failed) == 10
    assert {e["payload"]["source"] for e in failed} == {"testclient"}
    assert {e["payload"]["reason"] for e in failed} == {"wrong_credential"}
    assert any(e["kind"] == "auth.rate_limited" for e in events)
    assert "w" * 43 not in json.dumps(events)


def test_a_department_key_sees_only_its_department(api: Api) -> None:
    """A key scoped to ops sees ops' agents and spend, not another department's."""
    api.client.post("/v1/departments", json={"id": "sales"}, headers=api.admin)
    api.client.post("/v1/agents", json={"id": "seller", "department": "sales"}, headers=api.admin)
    scoped = api.key("finance", department="ops")
    agents = api.client.get("/v1/agents", headers=scoped).json()["items"]
    assert [a["id"] for a in agents] == ["agent_a", "agent_b"]
    assert_problem(api.client.get("/v1/agents/seller", headers=scoped), 404, "not_found")
    assert_problem(api.client.get("/v1/departments/sales", headers=scoped), 404, "not_found")
    refused = api.client.post("/v1/freezes", json={"scope": "agent:seller"}, headers=scoped)
    assert_problem(refused, 403, "forbidden")
    assert api.client.post("/v1/freezes", json={"scope": "agent:agent_b"}, headers=scoped).json()[
        "changed"
    ]
    assert_problem(api.client.get("/v1/audit", headers=scoped), 403, "forbidden")
    assert_problem(api.client.get("/v1/org", headers=scoped), 403, "forbidden")
