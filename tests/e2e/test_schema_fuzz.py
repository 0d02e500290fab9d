"""Schema fuzzing of the HTTP API with schemathesis, in-process over ASGI.

The OpenAPI document the app serves at ``/openapi.json`` is the oracle: every operation is
called with generated (valid and invalid) inputs, as an admin and, on the agent's routes, as an
agent session, and each response must be no 5xx, a documented status code, a documented content
type and a body matching the documented schema.

Each operation gets a fresh SQLite database with the cross-wallet org applied, so a generated
DELETE or decommission cannot change what the next operation sees. Path parameters are drawn
either by the fuzzer or from the ids that exist (``agent_a``, ``w1``, a live session ...), so
the routes are exercised past their 404 as well.

Bounded: ``TREASURER_FUZZ_EXAMPLES`` examples per operation (default 15), no deadline;
derandomized so CI is reproducible. ``TREASURER_FUZZ_RANDOM=1`` explores new inputs each run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.adapters.vault import FileVault
from treasurer.bootstrap import build_app, open_governance, open_payments
from treasurer.interfaces.http import HttpSettings
from treasurer.service.audit_signing import Ed25519Signer
from treasurer.service.credentials import create_admin_key

Headers = dict[str, str]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = int(os.environ.get("TREASURER_FUZZ_EXAMPLES", "15"))
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("TREASURER_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)

#: Ids that exist in every fuzzed app; ``@name`` stands for an id minted by the fixture.
KNOWN_IDS: dict[str, list[str]] = {
    "agent_id": ["agent_a", "agent_b"],
    "department_id": ["ops"],
    "wallet_id": ["w1", "w2", "w3"],
    "policy_id": [
        "agent:agent_a:budget:day",
        "department:ops:budget:day",
        "org:acme:budget:day",
    ],
    "approver_id": ["alice"],
    "scope": ["org", "agent:agent_a", "wallet:w1", "department:ops"],
    "asset_id": ["ethereum:ETH", "base:USDC"],
    "session_id": ["@session"],
    "key_id": ["@key"],
    "authorization_id": ["@authorization", "@denied"],
}
#: What an agent session may call (the rest answer 403; tests/e2e/test_http_auth.py).
AGENT_PATHS = (
    "/v1/authorizations",
    "/v1/wallets",
    "/v1/policies",
)


def _load_schema() -> Any:
    """The document the app serves at ``/openapi.json`` (loaded from a throwaway app)."""
    app = build_app("sqlite://")
    try:
        return schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        app.state.treasurer.governance.close()


SCHEMA = _load_schema()
#: One embedded chain for every fuzzed app (deploying its contracts takes a moment).
_EVM = LocalEvm()
_AUDIT_SIGNER = Ed25519Signer(Ed25519PrivateKey.generate())
AGENT_SCHEMA = SCHEMA.include(
    lambda ctx: (
        ctx.operation.path.startswith(AGENT_PATHS)
        and (ctx.operation.method.upper() == "GET" or ctx.operation.path.startswith(AGENT_PATHS[0]))
    )
)


@SCHEMA.hook
def flatmap_path_parameters(_ctx: Any, parameters: Any) -> Any:
    """Each path parameter: the generated value or an id that exists."""
    if not isinstance(parameters, dict) or not parameters:
        return st.just(parameters)
    return st.fixed_dictionaries(
        {
            name: st.sampled_from([value, *KNOWN_IDS.get(name, [])])
            for name, value in parameters.items()
        }
    )


@dataclass
class FuzzApi:
    """A fresh app with the org applied, credentials, and a few live objects to aim at."""

    app: FastAPI
    admin: Headers
    agent: Headers
    minted: dict[str, str] = field(default_factory=dict)

    def resolve(self, case: Any) -> None:
        """Replace ``@name`` placeholders in the path by the ids minted for this app."""
        params = case.path_parameters or {}
        for name, value in list(params.items()):
            if isinstance(value, str) and value in self.minted:
                params[name] = self.minted[value]


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def fuzz_api(tmp_path: Path) -> Iterator[FuzzApi]:
    clock = FakeClock()
    url = f"sqlite:///{tmp_path / 'fuzz.db'}"
    # Payments are served too, over a vault with no keys: every payment is refused cleanly.
    vault = FileVault.open(tmp_path / "vault", "fuzz", scrypt_n=2**4)
    # The audit trail signs with a key, as on a node with a data directory (a purge needs it).
    governance = open_governance(url, clock=clock, audit_signer=_AUDIT_SIGNER)
    payments = open_payments(governance, {"evm-local": _EVM.chain}, vault)
    app = build_app(
        url,
        clock,
        settings=HttpSettings(auth_max_failures=1_000_000),
        payments=payments,
        governance=governance,
    )
    store = app.state.treasurer.credentials.store
    _root, root_token = create_admin_key(store, "root", "admin", now=clock.now())
    spare, _spare_token = create_admin_key(store, "spare", "finance", now=clock.now())
    admin = bearer(root_token)
    with TestClient(app) as client:

        def post(path: str, body: dict[str, Any] | None = None, headers: Headers = admin) -> Any:
            response = client.post(path, json=body, headers=headers)
            assert response.status_code in (200, 201), (path, response.text)
            return response.json()

        post("/v1/org", cross_wallet_org())
        agent_session = post("/v1/agents/agent_a/sessions", {"name": "fuzz"})
        other_session = post("/v1/agents/agent_b/sessions", {"name": "other"})
        agent = bearer(agent_session["token"])
        post(
            "/v1/approvers",
            {
                "id": "alice",
                "name": "Alice",
                "kind": "evm",
                "public_key": "0x" + "a1" * 20,
            },
        )
        spend = {"wallet": "w1", "amount": "10.00", "asset": "USDC"}
        pending = post("/v1/authorizations", spend, agent)
        denied = post("/v1/authorizations", {**spend, "amount": "5000.00"}, agent)
        assert (pending["state"], denied["state"]) == ("pending", "denied")
        yield FuzzApi(
            app,
            admin,
            agent,
            {
                "@session": other_session["id"],
                "@key": spare.id,
                "@authorization": pending["id"],
                "@denied": denied["id"],
            },
        )
    app.state.treasurer.governance.close()


#: Fuzzed operations that fail today, each a bug reported to the owner and pinned below by a
#: deterministic test. Strict: once fixed, the item passes and pytest says to drop the line.
KNOWN_FAILURES: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _known_failure(request: pytest.FixtureRequest) -> None:
    reason = KNOWN_FAILURES.get(request.node.name)
    if reason is not None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_every_operation_as_admin(case: Any, fuzz_api: FuzzApi) -> None:
    """An admin key on every operation: no 5xx, and every response as documented."""
    fuzz_api.resolve(case)
    case.call_and_validate(app=fuzz_api.app, headers=fuzz_api.admin, checks=CHECKS)


@AGENT_SCHEMA.parametrize()
@FUZZ_SETTINGS
def test_agent_operations_as_agent(case: Any, fuzz_api: FuzzApi) -> None:
    """An agent session on its own routes (spend, wallets, policies): the same checks."""
    fuzz_api.resolve(case)
    case.call_and_validate(app=fuzz_api.app, headers=fuzz_api.agent, checks=CHECKS)


# -- the bugs the fuzzer found, one deterministic test each -------------------------------------
def documented(method: str, path: str) -> set[str]:
    operation = SCHEMA.raw_schema["paths"][path][method.lower()]
    return set(operation["responses"])


def problem(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


def test_a_huge_float_in_the_org_file_is_refused_not_a_crash(fuzz_api: FuzzApi) -> None:
    """A float of 1e26 or more is refused like any float (400), not a 500."""
    org = cross_wallet_org()
    org["org"]["budgets"][0]["limit_usd"] = 1e26
    with TestClient(fuzz_api.app, raise_server_exceptions=False) as client:
        response = client.post("/v1/org", json=org, headers=fuzz_api.admin)
    problem(response, 400, "org_file_invalid")


def test_sessions_of_an_unknown_agent_answer_a_documented_404(fuzz_api: FuzzApi) -> None:
    """An unknown agent's sessions are a 404 the schema documents."""
    with TestClient(fuzz_api.app) as client:
        response = client.get("/v1/agents/nobody/sessions", headers=fuzz_api.admin)
    problem(response, 404, "not_found")
    assert "404" in documented("GET", "/v1/agents/{agent_id}/sessions")


def test_a_malformed_policy_scope_answers_a_documented_400(fuzz_api: FuzzApi) -> None:
    """A malformed ?scope= is a 400 the schema documents."""
    with TestClient(fuzz_api.app) as client:
        response = client.get("/v1/policies?scope=null", headers=fuzz_api.admin)
    problem(response, 400, "invalid_request")
    assert "400" in documented("GET", "/v1/policies")


def body_operations() -> list[tuple[str, str]]:
    return sorted(
        (method.upper(), path)
        for path, operations in SCHEMA.raw_schema["paths"].items()
        for method, operation in operations.items()
        if "requestBody" in operation
    )


def test_every_unparsable_body_is_a_documented_malformed_json_400(fuzz_api: FuzzApi) -> None:
    """Broken JSON and bytes that are not UTF-8 both answer 400 ``malformed_json``, and every
    route that takes a body documents that 400."""
    undocumented = [op for op in body_operations() if "400" not in documented(*op)]
    wrong_code = []
    with TestClient(fuzz_api.app) as client:
        for method, path in body_operations():
            url = path.replace("{", "").replace("}", "")
            headers = fuzz_api.agent if path.startswith("/v1/authorizations") else fuzz_api.admin
            for body in (b'{"broken', b"\xff\xfe{"):
                response = client.request(
                    method,
                    url,
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                if response.status_code == 400 and response.json()["code"] != "malformed_json":
                    wrong_code.append((method, path, body, response.json()["code"]))
    assert not undocumented and not wrong_code, {
        "400 not documented": undocumented,
        "400 with another code": wrong_code,
    }
