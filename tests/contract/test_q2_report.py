"""The auditor's question: "all agent spending for Q2", against every store.

Generated governance-mode traffic over three agents in two departments, three wallets on two
chains and two vendors, from just before 2026Q2 to just after it: captures, partial captures,
voids, spends left open and denials. The expected report is summed here from what the
generator did, independently of the store's query; it must match to the micro-dollar, and
denied or voided spends must be in the audit log but not in spend.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

import treasurer
from treasurer.bootstrap import EmbeddedGovernance, build_app
from treasurer.service.credentials import create_admin_key

Q2_START = datetime(2026, 4, 1, tzinfo=UTC)
Q2_END = datetime(2026, 7, 1, tzinfo=UTC)
WALLETS = {"agent_a": ("w1", "w2"), "agent_b": ("w3",), "agent_c": ("w4",)}
DEPARTMENT = {"agent_a": "ops", "agent_b": "ops", "agent_c": "growth"}
CHAIN = {"w1": "base", "w2": "ethereum", "w3": "base", "w4": "ethereum"}


@dataclass(frozen=True)
class Done:
    auth_id: str
    agent: str
    wallet: str
    at: datetime
    captured: Decimal  # 0 unless captured
    state: str


def _org() -> dict[str, Any]:
    org = cross_wallet_org(agent_daily="2000.00", department_daily="5000.00")
    org["departments"].append({"id": "growth", "name": "Growth"})
    org["agents"].append(
        {
            "id": "agent_c",
            "name": "Agent C",
            "department": "growth",
            "budgets": [{"window": "day", "limit_usd": "2000.00"}],
            "wallets": [
                {
                    "id": "w4",
                    "chain": "ethereum",
                    "address": "0x4444444444444444444444444444444444444444",
                    "custody": "external",
                    "vendor": "fireblocks",
                }
            ],
        }
    )
    return org


def _traffic(gov: EmbeddedGovernance, clock: FakeClock) -> list[Done]:
    rng = random.Random(2026)
    clock.set(datetime(2026, 3, 30, 12, tzinfo=UTC))
    done: list[Done] = []
    while clock.now() < datetime(2026, 7, 3, tzinfo=UTC):
        clock.advance(hours=rng.randint(5, 30))
        agent = rng.choice(sorted(WALLETS))
        wallet = rng.choice(WALLETS[agent])
        cents = rng.randint(100, 250_000)
        amount = Decimal(cents) / 100
        result = gov.authorize(
            agent=agent, wallet=wallet, amount=str(amount), asset="USDC", recipient=SHOP
        )
        captured, state = Decimal(0), result.state.value
        if result.allowed:
            roll = rng.random()
            if roll < 0.6:
                captured, state = amount, gov.capture(result.id).state.value
            elif roll < 0.75:
                captured = (amount / 3).quantize(Decimal("0.000001"))
                state = gov.capture(result.id, amount=str(captured)).state.value
            elif roll < 0.9:
                state = gov.void(result.id).state.value
        done.append(Done(result.id, agent, wallet, clock.now(), captured, state))
    return done


def _micros(amount: Decimal) -> int:
    return int(amount * 1_000_000)


def test_q2_report_equals_the_captured_spend_cent_for_cent(
    database_url: str, clock: FakeClock
) -> None:
    with treasurer.open(database_url, clock=clock) as gov:
        gov.apply(_org())
        done = _traffic(gov, clock)
        in_q2 = [d for d in done if Q2_START <= d.at < Q2_END]
        assert len(in_q2) < len(done), "traffic must straddle the quarter"
        assert {d.state for d in in_q2} >= {"captured", "voided", "denied", "pending"}

        keys = {
            "agent": lambda d: d.agent,
            "department": lambda d: DEPARTMENT[d.agent],
            "wallet": lambda d: d.wallet,
            "chain": lambda d: CHAIN[d.wallet],
        }
        for by, key in keys.items():
            expected: dict[str, int] = defaultdict(int)
            counts: dict[str, int] = defaultdict(int)
            for d in in_q2:
                if d.state == "captured":
                    expected[key(d)] += _micros(d.captured)
                    counts[key(d)] += 1
            rows = gov.spend(by=by, since=Q2_START, until=Q2_END)
            assert {r.group: r.captured_usd_micros for r in rows if r.captured_count} == dict(
                expected
            ), by
            assert {r.group: r.captured_count for r in rows if r.captured_count} == dict(counts)
        [org] = gov.spend(by="org", since=Q2_START, until=Q2_END)
        total = sum(_micros(d.captured) for d in in_q2 if d.state == "captured")
        assert org.captured_usd_micros == total

        # Denied and voided spends are in the audit trail but count for nothing in spend.
        kinds: dict[str, set[str]] = defaultdict(set)
        for event in gov.store.audit_events(100_000):
            kinds[str(event["subject"])].add(str(event["kind"]))
        for d in in_q2:
            if d.state == "denied":
                assert "authorization.denied" in kinds[d.auth_id]
            if d.state == "voided":
                assert "authorization.voided" in kinds[d.auth_id]
        # Spends left open (not captured, not yet swept) are reported as reserved, apart.
        reserved = 0
        for d in in_q2:
            if d.state == "pending":
                auth = gov.store.get_authorization(d.auth_id)
                assert auth is not None
                reserved += auth.value_usd_micros
        assert org.pending_usd_micros == reserved


def _all_items(http: TestClient, headers: dict[str, str], query: str, limit: int) -> list[Any]:
    """Every page of ``/v1/spend/items`` (``limit`` per page), following ``next``."""
    items: list[Any] = []
    after = ""
    for _ in range(1000):
        got = http.get(f"/v1/spend/items?{query}&limit={limit}{after}", headers=headers)
        assert got.status_code == 200, got.text
        body = got.json()
        items += body["items"]
        if body["next"] is None:
            return items
        after = f"&after={body['next']}"
    raise AssertionError("the cursor never ended")


def test_q2_itemized_report_lists_exactly_the_spend_and_adds_up_to_the_totals(
    database_url: str, clock: FakeClock
) -> None:
    """``/v1/spend/items`` over the quarter: the ids are exactly the captured and still
    reserved spends the generator made in Q2 (never denied or voided ones, never a spend of
    March or July); their USD adds up to ``/v1/spend`` cent for cent, per department too."""
    app = build_app(database_url, clock)
    gov = app.state.treasurer.governance
    gov.apply(_org())
    done = _traffic(gov, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "audit", "auditor", now=clock.now()
    )
    headers = {"Authorization": f"Bearer {token}"}
    q2 = "since=2026-04-01T00:00:00Z&until=2026-07-01T00:00:00Z"
    in_q2 = [d for d in done if Q2_START <= d.at < Q2_END]
    spent = {d.auth_id for d in in_q2 if d.state in ("captured", "pending")}
    gone = {d.auth_id for d in in_q2 if d.state in ("denied", "voided")}
    assert spent and gone

    with TestClient(app) as http:
        items = _all_items(http, headers, q2, limit=7)
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)), "a page repeated an item"
        assert set(ids) == spent
        assert not set(ids) & gone
        assert ids == [i["id"] for i in sorted(items, key=lambda i: (i["created_at"], i["id"]))]
        for item in items:
            assert item["decision"]["allowed"] is True
            assert item["decision"]["policy_versions"], item["id"]

        [org] = http.get(f"/v1/spend?group_by=org&{q2}", headers=headers).json()["rows"]
        captured = [Decimal(i["captured_usd"]) for i in items if i["state"] == "captured"]
        reserved = [Decimal(i["value_usd"]) for i in items if i["state"] != "captured"]
        assert sum(captured, Decimal(0)) == Decimal(org["captured_usd"])
        assert sum(reserved, Decimal(0)) == Decimal(org["pending_usd"])
        assert (len(captured), len(reserved)) == (org["captured_count"], org["pending_count"])
        # ...and equal to what the generator did, independently of any query.
        expected = sum(_micros(d.captured) for d in in_q2 if d.state == "captured")
        assert sum(_micros(c) for c in captured) == expected

        for dept in ("ops", "growth"):
            mine = _all_items(http, headers, f"{q2}&department={dept}", limit=50)
            assert {i["id"] for i in mine} == {
                d.auth_id for d in in_q2 if d.auth_id in spent and DEPARTMENT[d.agent] == dept
            }
            [row] = http.get(
                f"/v1/spend?group_by=org&department={dept}&{q2}", headers=headers
            ).json()["rows"]
            total = sum(
                (Decimal(i["captured_usd"]) for i in mine if i["state"] == "captured"),
                Decimal(0),
            )
            assert total == Decimal(row["captured_usd"])
