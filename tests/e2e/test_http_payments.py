"""Custodial payments over HTTP, on the embedded EVM and the embedded Solana.

The app is the real one (``create_app``) over a real ``PaymentService``: governance decides
and reserves, the vault signs, the chain executes, and ``GET /v1/payments/{id}`` reads the
receipt and captures. The must-show: an agent with a session token pays within policy
(instant, then notify with its outbox row), is denied above its budget with nothing sent, and
the chain's balances equal, to the base unit, what the captured authorizations and the spend
report say.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from tests.custodial import (
    CASES,
    EVM,
    SOLANA,
    ChainCase,
    World,
    bearer,
    build_world,
    fresh_recipient,
)
from tests.fakes import FakeClock

from treasurer.adapters.chains.evm_errors import ChainUnavailable
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.service.chain_ports import Receipt

pytestmark = pytest.mark.timeout(120)
Headers = dict[str, str]


@pytest.fixture(scope="module")
def evm() -> LocalEvm:
    """One embedded EVM for the module (it deploys contracts); each test has fresh keys."""
    return LocalEvm()


class Api:
    """A started app with an admin and a session for each agent."""

    def __init__(self, world: World, http: TestClient) -> None:
        self.world = world
        self.http = http
        self.admin = bearer(world.admin_token)
        self.agent_a = bearer(world.session(http, "agent_a"))
        self.agent_b = bearer(world.session(http, "agent_b"))

    def pay(self, body: dict[str, Any], key: str | None, who: Headers | None = None) -> Response:
        headers = {**(who or self.agent_a), **({"Idempotency-Key": key} if key else {})}
        return self.http.post("/v1/payments", json=body, headers=headers)

    def paid(self, body: dict[str, Any], key: str) -> Any:
        response = self.pay(body, key)
        assert response.status_code == 201, response.text
        return response.json()

    def get(self, path: str, who: Headers | None = None) -> Any:
        response = self.http.get(path, headers=who or self.admin)
        assert response.status_code == 200, response.text
        return response.json()


def _api(world: World) -> Iterator[Api]:
    try:
        with TestClient(world.app, raise_server_exceptions=False) as http:
            yield Api(world, http)
    finally:
        world.close()


@pytest.fixture
def api(database_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm) -> Iterator[Api]:
    """The custodial world on each backend (SQLite; PostgreSQL when configured)."""
    yield from _api(build_world(database_url, clock, tmp_path, evm))


@pytest.fixture
def lite(sqlite_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm) -> Iterator[Api]:
    """The custodial world on SQLite only, for the checks that do not touch the store's SQL."""
    yield from _api(build_world(sqlite_url, clock, tmp_path, evm))


def problem_of(response: Response, status: int, code: str) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def transfer(case: ChainCase, to: str, amount: str) -> dict[str, str]:
    return {"wallet": case.wallet, "recipient": to, "amount": amount, "asset": "DUSD"}


@pytest.mark.parametrize("network", [EVM.network, SOLANA.network])
def test_pay_notify_deny_and_the_chain_agrees_with_the_books(api: Api, network: str) -> None:
    """$25 instant → confirmed; $250 notify → confirmed with an outbox row; $900 more is above
    the $1,000 daily budget → denied, nothing sent. Balances moved by exactly the captured
    amounts (tokens) and the fees paid (native coin), and the spend report agrees."""
    case, world = CASES[network], api.world
    sender, to = world.addresses[case.wallet], fresh_recipient(network)
    tokens_before = world.token_balance(network, sender)
    native_before = world.native_balance(network, sender)

    instant = api.paid(transfer(case, to, "25.00"), "order-1")
    assert instant["state"] == "broadcast" and instant["tier"] == "instant", instant
    assert instant["amount"] == "25" and instant["amount_base_units"] == str(case.units("25"))
    assert instant["tx_id"] and instant["authorization"] and instant["decision"]["allowed"]
    assert instant["fee_quote"] is not None and instant["fee_quote_usd"] is not None
    assert instant["chain"] == network and instant["agent"] == "agent_a"
    budgets = {b["scope"]: b for b in instant["decision"]["budgets"]}
    assert budgets["agent:agent_a"]["remaining_usd"] == "975.00"
    polled = api.get(f"/v1/payments/{instant['id']}", api.agent_a)
    assert polled["state"] == "confirmed", polled
    assert polled["fee_paid"] is not None and polled["finalized_at"] is not None
    assert polled["decision"]["tier"] == "instant"

    notify = api.paid(transfer(case, to, "250.00"), "order-2")
    assert notify["tier"] == "notify" and notify["state"] == "broadcast", notify
    assert api.get(f"/v1/payments/{notify['id']}", api.agent_a)["state"] == "confirmed"
    outbox = world.payments.payments.notifications(10)
    assert [(n["kind"], n["payload"]["payment"]) for n in outbox] == [  # type: ignore[index]
        ("payment.notify", notify["id"])
    ]

    tokens_mid = world.token_balance(network, sender)
    denied = api.paid(transfer(case, to, "900.00"), "order-3")
    assert denied["state"] == "denied" and denied["tx_id"] is None
    codes = [r["code"] for r in denied["decision"]["reasons"]]
    assert "agent_daily_budget_exceeded" in codes
    assert world.token_balance(network, sender) == tokens_mid

    confirmed = [api.get(f"/v1/payments/{p['id']}") for p in (instant, notify)]
    auths = [api.get(f"/v1/authorizations/{p['authorization']}") for p in confirmed]
    assert [a["state"] for a in auths] == ["captured", "captured"]
    captured = sum(case.units(a["captured_amount"]) for a in auths)
    assert captured == case.units("275")
    assert world.token_balance(network, sender) == tokens_before - captured
    assert world.token_balance(network, to) == captured
    fees = sum(int(p["fee_paid"]) for p in confirmed)
    assert world.native_balance(network, sender) == native_before - fees
    spend = api.get("/v1/spend?group_by=agent")["rows"]
    assert spend == [
        {
            "group": "agent_a",
            "captured_usd": "275.00",
            "pending_usd": "0.00",
            "captured_count": 2,
            "pending_count": 0,
            "amounts": {next(iter(spend[0]["amounts"])): "275.000000"},
        }
    ]
    assert next(iter(spend[0]["amounts"])).endswith(":DUSD")
    assert Decimal(spend[0]["captured_usd"]) * 10**case.token_decimals == captured  # $1 peg


def test_a_retry_replays_and_another_body_under_the_key_conflicts(api: Api) -> None:
    """The same key and body answer 201 with the first payment (sent once); the same key with
    another amount is 409 idempotency_key_reused."""
    to = fresh_recipient(EVM.network)
    body = transfer(EVM, to, "10.00")
    first = api.paid(body, "retry-me")
    again = api.pay(body, "retry-me")
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first["id"] and again.json()["replayed"] is True
    assert again.json()["tx_id"] == first["tx_id"]
    problem_of(api.pay({**body, "amount": "11.00"}, "retry-me"), 409, "idempotency_key_reused")
    assert api.get(f"/v1/payments/{first['id']}")["state"] == "confirmed"
    assert api.world.token_balance(EVM.network, to) == EVM.units("10")


def test_bad_requests_answer_clear_problems(lite: Api) -> None:
    """No key, a JSON number amount, an unknown field, an external wallet, a missing field."""
    to = fresh_recipient(EVM.network)
    body = transfer(EVM, to, "10.00")
    missing = problem_of(lite.pay(body, None), 400, "idempotency_key_required")
    assert missing["field"] == "Idempotency-Key" and "Idempotency-Key" in missing["detail"]
    problem_of(lite.pay({**body, "amount": 10.0}, "k1"), 400, "amount_not_a_string")
    problem_of(lite.pay({**body, "amount": 10}, "k2"), 400, "amount_not_a_string")
    problem_of(lite.pay({**body, "agent": "agent_a"}, "k3"), 422, "unknown_field")
    external = {**body, "wallet": "a-base", "asset": "USDC"}
    problem_of(lite.pay(external, "k4"), 400, "wallet_not_custodial")
    no_recipient = {k: v for k, v in body.items() if k != "recipient"}
    assert lite.pay(no_recipient, "k5").status_code == 400
    assert lite.get("/v1/payments")["items"] == []  # none of them recorded a payment


def test_only_the_agent_pays_and_only_from_its_own_wallets(lite: Api) -> None:
    """An admin (or finance) key may not pay; agent B neither reads agent A's payment nor pays
    from agent A's wallet (404, audited), and lists only its own payments."""
    body = transfer(EVM, fresh_recipient(EVM.network), "10.00")
    refused = problem_of(lite.pay(body, "adm", lite.admin), 403, "forbidden")
    assert "session token" in refused["detail"]
    finance = bearer(lite.world.key("finance"))
    problem_of(lite.pay(body, "fin", finance), 403, "forbidden")
    paid = lite.paid(body, "mine")
    path = f"/v1/payments/{paid['id']}"
    problem_of(lite.http.get(path, headers=lite.agent_b), 404, "not_found")
    assert lite.get("/v1/payments", lite.agent_b)["items"] == []
    problem_of(lite.pay(body, "theirs", lite.agent_b), 404, "not_found")
    audit = lite.get("/v1/audit?limit=500")["items"]
    assert any(e["kind"] == "access.denied" and e["actor"] == "agent:agent_b" for e in audit)
    for headers in (lite.admin, finance, bearer(lite.world.key("auditor")), lite.agent_a):
        assert lite.get(path, headers)["id"] == paid["id"]
    scoped = bearer(lite.world.key("finance", department="sales"))  # agent_a is in ops
    problem_of(lite.http.get(path, headers=scoped), 404, "not_found")


def test_a_dry_run_decides_quotes_and_simulates_without_a_trace(lite: Api) -> None:
    """A dry run needs no key, answers 200 with decision, fee (and USD) and simulation, and
    records nothing; one beyond the wallet's funds says the simulation fails."""
    to = fresh_recipient(EVM.network)
    response = lite.pay({**transfer(EVM, to, "40.00"), "dry_run": True}, None)
    assert response.status_code == 200, response.text
    preview = response.json()
    assert preview["dry_run"] is True and preview["decision"]["allowed"] is True
    assert int(preview["fee"]["max_fee"]) > 0 and preview["fee"]["max_fee_usd"] is not None
    assert preview["simulation"] == {"ok": True, "error": None}
    budgets = {b["scope"]: b for b in preview["decision"]["budgets"]}
    assert budgets["agent:agent_a"]["remaining_usd"] == "960.00"
    assert lite.get("/v1/payments")["items"] == []
    assert lite.get("/v1/spend")["rows"] == []
    assert lite.world.token_balance(EVM.network, to) == 0
    too_much = lite.pay({**transfer(EVM, to, "20000.00"), "dry_run": True}, None).json()
    assert too_much["simulation"]["ok"] is False and too_much["fee"] is None


def test_list_filters_and_pages_newest_first(api: Api) -> None:
    """Three payments, two a page, newest first; filters by state, agent and wallet."""
    to = fresh_recipient(EVM.network)
    ids = []
    for i, amount in enumerate(("1.00", "2.00", "3.00")):
        ids.append(api.paid(transfer(EVM, to, amount), f"p{i}")["id"])
        api.world.clock.advance(seconds=1)
    denied = api.paid(transfer(EVM, to, "5000.00"), "too-much")
    first = api.get("/v1/payments?limit=2")
    assert [p["id"] for p in first["items"]] == [denied["id"], ids[2]] and first["next"]
    assert all(p["decision"] is None for p in first["items"])
    rest = api.get(f"/v1/payments?limit=2&after={first['next']}")
    assert [p["id"] for p in rest["items"]] == [ids[1], ids[0]] and rest["next"] is None
    only_denied = api.get("/v1/payments?state=denied")["items"]
    assert [p["id"] for p in only_denied] == [denied["id"]]
    assert len(api.get("/v1/payments?agent=agent_a&wallet=a-evm-local")["items"]) == 4
    assert api.get("/v1/payments?agent=agent_b")["items"] == []
    ops = bearer(api.world.key("auditor", department="ops"))
    assert len(api.get("/v1/payments", ops)["items"]) == 4
    sales = bearer(api.world.key("auditor", department="sales"))
    assert api.get("/v1/payments", sales)["items"] == []
    problem_of(api.http.get("/v1/payments?agent=agent_a", headers=sales), 404, "not_found")
    problem_of(
        api.http.get("/v1/payments?after=nonsense", headers=api.admin), 400, "invalid_request"
    )


class FlakyReceipts:
    """The embedded EVM, except that reading a receipt fails as an unreachable node does."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def network(self) -> str:
        return str(self.inner.network)

    def receipt(self, tx_id: str) -> Receipt:
        raise ChainUnavailable(f"no answer for {tx_id}")


def test_reading_a_broadcast_payment_survives_an_unreachable_node(lite: Api) -> None:
    """When the receipt cannot be read, GET answers the stored state (200, broadcast)."""
    paid = lite.paid(transfer(EVM, fresh_recipient(EVM.network), "7.00"), "flaky")
    registry = lite.world.payments.chains
    real = registry.get(EVM.network)
    registry._chains[EVM.network] = FlakyReceipts(real)  # type: ignore[attr-defined]
    try:
        assert lite.get(f"/v1/payments/{paid['id']}")["state"] == "broadcast"
    finally:
        registry._chains[EVM.network] = real  # type: ignore[attr-defined]
    assert lite.get(f"/v1/payments/{paid['id']}")["state"] == "confirmed"


@pytest.mark.parametrize("network", [EVM.network, SOLANA.network])
def test_wallet_balance_reads_every_asset_of_its_chain(lite: Api, network: str) -> None:
    """Native coin first, then tokens; decimal strings and exact base units from the chain."""
    case, world = CASES[network], lite.world
    address = world.addresses[case.wallet]
    body = lite.get(f"/v1/wallets/{case.wallet}/balance", lite.agent_a)
    assert (body["wallet"], body["chain"], body["address"]) == (case.wallet, network, address)
    native, token = body["balances"]
    assert (native["symbol"], native["token"]) == (case.native, None)
    assert native["base_units"] == str(world.native_balance(network, address))
    assert token["asset"] == case.token_asset and token["amount"] == "10000"
    assert token["base_units"] == str(world.token_balance(network, address))
    assert token["error"] is None


def test_wallet_balance_on_a_chain_this_node_does_not_reach(lite: Api) -> None:
    """An external wallet on base, which this node has no connection to: 400 with the code."""
    problem_of(
        lite.http.get("/v1/wallets/a-base/balance", headers=lite.admin), 400, "chain_not_configured"
    )
    problem_of(
        lite.http.get("/v1/wallets/a-evm-local/balance", headers=lite.agent_b), 404, "not_found"
    )


def test_custodial_wallets_get_their_keys_from_the_vault(lite: Api) -> None:
    """custody local without an address: the vault creates the key; with an address the
    vault lacks: 409 key_not_in_vault; external without an address: 400."""
    wallet = {"id": "new-sol", "agent": "agent_a", "chain": "solana-local", "custody": "local"}
    created = lite.http.post("/v1/wallets", json=wallet, headers=lite.admin)
    assert created.status_code == 201, created.text
    address = created.json()["address"]
    assert address in {a for _family, a in lite.world.vault.addresses()}
    assert created.json()["vendor"] == "treasurer"
    evm_key = lite.world.addresses["a-evm-local"]
    held = {**wallet, "id": "again", "chain": "evm-local", "address": evm_key.lower()}
    problem_of(lite.http.post("/v1/wallets", json=held, headers=lite.admin), 409, "conflict")
    wrong_family = {**wallet, "id": "evm-on-sol", "address": evm_key}
    problem_of(
        lite.http.post("/v1/wallets", json=wrong_family, headers=lite.admin),
        409,
        "key_not_in_vault",
    )
    foreign = {**wallet, "id": "nokey", "chain": "evm-local", "address": "0x" + "4" * 40}
    body = problem_of(
        lite.http.post("/v1/wallets", json=foreign, headers=lite.admin), 409, "key_not_in_vault"
    )
    assert body["field"] == "address"
    keys_before = len(lite.world.vault.addresses())
    external = {"id": "ext", "agent": "agent_a", "chain": "base", "custody": "external"}
    problem_of(
        lite.http.post("/v1/wallets", json=external, headers=lite.admin), 400, "invalid_request"
    )
    duplicate = {**wallet, "id": "new-sol"}
    problem_of(lite.http.post("/v1/wallets", json=duplicate, headers=lite.admin), 409, "conflict")
    unknown_chain = {**wallet, "id": "moon", "chain": "moonchain"}
    problem_of(
        lite.http.post("/v1/wallets", json=unknown_chain, headers=lite.admin),
        400,
        "chain_not_configured",
    )
    assert len(lite.world.vault.addresses()) == keys_before  # refusals leave no stray keys
    to = fresh_recipient(SOLANA.network)
    lite.world.solana.airdrop(address, 10**9)
    lite.world.solana.mint_to(address, 5 * 10**6)
    paid = lite.paid({"wallet": "new-sol", "recipient": to, "amount": "5", "asset": "DUSD"}, "n")
    assert lite.get(f"/v1/payments/{paid['id']}")["state"] == "confirmed"


def test_a_server_without_payments_says_so(
    sqlite_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm
) -> None:
    """Started without chains and a vault: the payment routes answer 503
    payments_not_configured, balances chain_not_configured, custodial wallets are refused."""
    world = build_world(sqlite_url, clock, tmp_path, evm, with_payments=False)
    for api in _api(world):
        body = transfer(EVM, fresh_recipient(EVM.network), "1.00")
        problem_of(api.pay(body, "k"), 503, "payments_not_configured")
        problem_of(api.http.get("/v1/payments", headers=api.admin), 503, "payments_not_configured")
        problem_of(
            api.http.get("/v1/payments/pay_x", headers=api.admin), 503, "payments_not_configured"
        )
        balance = api.http.get("/v1/wallets/a-evm-local/balance", headers=api.admin)
        problem_of(balance, 400, "chain_not_configured")
        local = {"id": "l", "agent": "agent_a", "chain": "evm-local", "custody": "local"}
        problem_of(
            api.http.post("/v1/wallets", json=local, headers=api.admin),
            503,
            "payments_not_configured",
        )
