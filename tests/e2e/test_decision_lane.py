"""The decision lane answers ``POST /v1/authorizations`` exactly as the routed app would.

Two apps on two databases in the same state, one with the lane and one without, get the same
requests; every answer must match (status, content type, replay header, body), ids aside.
A recording app behind a bare lane shows which requests the lane answers itself and that
what it passes on arrives byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from starlette.types import Message, Receive, Scope, Send
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

from treasurer.bootstrap import build_app
from treasurer.interfaces.http import HttpSettings
from treasurer.interfaces.http.decision_lane import DecisionLane
from treasurer.service.auth_limiter import FailureLimiter
from treasurer.service.credentials import Authenticator, create_admin_key

PATH = "/v1/authorizations"
OK = {"wallet": "w1", "amount": "10.00", "asset": "USDC"}
#: (headers beyond the agent's session, body): each case as a client might send it.
CASES: list[tuple[str, dict[str, str], bytes | dict[str, Any] | list[int] | None]] = [
    ("allowed", {}, OK),
    ("allowed again, keyed", {"Idempotency-Key": "k-1"}, OK),
    ("idempotent replay", {"Idempotency-Key": "k-1"}, OK),
    ("key reused for another body", {"Idempotency-Key": "k-1"}, {**OK, "amount": "11.00"}),
    ("denied by the agent budget", {}, {**OK, "amount": "995.00"}),
    ("another agent's wallet", {}, {**OK, "wallet": "w3"}),
    ("naming another agent", {}, {**OK, "agent": "agent_b"}),
    ("unknown wallet", {}, {**OK, "wallet": "nope"}),
    ("no credential", {"Authorization": ""}, OK),
    ("a bad token", {"Authorization": "Bearer tss_nope"}, OK),
    ("anonymous and malformed", {"Authorization": ""}, b'{"wallet": '),
    ("malformed JSON", {}, b'{"wallet": '),
    ("a JSON number amount", {}, b'{"wallet": "w1", "amount": 1, "asset": "USDC"}'),
    ("an unknown field", {}, {**OK, "recipeint": "0xabc"}),
    ("an array", {}, [1, 2]),
    ("an empty body", {}, b""),
    ("another content type", {"Content-Type": "text/plain"}, b'{"wallet": "w1"}'),
    ("an over-long key", {"Idempotency-Key": "k" * 201}, OK),
    ("an oversized body", {}, b'{"wallet": "' + b"w" * 70_000 + b'"}'),
    ("an admin key may not spend", {"as": "admin"}, {**OK, "agent": "agent_a"}),
]
ID = re.compile(r"\b(auth|dec|evt)_[0-9A-Za-z]+")


def _normal(response: Response) -> tuple[Any, ...]:
    """What must match: status, content type, replay header and the body with ids masked."""
    return (
        response.status_code,
        response.headers.get("content-type"),
        response.headers.get("idempotent-replayed"),
        response.headers.get("www-authenticate"),
        ID.sub(r"\1_*", response.text) if response.text else "",
    )


@pytest.fixture
def clients(tmp_path: Path, clock: FakeClock) -> Iterator[dict[str, tuple[TestClient, dict]]]:
    """Both apps with the cross-wallet org applied; each with its admin and agent headers."""
    apps: dict[str, tuple[TestClient, dict]] = {}
    with_lane = build_app(f"sqlite:///{tmp_path / 'lane.db'}", clock)
    without = build_app(
        f"sqlite:///{tmp_path / 'routed.db'}",
        clock,
        settings=HttpSettings(inline_auth=True, decision_lane=False),
    )
    opened = []
    for name, app in (("lane", with_lane), ("routed", without)):
        _key, token = create_admin_key(
            app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
        )
        admin = {"Authorization": f"Bearer {token}"}
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        assert client.post("/v1/org", json=cross_wallet_org(), headers=admin).status_code == 200
        session = client.post("/v1/agents/agent_a/sessions", headers=admin).json()
        agent = {"Authorization": f"Bearer {session['token']}"}
        apps[name] = (client, {"admin": admin, "agent": agent})
    yield apps
    for client in opened:
        client.__exit__(None, None, None)


def _send(client: TestClient, who: dict, extra: dict[str, str], body: Any) -> Response:
    headers = dict(who["admin"] if extra.get("as") == "admin" else who["agent"])
    headers.update({k: v for k, v in extra.items() if k != "as"})
    if headers.get("Authorization") == "":
        del headers["Authorization"]
    if isinstance(body, bytes):
        headers.setdefault("Content-Type", "application/json")
        return client.post(PATH, content=body, headers=headers)
    return client.post(PATH, json=body, headers=headers)


def test_the_lane_answers_as_the_routed_app(
    clients: dict[str, tuple[TestClient, dict]],
) -> None:
    """Every case gets the same answer with and without the lane, in the same order."""
    for name, extra, body in CASES:
        lane = _send(*clients["lane"], extra, body)
        routed = _send(*clients["routed"], extra, body)
        assert _normal(lane) == _normal(routed), name
    lane_client, who = clients["lane"]
    spend = lane_client.get("/v1/spend", headers=who["admin"]).json()["rows"]
    routed_client, routed_who = clients["routed"]
    assert spend == routed_client.get("/v1/spend", headers=routed_who["admin"]).json()["rows"]
    assert spend[0]["pending_usd"] == "20.00"  # the two allowed spends; the replay is not new


class Recorder:
    """The downstream app: records what reached it and the body it could read (the real
    app's lifespan still runs: it starts the store's workers)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        start: Message = {"type": "http.response.start", "status": 299, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b""})


def test_the_lane_passes_on_what_it_does_not_answer(sqlite_url: str, clock: FakeClock) -> None:
    """Well-formed authorizations stop at the lane; the rest arrive downstream untouched."""
    app = build_app(sqlite_url, clock)
    assert isinstance(app, FastAPI)
    ctx = app.state.treasurer
    _key, token = create_admin_key(ctx.credentials.store, "root", "admin", now=clock.now())
    authenticator = Authenticator(ctx.credentials.store, clock, FailureLimiter(clock))
    recorder = Recorder(app)
    lane = DecisionLane(
        recorder, context=ctx, authenticate=authenticator.authenticate, max_body_bytes=1024
    )
    admin = {"Authorization": f"Bearer {token}"}
    with TestClient(lane) as client:
        # An admin key may not spend: answered by the lane (403), nothing passed on.
        answered = client.post(PATH, json={**OK, "agent": "agent_a"}, headers=admin)
        assert answered.status_code == 403 and answered.json()["code"] == "forbidden"
        anonymous = client.post(PATH, json=OK)
        assert anonymous.status_code == 401 and recorder.bodies == []
        passed = [
            b'{"wallet": ',
            b'{"wallet": "w1", "amount": 1}',
            b"",
            b'{"wallet": "' + b"w" * 2000 + b'"}',  # over the limit: read in part, then passed
        ]
        for body in passed:
            response = client.post(PATH, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 299
        check = b'{"wallet": "w1", "amount": "10.00", "asset": "USDC"}'
        other = client.post(f"{PATH}/check", content=check)
        assert other.status_code == 299
    assert recorder.bodies == [*passed, check]
