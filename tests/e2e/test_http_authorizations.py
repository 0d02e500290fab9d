"""Authorizations over HTTP: the cross-wallet budget, idempotency, and problem+json errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

from treasurer.bootstrap import build_app
from treasurer.service.credentials import create_admin_key

Headers = dict[str, str]


@dataclass
class Api:
    client: TestClient
    admin: Headers
    agent_a: Headers

    def authorize(self, body: dict[str, str], key: str | None = None) -> Any:
        headers = {**self.agent_a, **({"Idempotency-Key": key} if key else {})}
        response = self.client.post("/v1/authorizations", json=body, headers=headers)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def api(sqlite_url: str, clock: FakeClock) -> Iterator[Api]:
    """The app with the cross-wallet org applied and a session for agent_a."""
    app = build_app(sqlite_url, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    admin = {"Authorization": f"Bearer {token}"}
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/v1/org", json=cross_wallet_org(), headers=admin).status_code == 200
        session = client.post("/v1/agents/agent_a/sessions", headers=admin).json()
        yield Api(client, admin, {"Authorization": f"Bearer {session['token']}"})


def problem_of(response: Response, status: int, code: str) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["status"] == status and body["type"].endswith(code)
    return body


def test_cross_wallet_spend_is_denied_over_http(api: Api) -> None:
    """$999 on w1 is authorized and captured; $499 on w2 is denied by the $1,000 agent budget."""
    first = api.authorize({"wallet": "w1", "amount": "999.00", "asset": "USDC"})
    assert first["state"] == "pending" and first["value_usd"] == "999.00"
    assert first["tier"] == "instant" and first["expires_at"] is not None
    captured = api.client.post(f"/v1/authorizations/{first['id']}/capture", headers=api.agent_a)
    assert captured.json()["state"] == "captured"

    second = api.authorize({"wallet": "w2", "amount": "499.00", "asset": "USDC"})
    assert second["state"] == "denied"
    decision = second["decision"]
    assert decision["allowed"] is False
    (reason,) = [r for r in decision["reasons"] if r["code"] == "agent_daily_budget_exceeded"]
    assert "$1,498.00" in reason["message"] and "$999.00" in reason["message"]
    budgets = {b["scope"]: b for b in decision["budgets"]}
    assert budgets["agent:agent_a"]["used_usd"] == "999.00"
    stored = api.client.get(f"/v1/authorizations/{second['id']}", headers=api.agent_a).json()
    assert stored["state"] == "denied" and stored["decision"]["reasons"] == decision["reasons"]


def test_check_is_a_dry_run(api: Api) -> None:
    """A check explains the decision and reserves nothing; an admin key may check for an agent."""
    body = {"wallet": "w1", "amount": "600.00", "asset": "USDC"}
    for _ in range(3):
        checked = api.client.post("/v1/authorizations/check", json=body, headers=api.agent_a)
        assert checked.status_code == 200 and checked.json()["allowed"] is True
    as_admin = {**body, "agent": "agent_a", "amount": "1000.01"}
    denied = api.client.post("/v1/authorizations/check", json=as_admin, headers=api.admin).json()
    assert denied["allowed"] is False
    assert "agent_daily_budget_exceeded" in [r["code"] for r in denied["reasons"]]
    spend = api.client.get("/v1/spend", headers=api.admin).json()
    assert spend["rows"] == []


def test_an_idempotent_retry_returns_the_first_result(api: Api) -> None:
    """The same key and body return the same authorization and reserve once."""
    body = {"wallet": "w1", "amount": "400.00", "asset": "USDC"}
    first = api.authorize(body, key="order-17")
    again = api.client.post(
        "/v1/authorizations", json=body, headers={**api.agent_a, "Idempotency-Key": "order-17"}
    )
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first["id"] and again.json()["replayed"] is True
    rows = api.client.get("/v1/spend", headers=api.admin).json()["rows"]
    assert rows == [
        {
            "group": "agent_a",
            "captured_usd": "0.00",
            "pending_usd": "400.00",
            "captured_count": 0,
            "pending_count": 1,
            "amounts": {},
        }
    ]


def test_the_same_key_with_another_body_is_a_conflict(api: Api) -> None:
    """Reusing an idempotency key for a different spend is 409 idempotency_key_reused."""
    api.authorize({"wallet": "w1", "amount": "10.00", "asset": "USDC"}, key="k-1")
    response = api.client.post(
        "/v1/authorizations",
        json={"wallet": "w1", "amount": "11.00", "asset": "USDC"},
        headers={**api.agent_a, "Idempotency-Key": "k-1"},
    )
    problem_of(response, 409, "idempotency_key_reused")


def test_capture_and_void_happen_once(api: Api) -> None:
    """Capture above the authorized amount is refused; void after capture is a conflict."""
    auth = api.authorize({"wallet": "w1", "amount": "50.00", "asset": "USDC"})
    base = f"/v1/authorizations/{auth['id']}"
    over = api.client.post(f"{base}/capture", json={"amount": "50.01"}, headers=api.agent_a)
    problem_of(over, 400, "capture_exceeds_authorization")
    done = api.client.post(
        f"{base}/capture", json={"amount": "40", "tx_hash": "0xabc"}, headers=api.agent_a
    ).json()
    assert done["captured_amount"] == "40" and done["captured_usd"] == "40.00"
    problem_of(
        api.client.post(f"{base}/void", headers=api.agent_a), 409, "authorization_not_pending"
    )
    other = api.authorize({"wallet": "w2", "amount": "5", "asset": "USDC"})
    voided = api.client.post(
        f"/v1/authorizations/{other['id']}/void",
        json={"reason": "order cancelled"},
        headers=api.agent_a,
    )
    assert voided.json()["state"] == "voided"
    problem_of(
        api.client.get("/v1/authorizations/auth_nope", headers=api.agent_a), 404, "not_found"
    )


def send(api: Api, content: bytes) -> Response:
    headers = {**api.agent_a, "Content-Type": "application/json"}
    response: Response = api.client.post("/v1/authorizations", content=content, headers=headers)
    return response


def test_malformed_json_is_a_problem(api: Api) -> None:
    """A body that is not JSON is 400 malformed_json."""
    problem_of(send(api, b'{"wallet": "w1", "amount": '), 400, "malformed_json")


@pytest.mark.parametrize("amount", ["499.0", "499", "1e3", "true"])
def test_a_json_number_amount_is_amount_not_a_string(api: Api, amount: str) -> None:
    """Amounts must be strings: a JSON number (or boolean) names the field and the fix."""
    body = f'{{"wallet": "w1", "amount": {amount}, "asset": "USDC"}}'.encode()
    problem = problem_of(send(api, body), 400, "amount_not_a_string")
    assert problem["field"] == "amount"


@pytest.mark.parametrize(
    ("amount", "code"),
    [("-5", "amount_negative"), ("0", "amount_zero"), ("1.1234567", "amount_too_many_decimals")],
)
def test_bad_amount_strings_have_their_own_codes(api: Api, amount: str, code: str) -> None:
    """Amount strings are parsed exactly; each way of being wrong has its code (400)."""
    body = {"wallet": "w1", "amount": amount, "asset": "USDC"}
    response = api.client.post("/v1/authorizations", json=body, headers=api.agent_a)
    assert problem_of(response, 400, code)["field"] == "amount"


def test_an_unknown_field_is_refused(api: Api) -> None:
    """A misspelt field is not ignored: 422 unknown_field naming it."""
    body = {"wallet": "w1", "amount": "1.00", "asset": "USDC", "recipeint": "0xabc"}
    response = api.client.post("/v1/authorizations", json=body, headers=api.agent_a)
    assert problem_of(response, 422, "unknown_field")["field"] == "recipeint"


def test_wrong_types_and_missing_fields_are_problems(api: Api) -> None:
    """A missing wallet is 422 missing_field; a number where text belongs is 422."""
    missing = api.client.post("/v1/authorizations", json={"amount": "1"}, headers=api.agent_a)
    assert problem_of(missing, 422, "missing_field")["field"] == "wallet"
    wrong = api.client.post("/v1/authorizations", json={"wallet": 7}, headers=api.agent_a)
    assert problem_of(wrong, 422, "validation_failed")["field"] == "wallet"
    array = api.client.post("/v1/authorizations", json=[1, 2], headers=api.agent_a)
    problem_of(array, 422, "validation_failed")


def test_an_oversized_body_is_refused(api: Api) -> None:
    """More than 64 KiB is 413 body_too_large, declared or streamed without a length."""
    big = b'{"wallet": "' + b"w" * 70_000 + b'"}'
    problem_of(send(api, big), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    headers = {**api.agent_a, "Content-Type": "application/json"}
    streamed = api.client.post("/v1/authorizations", content=chunks(), headers=headers)
    problem_of(streamed, 413, "body_too_large")


def test_an_internal_error_reveals_nothing(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception is 500 internal_error, without its text or a traceback."""
    assert isinstance(api.client.app, FastAPI)
    governance = api.client.app.state.treasurer.governance

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret database detail")

    monkeypatch.setattr(governance, "check_spend", explode)
    body = {"wallet": "w1", "amount": "1.00", "asset": "USDC"}
    response = api.client.post("/v1/authorizations/check", json=body, headers=api.agent_a)
    problem_of(response, 500, "internal_error")
    assert "secret" not in response.text and "Traceback" not in response.text


def test_a_spend_above_the_approval_threshold_waits_for_approval(api: Api) -> None:
    """An approval policy puts a large spend in pending_approval; it cannot be captured yet."""
    policy = {
        "id": "a-approval",
        "type": "approval",
        "scope": "agent:agent_a",
        "params": {"threshold_usd": "500.00", "required": 1},
    }
    assert api.client.post("/v1/policies", json=policy, headers=api.admin).status_code == 201
    auth = api.authorize({"wallet": "w1", "amount": "600.00", "asset": "USDC"})
    assert auth["state"] == "pending_approval" and auth["tier"] == "approval"
    (requirement,) = auth["decision"]["approvals"]
    assert requirement["policy_id"] == "a-approval" and requirement["required"] == 1
    capture = api.client.post(f"/v1/authorizations/{auth['id']}/capture", headers=api.agent_a)
    problem_of(capture, 409, "authorization_not_released")
