"""``GET /v1/spend/items``: the itemized spend report over HTTP and through the SDK.

A small, hand-made quarter over two departments: captures (one partial, with a sub-cent
amount), a spend left open, a void and a denial, plus a capture in March outside the range.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.contract.test_q2_report import _org
from tests.fakes import FakeClock
from tests.orgs import SHOP

import treasurer
from treasurer.bootstrap import build_app
from treasurer.service.credentials import create_admin_key

Q2 = "since=2026-04-01T00:00:00Z&until=2026-07-01T00:00:00Z"
Q2_START = datetime(2026, 4, 1, tzinfo=UTC)
Q2_END = datetime(2026, 7, 1, tzinfo=UTC)


@dataclass
class Api:
    http: TestClient
    headers: dict[str, str]
    ids: dict[str, str]  # what each spend of the fixture is -> its authorization id

    def key(self, role: str, department: str | None = None) -> dict[str, str]:
        store = self.http.app.state.treasurer.credentials.store  # type: ignore[attr-defined]
        now = datetime(2026, 6, 30, tzinfo=UTC)
        _key, token = create_admin_key(store, role, role, department, now=now)
        return {"Authorization": f"Bearer {token}"}

    def items(self, query: str, headers: dict[str, str] | None = None) -> list[dict[str, object]]:
        got = self.http.get(f"/v1/spend/items?{query}", headers=headers or self.headers)
        assert got.status_code == 200, got.text
        items: list[dict[str, object]] = got.json()["items"]
        return items


@pytest.fixture
def api(database_url: str, clock: FakeClock) -> Iterator[Api]:
    app = build_app(database_url, clock)
    gov = app.state.treasurer.governance
    gov.apply(_org())
    ids: dict[str, str] = {}

    def spend(name: str, agent: str, wallet: str, amount: str, then: str | None) -> None:
        clock.advance(hours=1)
        result = gov.authorize(
            agent=agent, wallet=wallet, amount=amount, asset="USDC", recipient=SHOP
        )
        ids[name] = result.id
        if then == "capture":
            gov.capture(result.id)
        elif then == "void":
            gov.void(result.id)
        elif then is not None:
            gov.capture(result.id, amount=then)

    clock.set(datetime(2026, 3, 31, 20, tzinfo=UTC))
    spend("march", "agent_a", "w1", "40", "capture")
    clock.set(datetime(2026, 5, 2, 9, tzinfo=UTC))
    spend("ops_full", "agent_a", "w1", "100.25", "capture")
    spend("ops_partial", "agent_a", "w2", "50", "0.000001")
    spend("ops_open", "agent_b", "w3", "20", None)
    spend("ops_void", "agent_a", "w1", "7", "void")
    spend("ops_denied", "agent_b", "w3", "4999", None)
    spend("growth_full", "agent_c", "w4", "12.5", "capture")
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "auditor", now=clock.now()
    )
    with TestClient(app) as http:
        yield Api(http, {"Authorization": f"Bearer {token}"}, ids)


SPENT = ("ops_full", "ops_partial", "ops_open", "growth_full")


def test_pages_cover_every_spend_item_once(api: Api) -> None:
    seen: list[str] = []
    after = ""
    for _ in range(10):
        body = api.http.get(f"/v1/spend/items?{Q2}&limit=1{after}", headers=api.headers).json()
        assert len(body["items"]) <= 1
        seen += [i["id"] for i in body["items"]]
        if body["next"] is None:
            break
        after = f"&after={body['next']}"
    assert seen == [api.ids[name] for name in SPENT]  # creation order, each once
    everything = api.items(f"{Q2}&limit=500")
    assert [i["id"] for i in everything] == seen
    by_id = {i["id"]: i for i in everything}
    full = by_id[api.ids["ops_full"]]
    assert (full["state"], full["captured_usd"], full["chain"]) == ("captured", "100.25", "base")
    assert full["decision"]["allowed"] is True and full["decision"]["policy_versions"]
    assert by_id[api.ids["ops_open"]]["state"] == "pending"
    assert api.ids["march"] not in by_id  # before the quarter: same range as /v1/spend


def test_the_csv_has_one_row_per_item_with_exact_amounts(api: Api) -> None:
    got = api.http.get(f"/v1/spend/items?{Q2}&format=csv", headers=api.headers)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(got.text)))
    assert list(rows[0]) == [
        "id",
        "created_at",
        "agent",
        "wallet",
        "chain",
        "asset",
        "amount",
        "captured_amount",
        "value_usd",
        "captured_usd",
        "state",
        "tier",
        "tx_hash",
        "reasons",
        "policies",
    ]
    assert [r["id"] for r in rows] == [api.ids[name] for name in SPENT]
    partial = rows[1]
    assert (partial["captured_amount"], partial["captured_usd"]) == ("0.000001", "0.000001")
    assert (partial["amount"], partial["value_usd"], partial["chain"]) == (
        "50",
        "50.00",
        "ethereum",
    )
    assert all("@" in r["policies"] for r in rows)
    captured = sum((Decimal(r["captured_usd"]) for r in rows if r["captured_usd"]), Decimal(0))
    [org] = api.http.get(f"/v1/spend?group_by=org&{Q2}", headers=api.headers).json()["rows"]
    assert captured == Decimal(org["captured_usd"]) == Decimal("112.750001")
    reserved = [Decimal(r["value_usd"]) for r in rows if r["state"] == "pending"]
    assert reserved == [Decimal(org["pending_usd"])] == [Decimal("20")]
    paged = api.http.get(f"/v1/spend/items?{Q2}&format=csv&limit=2", headers=api.headers)
    assert len(list(csv.DictReader(io.StringIO(paged.text)))) == 2
    assert paged.headers["treasurer-next"]


def test_a_department_scoped_key_sees_only_its_department(api: Api) -> None:
    growth = api.key("finance", department="growth")
    assert [i["id"] for i in api.items(Q2, growth)] == [api.ids["growth_full"]]
    ops = api.key("auditor", department="ops")
    assert [i["id"] for i in api.items(Q2, ops)] == [api.ids[n] for n in SPENT[:3]]
    refused = api.http.get(f"/v1/spend/items?{Q2}&department=ops", headers=growth)
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    narrowed = api.items(f"{Q2}&department=growth&agent=agent_c")
    assert [i["id"] for i in narrowed] == [api.ids["growth_full"]]


def test_an_agent_session_is_refused(api: Api) -> None:
    created = api.http.post("/v1/agents/agent_a/sessions", json={}, headers=api.key("admin")).json()
    got = api.http.get(
        f"/v1/spend/items?{Q2}", headers={"Authorization": f"Bearer {created['token']}"}
    )
    assert got.status_code == 403, got.text
    assert got.json()["code"] == "forbidden"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=2026-04-01T00:00:00", "since"),
        ("after=not-a-cursor", "after"),
        ("after=12:", "after"),
    ],
)
def test_bad_input_is_a_problem_with_a_stable_code(api: Api, query: str, field: str) -> None:
    got = api.http.get(f"/v1/spend/items?{query}", headers=api.headers)
    assert got.status_code == 400, got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    assert got.json()["code"] == "invalid_request"
    assert got.json()["field"] == field


def test_the_sdk_reads_one_page_or_iterates_them_all(api: Api) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")
    client = treasurer.connect("http://testserver", token, http=api.http)
    page, cursor = client.spend_items(since=Q2_START, until=Q2_END, limit=3)
    assert [i.id for i in page] == [api.ids[n] for n in SPENT[:3]] and cursor
    rest, end = client.spend_items(since=Q2_START, until=Q2_END, after=cursor)
    assert [i.id for i in rest] == [api.ids["growth_full"]] and end is None
    every = list(client.iter_spend_items(since=Q2_START, until=Q2_END, department="ops"))
    assert [i.id for i in every] == [api.ids[n] for n in SPENT[:3]]


def test_the_async_sdk_iterates_every_page(api: Api) -> None:
    token = api.headers["Authorization"].removeprefix("Bearer ")

    async def scenario() -> list[str]:
        transport = httpx.ASGITransport(app=api.http.app)
        async with treasurer.connect_async("http://testserver", token, transport=transport) as c:
            return [i.id async for i in c.iter_spend_items(since=Q2_START, until=Q2_END)]

    assert asyncio.run(scenario()) == [api.ids[n] for n in SPENT]
