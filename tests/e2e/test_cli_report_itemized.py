"""``treasurer report --itemized``: every spend of the range and its totals, locally and
against a server, in table, JSON and CSV; the totals equal plain ``treasurer report``."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.e2e.test_audit_cli import wiring
from tests.e2e.test_cli_remote import URL, said, wiring_for
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org
from typer.testing import CliRunner, Result

import treasurer
from treasurer.bootstrap import build_app, open_governance
from treasurer.interfaces.cli import spend_items_report
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.interfaces.cli.output import EXIT_AUTH, EXIT_INVALID
from treasurer.service.credentials import create_admin_key

Q2 = ("--quarter", "2026Q2")


def _traffic(gov: object, clock: FakeClock) -> dict[str, str]:
    """Two captures (one partial, sub-cent), one left open, one void and one denial, a
    minute apart (the report lists them in creation order)."""
    ids: dict[str, str] = {}
    for name, wallet, amount, then in (
        ("full", "w1", "100.25", "capture"),
        ("partial", "w2", "50", "0.000001"),
        ("open", "w1", "20", None),
        ("void", "w1", "7", "void"),
        ("denied", "w1", "5000", None),
    ):
        clock.advance(minutes=1)
        result = gov.authorize(  # type: ignore[attr-defined]
            agent="agent_a", wallet=wallet, amount=amount, asset="USDC", recipient=SHOP
        )
        ids[name] = result.id
        if then == "capture":
            gov.capture(result.id)  # type: ignore[attr-defined]
        elif then == "void":
            gov.void(result.id)  # type: ignore[attr-defined]
        elif then is not None:
            gov.capture(result.id, amount=then)  # type: ignore[attr-defined]
    return ids


SPENT = ("full", "partial", "open")


@pytest.fixture
def local(sqlite_url: str, clock: FakeClock) -> tuple[Wiring, dict[str, str]]:
    with open_governance(sqlite_url, clock=clock) as gov:
        gov.apply(cross_wallet_org())
        ids = _traffic(gov, clock)
    return wiring(lambda: open_governance(sqlite_url, clock=clock)), ids


@pytest.fixture
def remote(clock: FakeClock, tmp_path: Path) -> Iterator[tuple[Wiring, dict[str, str], str]]:
    """A server on its own database (the local fixture has the default one)."""
    app = build_app(f"sqlite:///{tmp_path / 'server.db'}", clock)
    gov = app.state.treasurer.governance
    gov.apply(cross_wallet_org())
    ids = _traffic(gov, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "audit", "auditor", now=clock.now()
    )
    with TestClient(app) as http:
        yield wiring_for(http, tmp_path, tmp_path / "none.key"), ids, token


@pytest.fixture(autouse=True)
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two items per request, so three items take two pages."""
    monkeypatch.setattr(spend_items_report, "PAGE_SIZE", 2)


def _modes(
    local: tuple[Wiring, dict[str, str]], remote: tuple[Wiring, dict[str, str], str]
) -> list[tuple[str, Wiring, dict[str, str], tuple[str, ...]]]:
    return [
        ("local", local[0], local[1], ()),
        ("remote", remote[0], remote[1], ("--url", URL, "--key", remote[2])),
    ]


def _run(commands: Wiring, *args: str) -> Result:
    return CliRunner().invoke(build_cli(commands), list(args))


def test_itemized_json_lists_every_spend_and_the_report_totals(
    local: tuple[Wiring, dict[str, str]], remote: tuple[Wiring, dict[str, str], str]
) -> None:
    for mode, commands, ids, target in _modes(local, remote):
        result = _run(commands, "report", *Q2, "--itemized", "--format", "json", *target)
        assert result.exit_code == 0, (mode, result.output)
        data = json.loads(result.stdout)
        assert [i["id"] for i in data["items"]] == [ids[n] for n in SPENT], mode
        assert data["totals"] == {
            "captured_usd": "100.250001",
            "reserved_usd": "20.00",
            "captured_count": 2,
            "reserved_count": 1,
        }, mode
        report = _run(commands, "report", *Q2, "--by", "org", "--json", *target)
        [org] = json.loads(report.stdout)
        assert Decimal(data["totals"]["captured_usd"]) == Decimal(org["captured_usd"])
        assert Decimal(data["totals"]["reserved_usd"]) == Decimal(org["pending_usd"])
        assert data["items"][0]["decision"]["policy_versions"], mode


def test_itemized_csv_and_table(
    local: tuple[Wiring, dict[str, str]], remote: tuple[Wiring, dict[str, str], str]
) -> None:
    for mode, commands, ids, target in _modes(local, remote):
        result = _run(commands, "report", *Q2, "--itemized", "--format", "csv", *target)
        assert result.exit_code == 0, (mode, result.output)
        rows = list(csv.DictReader(io.StringIO(result.stdout)))  # one header across pages
        assert [r["id"] for r in rows] == [ids[n] for n in SPENT], mode
        assert [r["captured_usd"] for r in rows] == ["100.25", "0.000001", ""], mode
        assert rows[2]["state"] == "pending" and rows[2]["value_usd"] == "20.00"
        assert all("@" in r["policies"] for r in rows)
        assert "Total captured: $100.250001 (2 spends)" in said(result), mode
        table = _run(commands, "report", *Q2, "--itemized", *target)
        assert table.exit_code == 0, (mode, table.output)
        plain = _run(commands, "report", *Q2, *target)
        assert "Total captured: $100.250001" in plain.stdout
        assert "Total captured: $100.250001 (2 spends)" in table.stdout, mode
        assert "Total reserved: $20.00 (1 spends)" in table.stdout, mode
        assert table.stdout.startswith("Spend items"), mode


def test_an_agent_session_cannot_run_the_itemized_report(
    sqlite_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    app = build_app(sqlite_url, clock)
    app.state.treasurer.governance.apply(cross_wallet_org())
    _key, admin = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    with TestClient(app) as http:
        commands = wiring_for(http, tmp_path, tmp_path / "none.key")
        agent = treasurer.connect(URL, admin, http=http).create_session("agent_a").token
        refused = _run(commands, "report", *Q2, "--itemized", "--url", URL, "--key", agent)
        assert refused.exit_code == EXIT_AUTH, refused.output
        assert "forbidden" in said(refused)
        bad = _run(commands, "report", "--itemized", "--format", "pdf", "--url", URL)
        assert bad.exit_code == EXIT_INVALID
