"""Backtests and shadow reports over HTTP, the SDK and the CLI.

The engine's results are checked in tests/contract/test_backtest.py; here the question is
whether each interface carries them faithfully (the same numbers as the embedded call, exact
USD strings), who may run them, and how a bad range is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from tests.e2e.test_cli_remote import URL, wiring_for
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org
from typer.testing import CliRunner

import treasurer
from treasurer.bootstrap import build_app
from treasurer.domain.money import usd_decimal_text
from treasurer.interfaces.cli.app import build_cli
from treasurer.service.admin import Governance
from treasurer.service.credentials import create_admin_key

Q2 = (datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))
SHADOW = {
    "id": "strict-agent-a",
    "type": "budget",
    "scope": "agent:agent_a",
    "mode": "shadow",
    "params": {"window": "day", "limit_usd": "500.00"},
}


@dataclass
class Sim:
    http: TestClient
    gov: Governance
    token: str
    tmp: Path

    def key(self, role: str, department: str | None = None) -> dict[str, str]:
        store = self.http.app.state.treasurer.credentials.store  # type: ignore[attr-defined]
        _key, token = create_admin_key(store, role, role, department, now=self.gov.clock.now())
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def sim(sqlite_url: str, clock: FakeClock, tmp_path: Path) -> Iterator[Sim]:
    """An app with recorded traffic: agent_a spends $300 five times over two hours (the
    $1,000 daily budget denies the fourth and fifth), captured or voided."""
    app = build_app(sqlite_url, clock)
    gov = app.state.treasurer.governance
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    org = cross_wallet_org()
    org["policies"] = [SHADOW]
    gov.apply(org)
    for n in range(5):
        clock.advance(minutes=20)
        result = gov.authorize(
            agent="agent_a", wallet="w1", amount="300.00", asset="USDC", recipient=SHOP
        )
        if result.allowed:
            gov.void(result.id) if n == 1 else gov.capture(result.id)
    with TestClient(app) as http:
        yield Sim(http, gov, token, tmp_path)


def _draft(daily: str) -> dict[str, Any]:
    org = cross_wallet_org(agent_daily=daily)
    org["policies"] = [SHADOW]
    return org


def test_backtest_over_http_matches_the_embedded_engine(sim: Sim) -> None:
    """A $500 draft budget: the answer is the engine's, with exact USD strings."""
    expected = sim.gov.backtest(_draft("500.00"), since=Q2[0], until=Q2[1])
    assert expected.changed > 0
    response = sim.http.post(
        "/v1/backtests", json={"org": _draft("500.00"), "quarter": "2026Q2"}, headers=sim.admin
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["replayed"] == expected.replayed == 5
    assert body["changed"] == expected.changed
    assert body["counts"] == expected.counts
    assert body["usd"] == {k: usd_decimal_text(v) for k, v in expected.usd_micros.items()}
    assert body["truncated"] is False
    assert [c["authorization"] for c in body["changes"]] == [
        c.authorization_id for c in expected.changes
    ]
    first = body["changes"][0]
    assert first["agent"] == "agent_a" and first["wallet"] == "w1"
    assert first["amount"] == "300" or first["amount"].startswith("300")
    assert first["value_usd"] in ("300", "300.00", "300.0")
    assert set(first["before"]) == {"allowed", "tier", "codes"}


def test_backtest_by_since_until_and_through_the_sdk(sim: Sim) -> None:
    """since/until with zones gives the same report as the quarter; the SDK parses it."""
    client = treasurer.connect(URL, sim.token, http=sim.http)
    by_quarter = client.backtest(_draft("500.00"), quarter="2026Q2")
    by_range = client.backtest(_draft("500.00"), since=Q2[0], until=Q2[1])
    assert by_quarter == by_range
    assert (
        by_quarter.changed == sim.gov.backtest(_draft("500.00"), since=Q2[0], until=Q2[1]).changed
    )
    shadow = client.shadow_report(quarter="2026Q2")
    [entry] = shadow.policies
    [expected] = sim.gov.shadow_report(since=Q2[0], until=Q2[1])
    assert entry.policy == "strict-agent-a" and entry.evaluated == expected.evaluated == 5
    assert entry.would_deny == expected.would_deny > 0
    assert entry.would_deny_usd == usd_decimal_text(expected.would_deny_usd_micros)


def test_backtest_writes_nothing(sim: Sim) -> None:
    before = sim.gov.store.audit_events(100_000)
    response = sim.http.post(
        "/v1/backtests", json={"org": _draft("1.00"), "quarter": "2026Q2"}, headers=sim.admin
    )
    assert response.status_code == 200
    assert sim.gov.store.audit_events(100_000) == before


def test_finance_and_auditor_keys_may_simulate_but_agents_and_scoped_keys_may_not(
    sim: Sim,
) -> None:
    body = {"org": _draft("500.00"), "quarter": "2026Q2"}
    for role in ("finance", "auditor"):
        headers = sim.key(role)
        assert sim.http.post("/v1/backtests", json=body, headers=headers).status_code == 200
        shadow = sim.http.get("/v1/shadow-report?quarter=2026Q2", headers=headers)
        assert shadow.status_code == 200
    scoped = sim.key("finance", "ops")
    assert sim.http.post("/v1/backtests", json=body, headers=scoped).status_code == 403
    assert sim.http.get("/v1/shadow-report?quarter=2026Q2", headers=scoped).status_code == 403
    session = sim.http.post("/v1/agents/agent_a/sessions", json={}, headers=sim.admin)
    agent = {"Authorization": f"Bearer {session.json()['token']}"}
    assert sim.http.post("/v1/backtests", json=body, headers=agent).status_code == 403


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({}, "since"),
        ({"since": "2026-04-01T00:00:00Z"}, "until"),
        ({"quarter": "2026Q2", "since": "2026-04-01T00:00:00Z"}, "quarter"),
        ({"since": "2026-07-01T00:00:00Z", "until": "2026-04-01T00:00:00Z"}, "until"),
    ],
)
def test_a_bad_range_names_the_field(sim: Sim, extra: dict[str, str], field: str) -> None:
    response = sim.http.post(
        "/v1/backtests", json={"org": _draft("500.00"), **extra}, headers=sim.admin
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


def test_a_naive_time_or_bad_quarter_is_refused(sim: Sim) -> None:
    naive = {"org": _draft("1.00"), "since": "2026-04-01T00:00:00", "until": "2026-05-01"}
    assert sim.http.post("/v1/backtests", json=naive, headers=sim.admin).status_code in (
        400,
        422,
    )
    bad = sim.http.get("/v1/shadow-report?quarter=2026Q5", headers=sim.admin)
    assert bad.status_code in (400, 422)
    assert bad.headers["content-type"] == "application/problem+json"


def test_a_broken_draft_is_a_problem(sim: Sim) -> None:
    response = sim.http.post(
        "/v1/backtests",
        json={"org": {"version": 1, "org": {}}, "quarter": "2026Q2"},
        headers=sim.admin,
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_cli_backtest_remote_and_local(sim: Sim) -> None:
    """``treasurer backtest`` against the server (--json and the table), and locally."""
    draft = sim.tmp / "draft.yaml"
    draft.write_text(yaml.safe_dump(_draft("500.00"), sort_keys=False), encoding="utf-8")
    key_file = sim.tmp / "admin.key"
    key_file.write_text(sim.token + "\n", encoding="utf-8")
    cli = build_cli(wiring_for(sim.http, sim.tmp, key_file))
    runner = CliRunner()
    remote = ("--url", URL, "--key", sim.token)
    as_json = runner.invoke(
        cli, ["backtest", "-f", str(draft), "--quarter", "2026Q2", "--json", *remote]
    )
    assert as_json.exit_code == 0, as_json.output
    expected = sim.gov.backtest(_draft("500.00"), since=Q2[0], until=Q2[1])
    assert json.loads(as_json.stdout)["changed"] == expected.changed
    table = runner.invoke(
        cli,
        ["backtest", "-f", str(draft), "--since", "2026-04-01", "--until", "2026-07-01", *remote],
    )
    assert table.exit_code == 0, table.output
    assert f"{expected.changed} would change" in table.stdout
    assert "allowed_to_denied" in table.stdout

    # Locally: the wiring's own database has no traffic, so nothing changes.
    local = runner.invoke(cli, ["apply", "-f", str(draft), "--yes"])
    assert local.exit_code == 0, local.output
    replay = runner.invoke(cli, ["backtest", "-f", str(draft), "--quarter", "2026Q2", "--json"])
    assert replay.exit_code == 0, replay.output
    assert json.loads(replay.stdout)["replayed"] == 0

    both = runner.invoke(
        cli, ["backtest", "-f", str(draft), "--quarter", "2026Q2", "--since", "2026-04-01"]
    )
    assert both.exit_code == 2 and "--quarter" in both.stderr
    neither = runner.invoke(cli, ["backtest", "-f", str(draft), "--since", "2026-04-01"])
    assert neither.exit_code == 2 and "--until" in neither.stderr
