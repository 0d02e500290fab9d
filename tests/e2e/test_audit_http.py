"""The audit trail over HTTP: ``GET /v1/audit`` (filters, and each event's ``seq``, ``hash``
and ``prev_hash`` as an export has them) and ``GET /v1/audit/verify``.

The app is the production one (``build_app``) with the audit trail attached to its governance
the way the composition root attaches it (``governance.audit``); a server built without one
keeps the unfiltered list and answers 501 for the rest.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.sql.migrations.v0011_audit_append_only import drop_guards
from treasurer.adapters.sql.store import SqlStore
from treasurer.bootstrap import build_app, open_governance
from treasurer.interfaces.http import create_app
from treasurer.service.admin import Governance
from treasurer.service.audit import AuditTrail, audit_of
from treasurer.service.audit_signing import Ed25519Signer
from treasurer.service.credentials import create_admin_key

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
Headers = dict[str, str]


def signed_app(database_url: str, clock: FakeClock) -> tuple[FastAPI, AuditTrail]:
    """The production app over a governance whose trail signs with :data:`SIGNER`."""
    governance = open_governance(database_url, clock=clock, audit_signer=SIGNER)
    trail = audit_of(governance)
    assert trail is not None
    return build_app(database_url, clock, governance=governance), trail


def seal_all(trail: AuditTrail, timeout_s: float = 60.0) -> None:
    """Seal everything; on PostgreSQL another test's open transaction may delay it."""
    deadline = time.monotonic() + timeout_s
    while trail.settle(0.5):
        assert time.monotonic() < deadline, "events stayed unsealed"


@dataclass
class Api:
    client: TestClient
    admin: Headers
    trail: AuditTrail
    app: FastAPI

    def get(self, path: str, status: int = 200) -> Any:
        response = self.client.get(path, headers=self.admin)
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture
def api(database_url: str, clock: FakeClock) -> Iterator[Api]:
    app, trail = signed_app(database_url, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    admin = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.post("/v1/org", json=cross_wallet_org(), headers=admin).status_code == 200
        agent = client.post("/v1/agents/agent_a/sessions", json={"name": "t"}, headers=admin)
        spend = {"Authorization": f"Bearer {agent.json()['token']}"}
        for amount in ("10.00", "5000.00", "20.00"):
            body = {"wallet": "w1", "amount": amount, "asset": "USDC", "recipient": SHOP}
            assert client.post("/v1/authorizations", json=body, headers=spend).status_code == 201
        seal_all(trail)
        yield Api(client, admin, trail, app)
    app.state.treasurer.governance.close()


def test_verify_answers_on_the_live_chain(api: Api) -> None:
    """Intact: ok, every event counted, nothing waiting; pinned to the signing key."""
    api.trail.checkpoint()
    verdict = api.get(f"/v1/audit/verify?public_key={SIGNER.public_key}")
    assert verdict["ok"] is True, verdict
    assert verdict["first_broken"] is None
    assert verdict["events"] == verdict["last_seq"] > 10
    assert (verdict["first_seq"], verdict["anchor_seq"]) == (1, None)
    assert verdict["unsealed_events"] == 0
    assert verdict["signed_through"] == verdict["last_seq"]
    assert verdict["key_ids"] == [SIGNER.key_id]


def test_verify_names_the_first_event_edited_in_the_database(api: Api) -> None:
    """A broken chain is an answer (200, ok false), naming the event by seq and id."""
    db = api.app.state.treasurer.governance.sql.db
    # An attacker with DDL rights drops the append-only triggers (migration 11) first: with
    # them in place the database refuses the UPDATE outright.
    for statement in drop_guards(db.dialect):
        db.run(lambda tx, s=statement: tx.execute(s))
    edited = api.app.state.treasurer.governance.sql.db.run(
        lambda tx: tx.execute("UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = 4")
    )
    assert edited == 1
    verdict = api.get("/v1/audit/verify")
    assert verdict["ok"] is False
    assert verdict["first_broken"]["problem"] == "altered"
    assert verdict["first_broken"]["seq"] == 4
    assert "seq 4" in verdict["first_broken"]["message"]


def test_verify_refuses_a_malformed_public_key(api: Api) -> None:
    response = api.client.get("/v1/audit/verify?public_key=nope", headers=api.admin)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


def test_the_list_filters_by_what_events_concern(api: Api) -> None:
    """Agent, wallet, outcome, kind and time filters, with the cursor carried across pages."""
    denied = api.get("/v1/audit?agent=agent_a&outcome=denied")["items"]
    assert [e["kind"] for e in denied] == ["authorization.denied"]
    assert json.dumps(denied[0]["payload"]).count("5000") >= 1
    decisions = api.get("/v1/audit?wallet=w1&chain=base&kind=authorization.created")["items"]
    assert len(decisions) == 2
    first = api.get("/v1/audit?agent=agent_a&limit=2")
    rest = api.get(f"/v1/audit?agent=agent_a&limit=500&after={first['next']}")
    every = api.get("/v1/audit?agent=agent_a&limit=500")["items"]
    assert first["items"] + rest["items"] == every
    assert api.get("/v1/audit?since=2100-01-01T00:00:00Z")["items"] == []
    assert api.get("/v1/audit?until=2000-01-01T00:00:00Z")["items"] == []
    assert len(api.get("/v1/audit?since=2000-01-01T00:00:00Z&limit=500")["items"]) == len(
        api.get("/v1/audit?limit=500")["items"]
    )


def _exported_events(trail: AuditTrail) -> dict[int, dict[str, Any]]:
    """The event lines of a whole export, by event id."""
    out = io.StringIO()
    trail.export(out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return {line["id"]: line for line in lines if line["type"] == "event"}


def _every_event(api: Api, query: str = "") -> list[dict[str, Any]]:
    """Every listed event, following the cursor."""
    items: list[dict[str, Any]] = []
    after = "0"
    while True:
        page = api.get(f"/v1/audit?limit=50&after={after}{query}")
        items += page["items"]
        if page["next"] is None:
            return items
        after = page["next"]


def test_listed_events_carry_their_place_in_the_chain_as_exported(api: Api) -> None:
    """Sealed events list ``seq``, ``hash`` and ``prev_hash``, equal to the export's line of
    the same event, so an auditor can match the API with the file; they link up."""
    listed = _every_event(api)
    assert len(listed) > 10
    exported = _exported_events(api.trail)
    assert sorted(exported) == sorted(e["id"] for e in listed)
    for event in listed:
        line = exported[event["id"]]
        assert isinstance(event["seq"], int) and len(event["hash"]) == 64
        assert (event["seq"], event["hash"], event["prev_hash"]) == (
            line["seq"],
            line["hash"],
            line["prev_hash"],
        )
        assert (event["kind"], event["actor"], event["subject"]) == (
            line["kind"],
            line["actor"],
            line["subject"],
        )
    by_seq = {e["seq"]: e for e in listed}
    assert sorted(by_seq) == list(range(1, len(listed) + 1))
    assert by_seq[1]["prev_hash"] == "0" * 64
    for seq in range(2, len(listed) + 1):
        assert by_seq[seq]["prev_hash"] == by_seq[seq - 1]["hash"]
    # The filtered list answers from the same columns.
    [denied] = api.get("/v1/audit?agent=agent_a&outcome=denied")["items"]
    assert denied == next(e for e in listed if e["id"] == denied["id"])


def test_an_event_lists_with_a_null_position_until_it_is_sealed(api: Api) -> None:
    """The plain list does not seal: a fresh event is listed at once, with ``seq``, ``hash``
    and ``prev_hash`` null; once sealed (a filtered list seals first) it carries them."""
    last = _every_event(api)[-1]["id"]
    session = api.client.post("/v1/agents/agent_b/sessions", json={"name": "t"}, headers=api.admin)
    assert session.status_code == 201, session.text
    fresh = api.get(f"/v1/audit?after={last}")["items"]
    assert fresh, "creating a session is audited"
    for event in fresh:
        assert (event["seq"], event["hash"], event["prev_hash"]) == (None, None, None)
    seal_all(api.trail)
    sealed = api.get(f"/v1/audit?after={last}")["items"]
    assert [e["id"] for e in sealed] == [e["id"] for e in fresh]
    exported = _exported_events(api.trail)
    for event in sealed:
        line = exported[event["id"]]
        assert (event["seq"], event["hash"], event["prev_hash"]) == (
            line["seq"],
            line["hash"],
            line["prev_hash"],
        )


def test_the_list_refuses_bad_filters(api: Api) -> None:
    for query, status in (
        ("since=2026-01-01T00:00:00", 400),  # no time zone
        ("outcome=maybe", 422),
        ("after=99999999999999999999", 400),
        ("after=%C2%B2", 400),  # a digit, but not an ASCII one
    ):
        response = api.client.get(f"/v1/audit?{query}", headers=api.admin)
        assert response.status_code == status, (query, response.text)


def test_a_server_without_the_trail_keeps_the_plain_list(sqlite_url: str, clock: FakeClock) -> None:
    """Governance with no ``audit`` attached: the list as before, filters and verify 501."""
    store = SqlStore(sqlite_url)
    store.migrate()
    app = create_app(Governance(store, clock), SqlCredentialStore(store.db))
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    admin = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        listed = client.get("/v1/audit", headers=admin)
        assert listed.status_code == 200
        assert listed.json()["items"], "creating the admin key is audited"
        for event in listed.json()["items"]:  # the fields are there, null: nothing seals here
            assert (event["seq"], event["hash"], event["prev_hash"]) == (None, None, None)
        assert client.get("/v1/audit?kind=x", headers=admin).status_code == 501
        assert client.get("/v1/audit/verify", headers=admin).status_code == 501
    store.close()
