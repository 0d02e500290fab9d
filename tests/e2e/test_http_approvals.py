"""Approvals, cancel and decommission over HTTP, on the embedded EVM.

The app is the real one over a real payment pipeline, with the approval service wired in as
``build_app`` wires it. Approvers hold real keys (Ed25519, and an EVM account signing with
EIP-191 ``personal_sign``) and sign the challenge messages the server hands out. The queue
worker of ``treasurer serve`` is one call here (``release_due`` then ``execute_ready``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import encode_defunct
from fastapi.testclient import TestClient
from httpx import Response
from tests.custodial import EVM, World, bearer, build_world, custodial_org, fresh_recipient
from tests.fakes import FakeClock

import treasurer
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.sql.approval_store import SqlApprovalStore
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.domain.errors import Forbidden
from treasurer.interfaces.http import HttpSettings, create_app
from treasurer.service.approvals import Approvals

pytestmark = pytest.mark.timeout(120)
Headers = dict[str, str]
SHOP = "0x5555555555555555555555555555555555555555"


@pytest.fixture(scope="module")
def evm() -> LocalEvm:
    return LocalEvm()


class Api:
    """The app with an admin, a finance key, an auditor, and a session per agent."""

    def __init__(self, world: World, http: TestClient) -> None:
        self.world = world
        self.http = http
        self.admin = bearer(world.admin_token)
        self.finance = bearer(world.key("finance"))
        self.auditor = bearer(world.key("auditor"))
        self.agent_a = bearer(world.session(http, "agent_a"))
        self.agent_b = bearer(world.session(http, "agent_b"))
        self.keys: dict[str, Any] = {}

    def post(self, path: str, body: Any, who: Headers, status: int = 201) -> Any:
        response = self.http.post(path, json=body, headers=who)
        assert response.status_code == status, response.text
        return response.json()

    def get(self, path: str, who: Headers | None = None) -> Any:
        response = self.http.get(path, headers=who or self.admin)
        assert response.status_code == 200, response.text
        return response.json()

    def pay(self, amount: str, key: str, to: str | None = None) -> Any:
        body = {"wallet": EVM.wallet, "recipient": to or fresh_recipient(EVM.network)}
        body |= {"amount": amount, "asset": "DUSD"}
        return self.post("/v1/payments", body, {**self.agent_a, "Idempotency-Key": key})

    def approver(self, name: str, kind: str = "ed25519") -> None:
        if kind == "ed25519":
            private = Ed25519PrivateKey.generate()
            public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
            self.keys[name] = private
        else:
            account = Account.create()
            public = account.address
            self.keys[name] = account
        body = {"id": name, "name": name.title(), "kind": kind, "public_key": public}
        self.post("/v1/approvers", body, self.admin)

    def sign(self, name: str, message: str) -> str:
        key = self.keys[name]
        if isinstance(key, Ed25519PrivateKey):
            return key.sign(message.encode()).hex()
        return "0x" + bytes(key.sign_message(encode_defunct(text=message)).signature).hex()

    def signed_vote(self, base: str, name: str, vote: str, relay: Headers) -> dict[str, Any]:
        challenge = self.post(f"{base}/challenge", {"approver": name}, relay)
        return {
            "vote": vote,
            "approver": name,
            "nonce": challenge["nonce"],
            "expires_at": challenge["expires_at"],
            "signature": self.sign(name, challenge["messages"][vote]),
        }

    def tick(self) -> Any:
        self.world.gov.release_due()
        return self.world.payments.execute_ready()


def _api(world: World, approval: dict[str, Any]) -> Iterator[Api]:
    """agent_a: instant to $100, delay to $5,000 (an hour), approval above $500 as
    ``approval`` says, $10,000 a day; serve the app with approvals wired in."""
    tokens = (world.evm.token_address, world.solana.demo_mint)
    org = custodial_org(*tokens, world.addresses, agent_daily="10000.00")
    agent = org["agents"][0]
    agent["tiers"] = {"instant_max_usd": "100.00", "delay_max_usd": "5000.00"}
    agent["tiers"]["delay_seconds"] = 3600
    agent["approval"] = {"threshold_usd": "500.00", "expiry_seconds": 3600, **approval}
    world.gov.apply(org)
    db = world.gov.sql.db
    credentials = SqlCredentialStore(db)
    world.app = create_app(
        world.gov,
        credentials,
        settings=HttpSettings(auth_max_failures=100_000),
        payments=world.payments,
        approvals=Approvals(world.gov, SqlApprovalStore(db), credentials),
    )
    try:
        with TestClient(world.app, raise_server_exceptions=False) as http:
            yield Api(world, http)
    finally:
        world.close()


@pytest.fixture
def second_agent(
    database_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm
) -> Iterator[Api]:
    yield from _api(build_world(database_url, clock, tmp_path, evm), {"second_agent": True})


@pytest.fixture
def approvers(sqlite_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm) -> Iterator[Api]:
    approval = {"approvers": ["alice", "bob", "dave"], "required": 2}
    yield from _api(build_world(sqlite_url, clock, tmp_path, evm), approval)


def problem_of(response: Response, status: int, code: str) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    return body


def test_a_second_agent_approves_a_600_payment_and_it_executes(second_agent: Api) -> None:
    """$600 waits for approval; agent_a may not approve itself; agent_b can see and approve
    it; the worker sends it and a poll reads it confirmed on the chain."""
    api, world = second_agent, second_agent.world
    to = fresh_recipient(EVM.network)
    paid = api.pay("600.00", "big", to)
    assert (paid["state"], paid["tier"]) == ("queued", "approval")
    base = f"/v1/payments/{paid['id']}/approvals"
    status = api.get(base, api.agent_a)
    assert (status["verdict"], status["state"]) == ("pending", "pending_approval")
    assert status["subject"] == paid["id"] and len(status["spend_hash"]) == 64
    own = api.http.post(base, json={"vote": "approve"}, headers=api.agent_a)
    problem_of(own, 403, "self_approval")
    assert api.get(base, api.agent_b)["ballots"] == []
    voted = api.post(base, {"vote": "approve"}, api.agent_b)
    assert (voted["verdict"], voted["state"]) == ("approved", "pending")
    assert voted["voted"]["voter"] == "agent:agent_b"
    assert [b["voter"] for b in voted["ballots"]] == ["agent:agent_b"]
    assert world.token_balance(EVM.network, to) == 0
    assert api.tick().broadcast == 1
    polled = api.get(f"/v1/payments/{paid['id']}", api.agent_a)
    assert polled["state"] == "confirmed", polled
    assert world.token_balance(EVM.network, to) == EVM.units("600")
    audit = api.get("/v1/audit?limit=500")["items"]
    refused = [e for e in audit if e["kind"] == "approval.vote_refused"]
    assert [e["payload"]["code"] for e in refused] == ["self_approval"]


def test_signed_votes_on_an_authorization_and_a_replay(approvers: Api) -> None:
    """A governance-mode authorization of $600 waits for 2 of alice, bob and dave. alice
    signs with Ed25519 (relayed by the agent's own session), a replay of her vote is refused,
    a forged one too; dave signs with EIP-191; it is approved and capturable."""
    api = approvers
    api.approver("alice")
    api.approver("bob")
    api.approver("dave", "evm")
    spend = {"wallet": "a-base", "amount": "600.00", "asset": "USDC", "recipient": SHOP}
    auth = api.post("/v1/authorizations", spend, api.agent_a)
    assert auth["state"] == "pending_approval"
    base = f"/v1/authorizations/{auth['id']}/approvals"
    alice = api.signed_vote(base, "alice", "approve", api.agent_a)
    assert api.post(base, alice, api.agent_a)["verdict"] == "pending"
    problem_of(api.http.post(base, json=alice, headers=api.agent_a), 409, "nonce_used")
    forged = {**api.signed_vote(base, "bob", "approve", api.admin), "vote": "reject"}
    problem_of(api.http.post(base, json=forged, headers=api.admin), 400, "signature_invalid")
    dave = api.signed_vote(base, "dave", "approve", api.finance)
    done = api.post(base, dave, api.finance)
    assert (done["verdict"], done["state"]) == ("approved", "pending")
    assert done["voted"]["voter"] == "approver:dave"
    assert api.get(f"/v1/authorizations/{auth['id']}", api.agent_a)["state"] == "pending"
    captured = api.post(f"/v1/authorizations/{auth['id']}/capture", {}, api.agent_a, 200)
    assert captured["state"] == "captured"
    closed = api.http.post(base, json={"vote": "approve"}, headers=api.finance)
    problem_of(closed, 409, "approval_closed")
    audit = api.get("/v1/audit?limit=500")["items"]
    refused = [e["payload"]["code"] for e in audit if e["kind"] == "approval.vote_refused"]
    assert refused == ["nonce_used", "signature_invalid", "approval_closed"]


def test_bad_votes_answer_clear_problems(approvers: Api) -> None:
    api = approvers
    api.approver("alice")
    spend = {"wallet": "a-base", "amount": "600.00", "asset": "USDC", "recipient": SHOP}
    base = f"/v1/authorizations/{api.post('/v1/authorizations', spend, api.agent_a)['id']}"
    base += "/approvals"
    alice = api.signed_vote(base, "alice", "approve", api.admin)
    no_nonce = {k: v for k, v in alice.items() if k != "nonce"}
    assert (
        problem_of(api.http.post(base, json=no_nonce, headers=api.admin), 400, "field_required")[
            "field"
        ]
        == "nonce"
    )
    naive = {**alice, "expires_at": "2026-06-15T12:10:00"}
    problem_of(api.http.post(base, json=naive, headers=api.admin), 422, "validation_failed")
    problem_of(
        api.http.post(base, json={"vote": "maybe"}, headers=api.admin), 422, "validation_failed"
    )
    unsigned = {"vote": "approve", "approver": "alice"}
    problem_of(api.http.post(base, json=unsigned, headers=api.admin), 400, "field_required")
    problem_of(
        api.http.post(f"{base}/challenge", json={"approver": "nobody"}, headers=api.admin),
        404,
        "not_found",
    )
    problem_of(api.http.post(base, json={"vote": "approve"}, headers=api.auditor), 403, "forbidden")
    problem_of(api.http.get(base, headers=api.agent_b), 404, "not_found")  # not asked of it
    assert api.get(base, api.auditor)["verdict"] == "pending"


def test_cancel_releases_the_reservation_and_only_queued_ones(second_agent: Api) -> None:
    """agent_a cancels its delayed payment (agent_b cannot even see it, an auditor may not):
    the reservation is released at once, and a repeat returns the cancelled payment. A sent
    payment is not cancellable; a finance key cancels another queued one."""
    api = second_agent
    queued = api.pay("200.00", "d1")
    assert (queued["state"], queued["tier"]) == ("queued", "delay")
    path = f"/v1/payments/{queued['id']}/cancel"
    problem_of(api.http.post(path, headers=api.agent_b), 404, "not_found")
    problem_of(api.http.post(path, headers=api.auditor), 403, "forbidden")
    before = api.get("/v1/spend?group_by=agent")["rows"][0]["pending_usd"]
    cancelled = api.post(path, None, api.agent_a, 200)
    assert cancelled["state"] == "cancelled" and "agent:agent_a" in cancelled["error"]
    after = api.get("/v1/spend?group_by=agent")["rows"][0]["pending_usd"]
    assert (before, after) == ("200.00", "0.00")
    assert api.post(path, None, api.agent_a, 200)["state"] == "cancelled"
    sent = api.pay("25.00", "i1")
    assert sent["state"] == "broadcast"
    refused = api.http.post(f"/v1/payments/{sent['id']}/cancel", headers=api.agent_a)
    problem_of(refused, 409, "payment_not_cancellable")
    other = api.pay("300.00", "d2")
    done = api.post(f"/v1/payments/{other['id']}/cancel", None, api.finance, 200)
    assert done["state"] == "cancelled"
    listed = api.get("/v1/payments?state=cancelled")["items"]
    assert {p["id"] for p in listed} == {queued["id"], other["id"]}


def test_decommission_over_http_reports_what_it_did(second_agent: Api) -> None:
    api = second_agent
    in_flight = api.pay("25.00", "i1")
    queued = api.pay("200.00", "d1")
    awaiting = api.pay("600.00", "a1")
    spend = {"wallet": "a-base", "amount": "50.00", "asset": "USDC", "recipient": SHOP}
    external = api.post("/v1/authorizations", spend, api.agent_a)
    report = api.post("/v1/agents/agent_a/decommission", None, api.admin, 200)
    assert report == {
        "agent": "agent_a",
        "status": "decommissioned",
        "changed": True,
        "sessions_revoked": 1,
        "wallets_frozen": 3,
        "payments_cancelled": 2,
        "authorizations_voided": 1,
        "payments_in_flight": 1,
    }
    problem_of(api.http.get("/v1/wallets", headers=api.agent_a), 401, "unauthenticated")
    for payment in (queued, awaiting):
        assert api.get(f"/v1/payments/{payment['id']}")["state"] == "cancelled"
    capture = api.http.post(
        f"/v1/authorizations/{external['id']}/capture", json={}, headers=api.admin
    )
    problem_of(capture, 409, "authorization_not_pending")
    assert api.get(f"/v1/payments/{in_flight['id']}")["state"] == "confirmed"
    frozen = {f["scope"] for f in api.get("/v1/freezes")["items"]}
    assert frozen == {"wallet:a-evm-local", "wallet:a-solana-local", "wallet:a-base"}
    again = api.post("/v1/agents/agent_a/decommission", None, api.admin, 200)
    assert again["changed"] is False and again["wallets_frozen"] == 0


def test_the_sdk_votes_signs_and_cancels(second_agent: Api) -> None:
    """The remote client's approval and cancel methods, over the same app."""
    api = second_agent
    api.approver("carol")
    token_b = api.agent_b["Authorization"].removeprefix("Bearer ")
    token_a = api.agent_a["Authorization"].removeprefix("Bearer ")
    agent_a = treasurer.connect("http://testserver", token_a, http=api.http)
    agent_b = treasurer.connect("http://testserver", token_b, http=api.http)
    paid = api.pay("600.00", "big")
    assert agent_a.approvals(paid["id"]).verdict == "pending"
    with pytest.raises(Forbidden) as exc:
        agent_a.vote(paid["id"])
    assert exc.value.code == "self_approval"
    with pytest.raises(Forbidden) as exc:  # carol is no approver of a second-agent policy
        agent_a.vote_signed(
            paid["id"], approver="carol", sign=lambda m: api.sign("carol", m), vote="approve"
        )
    assert exc.value.code == "approver_not_eligible"
    assert agent_b.vote(paid["id"], "reject").verdict == "rejected"
    assert api.tick().failed == 1
    queued = api.pay("200.00", "d1")
    assert agent_a.cancel(queued["id"]).state == "cancelled"
    assert agent_a.cancel(queued["id"]).state == "cancelled"  # idempotent
