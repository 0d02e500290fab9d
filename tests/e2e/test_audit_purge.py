"""Retention purge end to end: ``treasurer audit purge`` (local and ``--url``) and
``POST /v1/audit/purge``, then ``GET /v1/audit/verify``, export and offline verify.

The app is the production one over a governance whose audit trail signs with a test key; old
events are made by moving the fake clock 40 days past them (retention is 30 days).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org
from typer.testing import CliRunner, Result

import treasurer
from treasurer.adapters.sql.migrations.v0011_audit_append_only import drop_guards
from treasurer.adapters.yaml_files import dump_org_file, load_org_file
from treasurer.bootstrap import build_app, open_governance
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.interfaces.cli.output import EXIT_DENIED, EXIT_INVALID, EXIT_OK
from treasurer.sdk import Client
from treasurer.service.audit import AuditTrail, audit_of
from treasurer.service.audit_signing import Ed25519Signer
from treasurer.service.credentials import create_admin_key

SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
URL = "http://testserver"
RETENTION_DAYS = 30


def org() -> dict[str, Any]:
    data = cross_wallet_org()
    data["settings"] = {"audit_retention_days": RETENTION_DAYS}
    return data


def seal_all(trail: AuditTrail, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while trail.settle(0.5):
        assert time.monotonic() < deadline, "events stayed unsealed"


def cli_of(open_backend: object, connect: object = None) -> Any:
    return build_cli(
        Wiring(
            open_backend=open_backend,  # type: ignore[arg-type]
            load_org_file=load_org_file,
            dump_org_file=dump_org_file,
            init=lambda _demo: [],
            serve=lambda: None,
            connect=connect,  # type: ignore[arg-type]
            default_url=URL,
        )
    )


def run(app: Any, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    path = tmp_path / "audit-signing.pub"
    path.write_bytes(SIGNER.public_key_pem())
    return path


# -- the local CLI ------------------------------------------------------------------------------
def test_cli_purge_then_verify_live_and_offline(
    sqlite_url: str, clock: FakeClock, tmp_path: Path, public_key: Path
) -> None:
    with open_governance(sqlite_url, clock=clock) as gov:
        gov.apply(org())
        allowed = gov.authorize(agent="agent_a", wallet="w1", amount="10", asset="USDC")
        gov.capture(allowed.id)
    clock.advance(days=40)
    with open_governance(sqlite_url, clock=clock) as gov:
        gov.authorize(agent="agent_a", wallet="w1", amount="1", asset="USDC")
    local = cli_of(lambda: open_governance(sqlite_url, clock=clock, audit_signer=SIGNER))

    planned = run(local, "audit", "purge", "--dry-run", "--json")
    assert planned.exit_code == EXIT_OK, planned.output
    plan = json.loads(planned.stdout)
    assert plan["dry_run"] is True and plan["count"] > 0 and plan["id"] is None

    refused = run(local, "audit", "purge", "--before", clock.now().date().isoformat())
    assert refused.exit_code == EXIT_INVALID
    assert "audit_purge_beyond_retention" in refused.output

    purged = run(local, "audit", "purge")
    assert purged.exit_code == EXIT_OK, purged.output
    assert f"Purged {plan['count']} events (seq 1..{plan['upto_seq']})" in purged.output
    again = run(local, "audit", "purge")
    assert again.exit_code == EXIT_OK and "Nothing to purge" in again.output

    with open_governance(sqlite_url, clock=clock) as gov:
        trail = audit_of(gov)
        assert trail is not None
        live = trail.verify_live(SIGNER.public_key).report
        assert live.ok, live
        assert live.anchor_seq == plan["upto_seq"]

    out = tmp_path / "audit.jsonl"
    assert run(local, "audit", "export", "--out", str(out)).exit_code == EXIT_OK
    verified = run(local, "audit", "verify", str(out), "--public-key", str(public_key))
    assert verified.exit_code == EXIT_OK, verified.output
    assert f"from the signed purge anchor at seq {plan['upto_seq']}" in verified.output

    # A forged anchor: its hash changed, so its signature no longer verifies.
    lines = out.read_text().splitlines(keepends=True)
    anchor = json.loads(lines[1])
    assert anchor["type"] == "anchor"
    anchor["hash"] = "ab" * 32
    lines[1] = json.dumps(anchor) + "\n"
    out.write_text("".join(lines))
    forged = run(local, "audit", "verify", str(out), "--public-key", str(public_key), "--json")
    assert forged.exit_code == EXIT_DENIED
    report = json.loads(forged.stdout)
    assert report["first_broken"]["problem"] == "bad_anchor"


# -- HTTP and the remote CLI --------------------------------------------------------------------
@dataclass
class Api:
    client: TestClient
    admin: dict[str, str]
    token: str
    trail: AuditTrail
    app: FastAPI
    clock: FakeClock

    def post(self, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        response = self.client.post("/v1/audit/purge", json=body, headers=self.admin)
        assert response.status_code == status, response.text
        return response.json()


@pytest.fixture
def api(database_url: str, clock: FakeClock) -> Iterator[Api]:
    governance = open_governance(database_url, clock=clock, audit_signer=SIGNER)
    trail = audit_of(governance)
    assert trail is not None
    app = build_app(database_url, clock, governance=governance)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    admin = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.post("/v1/org", json=org(), headers=admin).status_code == 200
        agent = client.post("/v1/agents/agent_a/sessions", json={"name": "t"}, headers=admin)
        spend = {"Authorization": f"Bearer {agent.json()['token']}"}
        for amount in ("10.00", "5000.00"):
            body = {"wallet": "w1", "amount": amount, "asset": "USDC", "recipient": SHOP}
            assert client.post("/v1/authorizations", json=body, headers=spend).status_code == 201
        seal_all(trail)
        clock.advance(days=40)  # the session expired meanwhile: a new one
        agent = client.post("/v1/agents/agent_a/sessions", json={"name": "t2"}, headers=admin)
        spend = {"Authorization": f"Bearer {agent.json()['token']}"}
        body = {"wallet": "w1", "amount": "20.00", "asset": "USDC", "recipient": SHOP}
        assert client.post("/v1/authorizations", json=body, headers=spend).status_code == 201
        seal_all(trail)
        yield Api(client, admin, token, trail, app, clock)
    governance.close()


def test_http_purge_then_verify(api: Api) -> None:
    planned = api.post({"dry_run": True})
    assert planned["dry_run"] is True and planned["count"] > 0
    done = api.post()
    assert (done["count"], done["upto_seq"]) == (planned["count"], planned["upto_seq"])
    assert done["checkpoint_seq"] == done["upto_seq"] and done["id"].startswith("apg_")
    verdict = api.client.get(
        f"/v1/audit/verify?public_key={SIGNER.public_key}", headers=api.admin
    ).json()
    assert verdict["ok"] is True, verdict
    assert verdict["last_seq"] > done["upto_seq"]
    assert verdict["anchor_seq"] == done["upto_seq"]
    assert verdict["first_seq"] == done["upto_seq"] + 1
    assert verdict["signed_through"] is not None
    purged = api.client.get("/v1/audit?kind=audit.purged", headers=api.admin).json()["items"]
    assert [e["payload"]["upto_seq"] for e in purged] == [done["upto_seq"]]
    assert purged[0]["actor"].startswith("key:")  # the admin key that purged


def test_http_purge_refusals_are_problems_with_stable_codes(api: Api) -> None:
    late = api.clock.now().isoformat()
    problem = api.post({"before": late}, status=400)
    assert problem["code"] == "audit_purge_beyond_retention" and problem["field"] == "before"
    assert api.post({"before": "2026-01-01T00:00:00"}, status=400)["field"] == "before"
    assert api.post({"nope": 1}, status=422)["code"] == "unknown_field"
    auditor = api.client.post(
        "/v1/admin-keys", json={"name": "aud", "role": "auditor"}, headers=api.admin
    )
    assert auditor.status_code == 201, auditor.text
    refused = api.client.post(
        "/v1/audit/purge", json={}, headers={"Authorization": f"Bearer {auditor.json()['token']}"}
    )
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")


def test_remote_cli_purge(api: Api) -> None:
    def connect(url: str, key: str) -> Client:
        return treasurer.connect(url, key, http=api.client, retries=0)

    def no_database() -> Any:
        raise AssertionError("a remote purge must not open a local database")

    commands = cli_of(no_database, connect)
    planned = run(
        commands, "audit", "purge", "--dry-run", "--json", "--url", URL, "--key", api.token
    )
    assert planned.exit_code == EXIT_OK, planned.output
    assert json.loads(planned.stdout)["dry_run"] is True
    done = run(commands, "audit", "purge", "--url", URL, "--key", api.token)
    assert done.exit_code == EXIT_OK, done.output
    assert "Purged" in done.output and "signed checkpoint" in done.output
    assert api.trail.verify_live(SIGNER.public_key).report.ok


def test_cli_verifies_the_live_chain_of_a_server_after_a_purge_and_names_a_tamper(
    api: Api, public_key: Path
) -> None:
    """``treasurer audit verify --url`` (no file): the server's live chain, from its purge
    anchor, pinned to the public key; after a row is edited in the database it exits 1 and
    names the event, exactly as the offline verify of a file does."""

    def connect(url: str, key: str) -> Client:
        return treasurer.connect(url, key, http=api.client, retries=0)

    def no_database() -> Any:
        raise AssertionError("a live verify against a server must not open a local database")

    commands = cli_of(no_database, connect)
    done = api.post()
    remote = ("--url", URL, "--key", api.token, "--public-key", str(public_key))
    intact = run(commands, "audit", "verify", *remote)
    assert intact.exit_code == EXIT_OK, intact.output
    said = " ".join(intact.output.split())  # the console wraps long lines
    assert said.startswith(f"intact {URL}:")
    assert f"from the signed purge anchor at seq {done['upto_seq']}" in said
    verdict = json.loads(run(commands, "audit", "verify", *remote, "--json").stdout)
    assert verdict["ok"] is True and verdict["anchor_seq"] == done["upto_seq"]
    assert verdict["trusted_key"] == SIGNER.public_key

    db = api.app.state.treasurer.governance.sql.db
    for statement in drop_guards(db.dialect):  # the tamper needs DDL rights first
        db.run(lambda tx, s=statement: tx.execute(s))
    target = done["upto_seq"] + 2
    edited = db.run(
        lambda tx: tx.execute(
            "UPDATE audit_events SET actor = 'admin:mallory' WHERE seq = :s", {"s": target}
        )
    )
    assert edited == 1
    broken = run(commands, "audit", "verify", *remote, "--json")
    assert broken.exit_code == EXIT_DENIED, broken.output
    report = json.loads(broken.stdout)
    assert (report["first_broken"]["problem"], report["first_broken"]["seq"]) == (
        "altered",
        target,
    )
    both = run(commands, "audit", "verify", "some-file.jsonl", "--url", URL, "--key", api.token)
    assert both.exit_code == EXIT_INVALID and "--url" in both.output


def test_cli_verifies_the_local_live_chain(
    sqlite_url: str, clock: FakeClock, public_key: Path
) -> None:
    """Without a file or --url: the local database's chain, sealed and signed first."""
    with open_governance(sqlite_url, clock=clock) as gov:
        gov.apply(org())
        gov.authorize(agent="agent_a", wallet="w1", amount="10", asset="USDC")
    local = cli_of(lambda: open_governance(sqlite_url, clock=clock, audit_signer=SIGNER))
    intact = run(local, "audit", "verify", "--public-key", str(public_key), "--json")
    assert intact.exit_code == EXIT_OK, intact.output
    report = json.loads(intact.stdout)
    assert report["ok"] is True and report["first_seq"] == 1 and report["events"] > 3
    assert report["unsealed_events"] == 0
