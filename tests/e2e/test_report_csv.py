"""CSV spend reports (HTTP and CLI), token amounts beside USD, and the CSV audit export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.e2e.test_audit_cli import SIGNER, cli, wiring
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org

from treasurer.bootstrap import build_app, open_governance
from treasurer.interfaces.cli.app import Wiring
from treasurer.service.credentials import create_admin_key

Q2 = "since=2026-04-01T00:00:00Z&until=2026-07-01T00:00:00Z"


@pytest.fixture
def api(database_url: str, clock: FakeClock) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """agent_a captures 100.25 + 0.000001 (partial of 50) on w1 and 12.5 on w2; one void."""
    app = build_app(database_url, clock)
    gov = app.state.treasurer.governance
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "auditor", now=clock.now()
    )
    gov.apply(cross_wallet_org())
    for wallet, amount, capture in (
        ("w1", "100.25", None),
        ("w1", "50", "0.000001"),
        ("w2", "12.5", None),
        ("w1", "7", "void"),
    ):
        result = gov.authorize(
            agent="agent_a", wallet=wallet, amount=amount, asset="USDC", recipient=SHOP
        )
        if capture == "void":
            gov.void(result.id)
        else:
            gov.capture(result.id, **({"amount": capture} if capture else {}))
    with TestClient(app) as http:
        yield http, {"Authorization": f"Bearer {token}"}


def test_spend_rows_carry_captured_token_amounts(api: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = api
    rows = http.get(f"/v1/spend?group_by=wallet&{Q2}", headers=headers).json()["rows"]
    by_wallet = {r["group"]: r for r in rows}
    w1_asset, w2_asset = by_wallet["w1"]["amounts"], by_wallet["w2"]["amounts"]
    assert list(w1_asset.values()) == ["100.250001"]
    assert list(w2_asset.values()) == ["12.500000"]
    assert by_wallet["w1"]["captured_usd"] == "100.250001"
    agent = http.get(f"/v1/spend?group_by=agent&{Q2}", headers=headers).json()["rows"]
    assert sorted(agent[0]["amounts"].values()) == ["100.250001", "12.500000"]


def test_spend_as_csv(api: tuple[TestClient, dict[str, str]]) -> None:
    http, headers = api
    response = http.get(f"/v1/spend?group_by=wallet&format=csv&{Q2}", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.text)))
    assert table[0][:5] == [
        "wallet",
        "captured_usd",
        "pending_usd",
        "captured_count",
        "pending_count",
    ]
    assert all(h.startswith("captured:") for h in table[0][5:])
    assert table[1][:5] == ["w1", "100.250001", "0.00", "2", "0"]
    assert "100.250001" in table[1][5:]
    bad = http.get("/v1/spend?format=xml", headers=headers)
    assert bad.status_code in (400, 422)


@pytest.fixture
def local(sqlite_url: str, clock: FakeClock) -> Wiring:
    with open_governance(sqlite_url, clock=clock) as gov:
        gov.apply(cross_wallet_org())
        allowed = gov.authorize(agent="agent_a", wallet="w1", amount="10.5", asset="USDC")
        gov.capture(allowed.id)
        gov.authorize(agent="agent_a", wallet="w1", amount="5000", asset="USDC", recipient=SHOP)
    return wiring(lambda: open_governance(sqlite_url, clock=clock, audit_signer=SIGNER))


def test_cli_report_as_csv(local: Wiring) -> None:
    result = cli(local, "report", "--quarter", "2026Q2", "--by", "agent", "--format", "csv")
    assert result.exit_code == 0, result.output
    table = list(csv.reader(io.StringIO(result.stdout)))
    assert table[0][0] == "agent" and table[1][:2] == ["agent_a", "10.50"]
    assert cli(local, "report", "--format", "pdf").exit_code == 2


def test_cli_audit_export_as_csv(local: Wiring, tmp_path: Path) -> None:
    """One row per event, the same events (ids, hashes, payloads) as the JSON Lines export."""
    jsonl, out = tmp_path / "a.jsonl", tmp_path / "a.csv"
    assert cli(local, "audit", "export", "--out", str(jsonl)).exit_code == 0
    result = cli(local, "audit", "export", "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    events = [e for e in map(json.loads, jsonl.read_text().splitlines()) if e["type"] == "event"]
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [int(r["seq"]) for r in rows] == [e["seq"] for e in events]
    assert [r["hash"] for r in rows] == [e["hash"] for e in events]
    assert [json.loads(r["payload"]) for r in rows] == [e["payload"] for e in events]
    assert len(rows) == len(events) >= 3
    assert cli(local, "audit", "export", "--format", "xml").exit_code == 2
