"""``/v1/webhooks`` over HTTP, the SDK and the CLI, with a notifier on the same database.

The app is the production one (``build_app``); a notifier built on a second connection to the
same database (as ``treasurer serve`` runs it beside the app) delivers to a local receiver on
127.0.0.1 that checks every signature. Time is a fake clock shared by the app and the notifier.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org
from tests.webhook_receiver import Receiver, until
from typer.testing import CliRunner

import treasurer
from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.webhook_store import SqlWebhookStore
from treasurer.adapters.webhook_sender import HttpxWebhookSender
from treasurer.adapters.yaml_files import dump_org_file, load_org_file
from treasurer.bootstrap import EmbeddedGovernance, build_app, open_governance
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.sdk import Client
from treasurer.service.audit import AuditTrail
from treasurer.service.credentials import create_admin_key
from treasurer.service.notify import Notifier
from treasurer.service.notify_format import Backoff

Headers = dict[str, str]
URL = "http://testserver"


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    client: TestClient
    clock: FakeClock
    admin: Headers
    receiver: Receiver
    gov: EmbeddedGovernance  # a second connection, for the notifier
    notifier: Notifier
    store: Any

    def key(self, role: str, department: str | None = None) -> Headers:
        _key, token = create_admin_key(self.store, role, role, department, now=self.clock.now())
        return bearer(token)

    def hook(self, path: str, **body: Any) -> dict[str, Any]:
        made = self.client.post(
            "/v1/webhooks", json={"url": self.receiver.url(path), **body}, headers=self.admin
        )
        assert made.status_code == 201, made.text
        self.receiver.secrets[path] = made.json()["secret"]
        return dict(made.json())

    def deliveries(self, webhook: str, **params: str) -> list[dict[str, Any]]:
        got = self.client.get(
            f"/v1/webhooks/{webhook}/deliveries", params=params, headers=self.admin
        )
        assert got.status_code == 200, got.text
        return list(got.json()["items"])


@pytest.fixture
def api(database_url: str, clock: FakeClock) -> Iterator[Api]:
    app = build_app(database_url, clock)
    store = app.state.treasurer.credentials.store
    _key, token = create_admin_key(store, "root", "admin", now=clock.now())
    gov = treasurer.open(database_url, clock=clock)
    db = gov.sql.db
    notifier = Notifier(
        SqlWebhookStore(db),
        HttpxWebhookSender(timeout_s=2.0),
        clock,
        seal=AuditTrail(SqlAuditLog(db), clock).seal,
        backoff=Backoff(max_attempts=2),
        rand=lambda: 0.0,
    )
    receiver = Receiver().start()
    with TestClient(app) as client:
        assert client.post("/v1/org", json=cross_wallet_org(), headers=bearer(token)).is_success
        yield Api(client, clock, bearer(token), receiver, gov, notifier, store)
    receiver.stop()
    notifier.close()
    gov.close()
    app.state.treasurer.governance.close()


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def test_the_secret_is_shown_once_and_urls_are_redacted_afterwards(api: Api) -> None:
    """Create answers 201 with the full URL and the secret; reads never show the secret, and
    a Slack URL's path (its credential) is hidden; removal is idempotent and listed apart."""
    made = api.hook("/plain", events=["budget.breach"], description="finance alerts")
    slack = api.hook("/services/T0/B0/s3cr3t", format="slack")
    assert made["secret"].startswith("whsec_") and made["url"].endswith("/plain")
    assert made["events"] == ["budget.breach"] and made["active"] is True
    listed = api.client.get("/v1/webhooks", headers=api.admin).json()["items"]
    assert {w["id"] for w in listed} == {made["id"], slack["id"]}
    assert all("secret" not in w for w in listed)
    shown = api.client.get(f"/v1/webhooks/{slack['id']}", headers=api.admin).json()
    assert shown["url"] == api.receiver.url("/services/***")
    assert "s3cr3t" not in json.dumps(listed)

    removed = api.client.delete(f"/v1/webhooks/{made['id']}", headers=api.admin)
    assert removed.status_code == 200 and removed.json()["active"] is False
    again = api.client.delete(f"/v1/webhooks/{made['id']}", headers=api.admin).json()
    assert again["removed_at"] == removed.json()["removed_at"]
    active = api.client.get("/v1/webhooks", headers=api.admin).json()["items"]
    assert [w["id"] for w in active] == [slack["id"]]
    every = api.client.get("/v1/webhooks?include_removed=true", headers=api.admin).json()
    assert len(every["items"]) == 2
    problem(api.client.get("/v1/webhooks/wh_nope", headers=api.admin), 404, "not_found")

    audit = api.client.get("/v1/audit?limit=500", headers=api.admin).json()["items"]
    kinds = [e["kind"] for e in audit if e["kind"].startswith("webhook.")]
    assert kinds == ["webhook.created", "webhook.created", "webhook.removed"]
    assert "whsec_" not in json.dumps(audit) and "s3cr3t" not in json.dumps(audit)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"url": "ftp://example.com/x"}, 400, "invalid_request", "url"),
        ({"url": "not a url"}, 400, "invalid_request", "url"),
        ({"url": "https:///no-host"}, 400, "invalid_request", "url"),
        (
            {"url": "https://example.com", "events": ["budget.breached"]},
            400,
            "unknown_event_type",
            "events",
        ),
        ({"url": "https://example.com", "format": "xml"}, 422, "validation_failed", None),
        ({"url": "https://example.com", "secret": "mine"}, 422, "unknown_field", None),
        (
            {"url": "https://example.com", "description": "a\x00b"},
            400,
            "invalid_request",
            "description",
        ),
    ],
)
def test_a_bad_endpoint_is_refused_with_the_field_named(
    api: Api, body: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    """Only absolute http(s) URLs, known event types and the two formats are accepted."""
    answer = problem(api.client.post("/v1/webhooks", json=body, headers=api.admin), status, code)
    if field is not None:
        assert answer["field"] == field
    assert api.client.get("/v1/webhooks", headers=api.admin).json()["items"] == []


def test_who_may_read_and_who_may_change_webhooks(api: Api) -> None:
    """Finance and auditors read; only an admin changes; department keys and agents are out."""
    made = api.hook("/hook")
    reads = ["/v1/webhooks", f"/v1/webhooks/{made['id']}", f"/v1/webhooks/{made['id']}/deliveries"]
    for role in ("finance", "auditor"):
        headers = api.key(role)
        for path in reads:
            assert api.client.get(path, headers=headers).status_code == 200, (role, path)
        refused = api.client.post(
            "/v1/webhooks", json={"url": "https://example.com"}, headers=headers
        )
        problem(refused, 403, "forbidden")
        problem(api.client.delete(f"/v1/webhooks/{made['id']}", headers=headers), 403, "forbidden")
    scoped = api.key("admin", department="ops")
    for path in reads:
        problem(api.client.get(path, headers=scoped), 403, "forbidden")
    session = api.client.post("/v1/agents/agent_a/sessions", json={}, headers=api.admin).json()
    agent = bearer(session["token"])
    for path in reads:
        problem(api.client.get(path, headers=agent), 403, "forbidden")


def test_dead_letters_are_listed_and_retried_over_http(api: Api) -> None:
    """A receiver answering 500 twice: the delivery is dead, listed under state=dead with its
    status and error; a retry (admin) makes it pending and it is delivered, signed."""
    made = api.hook("/hook")
    api.receiver.status = 500
    frozen = api.client.post("/v1/freezes", json={"scope": "agent:agent_a"}, headers=api.admin)
    assert frozen.is_success, frozen.text
    until(lambda: len(api.receiver.received) == 1, api.notifier.run_once)
    api.clock.advance(seconds=2.5)
    api.notifier.run_once()
    (dead,) = api.deliveries(made["id"], state="dead")
    assert (dead["attempts"], dead["last_status"], dead["next_attempt_at"]) == (2, 500, None)
    assert dead["last_error"].startswith("HTTP 500")
    assert dead["body"]["type"] == dead["event"] == "agent.frozen"
    assert dead["event_id"] == dead["body"]["id"] == f"evt_{dead['event_seq']}"
    assert api.deliveries(made["id"], state="pending") == []

    finance = api.key("finance")
    retry_path = f"/v1/webhooks/deliveries/{dead['id']}/retry"
    problem(api.client.post(retry_path, headers=finance), 403, "forbidden")
    api.receiver.status = 200
    retried = api.client.post(retry_path, headers=api.admin)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
    problem(api.client.post(retry_path, headers=api.admin), 409, "delivery_not_dead")
    problem(
        api.client.post("/v1/webhooks/deliveries/whd_nope/retry", headers=api.admin),
        404,
        "not_found",
    )
    api.notifier.run_once()
    (done,) = api.deliveries(made["id"], state="delivered")
    assert done["id"] == dead["id"] and done["delivered_at"] is not None
    assert [r.signed for r in api.receiver.received] == [True, True, True]
    assert api.deliveries(made["id"], state="dead") == []
    problem(
        api.client.get(f"/v1/webhooks/{made['id']}/deliveries?state=lost", headers=api.admin),
        422,
        "validation_failed",
    )


def test_deliveries_page_newest_first(api: Api) -> None:
    """Five events, pages of two: newest event first, every delivery once, cursor digits."""
    made = api.hook("/hook")
    for scope in ("agent:agent_a", "agent:agent_b", "wallet:w1", "wallet:w2", "wallet:w3"):
        api.client.post("/v1/freezes", json={"scope": scope}, headers=api.admin)
    until(lambda: len(api.receiver.received) == 5, api.notifier.run_once)
    seen: list[int] = []
    after: str | None = None
    for _ in range(5):
        params = {"limit": "2", **({"after": after} if after else {})}
        page = api.client.get(
            f"/v1/webhooks/{made['id']}/deliveries", params=params, headers=api.admin
        ).json()
        seen += [d["event_seq"] for d in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 5
    bad = api.client.get(f"/v1/webhooks/{made['id']}/deliveries?after=x", headers=api.admin)
    problem(bad, 400, "invalid_request")


def test_the_sdk_and_the_cli_manage_webhooks(api: Api, tmp_path: Path) -> None:
    """The SDK's methods and ``treasurer webhooks add|list|deliveries|retry|remove``."""
    token = api.admin["Authorization"].removeprefix("Bearer ")
    sdk = treasurer.connect(URL, token, http=api.client)
    made = sdk.create_webhook(api.receiver.url("/sdk"), events=["agent.frozen"])
    api.receiver.secrets["/sdk"] = made.secret
    assert [w.id for w in sdk.list_webhooks()] == [made.id]
    assert sdk.get_webhook(made.id).events == ["agent.frozen"]
    sdk.freeze("agent:agent_a")
    until(lambda: len(api.receiver.received) == 1, api.notifier.run_once)
    (delivery,) = sdk.webhook_deliveries(made.id)
    assert (delivery.state, delivery.event) == ("delivered", "agent.frozen")

    def connect(url: str, key: str) -> Client:
        return treasurer.connect(url, key, http=api.client, retries=0)

    wiring = Wiring(
        open_backend=lambda: open_governance(f"sqlite:///{tmp_path / 'local.db'}"),
        load_org_file=load_org_file,
        dump_org_file=dump_org_file,
        init=lambda _demo: [],
        serve=lambda: None,
        connect=connect,
        default_url=URL,
    )
    cli = build_cli(wiring)

    def run(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["webhooks", *args, "--url", URL, "--key", token])
        return result

    added = run("add", "https://hooks.example.com/services/T/B/x", "--format", "slack")
    assert added.exit_code == 0, added.output
    assert "whsec_" in added.output
    listed = run("list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert {r["format"] for r in rows} == {"json", "slack"}
    assert "whsec_" not in listed.stdout
    shown = run("deliveries", made.id)
    assert shown.exit_code == 0 and "agent.frozen" in shown.output
    refused = run("retry", delivery.id)
    assert refused.exit_code == 4 and "delivery_not_dead" in refused.output
    slack_id = next(r["id"] for r in rows if r["format"] == "slack")
    removed = run("remove", slack_id, "--yes")
    assert removed.exit_code == 0, removed.output
    assert [w.id for w in sdk.list_webhooks()] == [made.id]
    assert sdk.remove_webhook(made.id).active is False
    sdk.close()


def test_the_async_client_has_the_same_webhook_calls(api: Api) -> None:
    """``connect_async`` over ASGI: create (secret once), list, read deliveries, remove."""
    token = api.admin["Authorization"].removeprefix("Bearer ")
    transport = httpx.ASGITransport(app=api.client.app)

    async def scenario() -> tuple[str, list[str], list[Any], bool]:
        async with treasurer.connect_async(URL, token, transport=transport) as remote:
            made = await remote.create_webhook("https://example.com/a", events=["agent.frozen"])
            listed = [w.id for w in await remote.list_webhooks()]
            found = await remote.webhook_deliveries(made.id, state="dead")
            removed = await remote.remove_webhook(made.id)
            return made.secret, listed, found, removed.active

    secret, listed, found, active = asyncio.run(scenario())
    assert secret.startswith("whsec_") and len(listed) == 1
    assert found == [] and active is False
