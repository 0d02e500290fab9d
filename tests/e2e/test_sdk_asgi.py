"""The remote client against the in-process app: results, errors by code, retries.

The SDK runs over a Starlette ``TestClient`` (sync) or ``httpx.ASGITransport`` (async), so
these tests exercise the real routes, middleware and problem table without a network. Faults
(503, lost answers, refused connections) come from small transports wrapped around the app.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.custodial import EVM, SOLANA, World, build_world, fresh_recipient
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

import treasurer
from treasurer.adapters.chains.evm_local import LocalEvm
from treasurer.bootstrap import build_app
from treasurer.domain.errors import (
    AmountError,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    OrgFileInvalid,
    RateLimited,
    StoreUnavailable,
    TreasurerError,
    Unauthenticated,
)
from treasurer.sdk import Client, PaymentPreview, PaymentResult, ServerUnreachable
from treasurer.service.credentials import create_admin_key

URL = "http://testserver"
SPEND = {"wallet": "w1", "amount": "400.00", "asset": "USDC"}


@dataclass
class Remote:
    """The app, an admin client and an agent_a client, all over the same ``TestClient``."""

    app: FastAPI
    http: TestClient
    admin_token: str
    agent_token: str
    admin: Client = field(init=False)
    agent: Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = treasurer.connect(URL, self.admin_token, http=self.http, backoff_s=0)
        self.agent = treasurer.connect(URL, self.agent_token, http=self.http, backoff_s=0)

    def client(self, handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> Client:
        """An agent client whose every request goes through ``handler`` first."""
        return Client(URL, self.agent_token, transport=httpx.MockTransport(handler), **kw)

    def forward(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` to the real app and copy its answer."""
        answer = self.http.request(
            request.method, str(request.url), headers=request.headers, content=request.content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


@pytest.fixture
def remote(sqlite_url: str, clock: FakeClock) -> Iterator[Remote]:
    """The cross-wallet org applied through the SDK and a session for agent_a."""
    app = build_app(sqlite_url, clock)
    _key, token = create_admin_key(
        app.state.treasurer.credentials.store, "root", "admin", now=clock.now()
    )
    with TestClient(app, raise_server_exceptions=False) as http:
        admin = treasurer.connect(URL, token, http=http)
        plan = admin.apply(cross_wallet_org())
        assert plan.applied and plan.counts["create"] > 0
        session = admin.create_session("agent_a", name="sdk-test")
        yield Remote(app, http, token, session.token)


def problem_503(_request: httpx.Request) -> httpx.Response:
    body = {"title": "Service Unavailable", "status": 503, "detail": "db down"}
    return httpx.Response(503, json={**body, "code": "store_unavailable"})


def test_the_cross_wallet_denial_reads_like_the_embedded_result(remote: Remote) -> None:
    """$999 on w1 is allowed and captured; $499 on w2 is a denial result, not an exception."""
    first = remote.agent.authorize(wallet="w1", amount="999.00", asset="USDC")
    assert first.allowed and first.state == "pending" and first.codes == []
    assert remote.agent.capture(first.id).state == "captured"
    second = remote.agent.authorize(wallet="w2", amount="499.00", asset="USDC")
    assert not second.allowed and second.state == "denied" and not second.replayed
    assert "agent_daily_budget_exceeded" in second.codes
    (reason,) = [r for r in second.reasons if r.code == "agent_daily_budget_exceeded"]
    assert "$1,498.00" in reason.message and "$999.00" in reason.message
    assert second.decision.allowed is False
    assert remote.agent.get_authorization(second.id).codes == second.codes
    rows = remote.admin.spend(by="agent")
    assert [(r.group, r.captured_usd) for r in rows] == [("agent_a", "999.00")]


def test_check_void_and_admin_reads(remote: Remote) -> None:
    """check is a dry run; void releases; the admin helpers read what apply created."""
    decision = remote.admin.check(agent="agent_a", wallet="w2", amount="1000.01", asset="USDC")
    assert not decision.allowed and "agent_daily_budget_exceeded" in decision.codes
    held = remote.agent.authorize(**SPEND)
    assert remote.agent.void(held.id, reason="changed plans").state == "voided"
    assert remote.agent.void(held.id).state == "voided"  # idempotent
    assert [a.id for a in remote.admin.list_agents()] == ["agent_a", "agent_b"]
    assert {w.id for w in remote.agent.list_wallets()} == {"w1", "w2"}
    assert remote.admin.freeze("wallet:w1", reason="audit").changed
    assert remote.admin.list_freezes() == ["wallet:w1"]
    assert not remote.agent.authorize(**SPEND).allowed
    assert remote.admin.unfreeze("wallet:w1").changed
    assert remote.admin.export()["org"]["id"] == "acme"
    assert remote.admin.plan(remote.admin.export()).counts == {
        "create": 0,
        "update": 0,
        "delete": 0,
    }


ERROR_CASES: list[tuple[str, type[TreasurerError], str, str | None]] = [
    ("malformed amount", AmountError, "amount_malformed", "amount"),
    ("float amount", AmountError, "amount_not_a_string", "amount"),
    ("unknown field", InvalidRequest, "unknown_field", "colour"),
    ("missing authorization", NotFound, "not_found", None),
    ("capture after void", InvalidState, "authorization_not_pending", None),
    ("key reused", IdempotencyConflict, "idempotency_key_reused", "idempotency_key"),
    ("wrong token", Unauthenticated, "unauthenticated", None),
    ("agent on admin route", Forbidden, "forbidden", None),
    ("invalid org file", OrgFileInvalid, "org_file_invalid", None),
]


def provoke(remote: Remote, case: str) -> None:
    agent = remote.agent
    if case == "malformed amount":
        agent.authorize(wallet="w1", amount="1.2.3", asset="USDC")
    elif case == "float amount":
        agent.authorize(wallet="w1", amount=1.5, asset="USDC")
    elif case == "unknown field":
        agent.check(wallet="w1", amount="1.00", asset="USDC", colour="blue")
    elif case == "missing authorization":
        agent.get_authorization("auth_missing")
    elif case == "capture after void":
        agent.capture(agent.void(agent.authorize(**SPEND).id).id)
    elif case == "key reused":
        agent.authorize(**SPEND, idempotency_key="order-1")
        agent.authorize(**{**SPEND, "amount": "401.00"}, idempotency_key="order-1")
    elif case == "wrong token":
        treasurer.connect(URL, "tsk_wrong", http=remote.http).list_agents()
    elif case == "agent on admin route":
        agent.list_agents()
    elif case == "invalid org file":
        remote.admin.apply({"version": 1, "org": {"id": "acme"}, "agents": "nope"})


@pytest.mark.parametrize(("case", "cls", "code", "field_name"), ERROR_CASES)
def test_problems_come_back_as_the_embedded_exception_classes(
    remote: Remote, case: str, cls: type[TreasurerError], code: str, field_name: str | None
) -> None:
    """Each problem code raises the class the embedded API raises, with code and field."""
    with pytest.raises(cls) as caught:
        provoke(remote, case)
    assert caught.value.code == code and caught.value.message
    if field_name is not None:
        assert caught.value.field == field_name


def test_an_idempotent_call_is_retried_after_503s(remote: Remote) -> None:
    """Two 503s, then the app: a GET succeeds on the third attempt, after two backoffs."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return problem_503(request) if len(seen) <= 2 else remote.forward(request)

    waits: list[float] = []
    client = remote.client(handler, backoff_s=0.1, sleep=waits.append)
    assert client.health().status == "ok"
    assert len(seen) == 3 and len(waits) == 2 and 0.05 <= waits[0] <= waits[1] <= 0.2


def test_retries_are_bounded(remote: Remote) -> None:
    """After 1 + ``retries`` attempts the last answer is raised as its class."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return problem_503(request)

    with pytest.raises(StoreUnavailable) as caught:
        remote.client(handler, retries=3, backoff_s=0).list_wallets()
    assert len(seen) == 4 and caught.value.message == "db down"


def test_a_lost_answer_to_authorize_is_retried_without_reserving_twice(remote: Remote) -> None:
    """The first authorize reaches the app but its answer is lost (connection reset); the retry
    carries the same generated Idempotency-Key, so the server replays the first result."""
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        answer = remote.forward(request)
        if len(keys) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return answer

    result = remote.client(handler, backoff_s=0).authorize(**SPEND)
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("sdk-")
    assert result.allowed and result.replayed
    rows = remote.admin.spend(by="agent")
    assert [(r.group, r.pending_usd, r.pending_count) for r in rows] == [("agent_a", "400.00", 1)]


def test_a_non_idempotent_call_is_sent_once(remote: Remote) -> None:
    """create_session mints a token per request, so a 503 is raised, never retried."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return problem_503(request)

    with pytest.raises(StoreUnavailable):
        remote.client(handler, backoff_s=0).create_session("agent_a")
    assert len(seen) == 1


def test_retry_after_is_honoured_and_bounded(remote: Remote) -> None:
    """429 with Retry-After: 3 waits at least 3 s before the retry; Retry-After: 60 is more
    than the client will wait, so RateLimited is raised at once."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            body = {"title": "Too Many Requests", "status": 429, "detail": "slow down"}
            return httpx.Response(
                429, json={**body, "code": "rate_limited"}, headers={"Retry-After": "3"}
            )
        return remote.forward(request)

    waits: list[float] = []
    assert remote.client(handler, backoff_s=0, sleep=waits.append).health().status == "ok"
    assert waits == [3.0]

    def blocked(request: httpx.Request) -> httpx.Response:
        body = {"title": "Too Many Requests", "status": 429, "detail": "blocked for 60 s"}
        headers = {"Retry-After": "60"}
        return httpx.Response(429, json={**body, "code": "rate_limited"}, headers=headers)

    with pytest.raises(RateLimited, match="blocked for 60 s"):
        remote.client(blocked, sleep=waits.append).health()
    assert waits == [3.0]


def test_a_refused_connection_is_retried_then_reported() -> None:
    """Nothing listens on the port: ServerUnreachable (a StoreUnavailable) names the server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    client = Client(f"http://127.0.0.1:{port}", "tsk_x", retries=2, sleep=waits.append)
    with pytest.raises(ServerUnreachable) as caught:
        client.list_agents()
    assert isinstance(caught.value, StoreUnavailable) and len(waits) == 2
    assert caught.value.code == "server_unreachable" and f"127.0.0.1:{port}" in caught.value.message


def test_a_read_timeout_is_reported_not_retried(remote: Remote) -> None:
    """A request that may have reached the server and timed out is not resent blindly: one
    attempt, then ServerUnreachable with code server_timeout. A non-http URL is refused."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ServerUnreachable) as caught:
        remote.client(handler, backoff_s=0).get_wallet("w1")
    assert len(seen) == 1 and caught.value.code == "server_timeout"
    with pytest.raises(InvalidRequest) as bad:
        treasurer.connect("127.0.0.1:8420", "tsk_x")
    assert bad.value.field == "url"


def test_apply_takes_a_yaml_path(remote: Remote, tmp_path: Path) -> None:
    """apply(path) reads the YAML file; a syntax error names the file, line and column."""
    good = tmp_path / "org.yaml"
    good.write_text(yaml.safe_dump(remote.admin.export(), sort_keys=False), encoding="utf-8")
    assert remote.admin.apply(good, dry_run=True).changes == []
    broken = tmp_path / "broken.yaml"
    broken.write_text("org:\n  id: [acme\n", encoding="utf-8")
    with pytest.raises(OrgFileInvalid, match=r"broken\.yaml:3:1: not valid YAML"):
        remote.admin.apply(str(broken))


def test_a_non_problem_error_page_still_maps_by_status(remote: Remote) -> None:
    """A proxy's HTML 404 becomes NotFound with code http_404 and the start of the page."""
    page = httpx.Response(404, text="<html>no such thing</html>")
    client = remote.client(lambda _request: page)
    with pytest.raises(NotFound, match="no such thing") as caught:
        client.get_wallet("w1")
    assert caught.value.code == "http_404"


def test_the_async_client_has_the_same_answers(remote: Remote) -> None:
    """AsyncClient over ASGITransport: authorize, deny, errors by class, retry on 503."""
    calls: list[str] = []

    class Flaky(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.ASGITransport(app=remote.app)

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            calls.append(request.url.path)
            if len(calls) == 1:
                return problem_503(request)
            return await self.inner.handle_async_request(request)

    async def scenario() -> None:
        transport = Flaky()
        async with treasurer.connect_async(
            URL, remote.agent_token, transport=transport, backoff_s=0
        ) as agent:
            first = await agent.authorize(wallet="w1", amount="999.00", asset="USDC")
            assert first.allowed and len(calls) == 2  # the 503 was retried
            denied = await agent.authorize(wallet="w2", amount="499.00", asset="USDC")
            assert not denied.allowed and "agent_daily_budget_exceeded" in denied.codes
            with pytest.raises(InvalidState):
                await agent.capture((await agent.void(first.id)).id)
            with pytest.raises(Forbidden):
                await agent.decommission("agent_a")

    asyncio.run(scenario())


# -- custodial payments -----------------------------------------------------------------------
@dataclass
class Custodial:
    """The custodial world (tests/custodial.py) behind the SDK: admin and agent clients."""

    world: World
    http: TestClient
    agent_token: str
    admin: Client = field(init=False)
    agent: Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = treasurer.connect(URL, self.world.admin_token, http=self.http, backoff_s=0)
        self.agent = treasurer.connect(URL, self.agent_token, http=self.http, backoff_s=0)

    def client(self, handler: Callable[[httpx.Request], httpx.Response]) -> Client:
        return Client(URL, self.agent_token, transport=httpx.MockTransport(handler), backoff_s=0)

    def forward(self, request: httpx.Request) -> httpx.Response:
        answer = self.http.request(
            request.method, str(request.url), headers=request.headers, content=request.content
        )
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


@pytest.fixture(scope="module")
def evm() -> LocalEvm:
    return LocalEvm()


@pytest.fixture
def custodial(
    sqlite_url: str, clock: FakeClock, tmp_path: Path, evm: LocalEvm
) -> Iterator[Custodial]:
    world = build_world(sqlite_url, clock, tmp_path, evm)
    try:
        with TestClient(world.app, raise_server_exceptions=False) as http:
            yield Custodial(world, http, world.session(http, "agent_a"))
    finally:
        world.close()


def test_pay_poll_deny_and_list_through_the_sdk(custodial: Custodial) -> None:
    """pay returns the payment and its decision; polling payment() confirms it; a spend over
    the budget is a denial result, not an exception; payments() lists both."""
    to = fresh_recipient(EVM.network)
    paid = custodial.agent.pay(wallet=EVM.wallet, recipient=to, amount="25.00", asset="DUSD")
    assert isinstance(paid, PaymentResult)
    assert paid.state == "broadcast" and paid.allowed and paid.codes == [] and not paid.done
    assert paid.idempotency_key is not None and paid.idempotency_key.startswith("sdk-")
    polled = custodial.agent.payment(paid.id)
    assert polled.state == "confirmed" and polled.done and polled.decision is not None
    assert custodial.world.token_balance(EVM.network, to) == EVM.units("25")
    custodial.world.clock.advance(seconds=1)  # lists are newest first
    denied = custodial.agent.pay(wallet=EVM.wallet, recipient=to, amount="990.00", asset="DUSD")
    assert not denied.allowed and "agent_daily_budget_exceeded" in denied.codes
    assert denied.reasons and denied.done
    listed = custodial.admin.payments(agent="agent_a")
    assert [p.id for p in listed] == [denied.id, paid.id]
    assert [p.id for p in custodial.agent.payments(state="confirmed")] == [paid.id]


def test_a_dry_run_through_the_sdk_sends_no_key_and_records_nothing(custodial: Custodial) -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        return custodial.forward(request)

    preview = custodial.client(handler).pay(
        wallet=EVM.wallet,
        recipient=fresh_recipient(EVM.network),
        amount="5",
        asset="DUSD",
        dry_run=True,
    )
    assert isinstance(preview, PaymentPreview) and keys == [None]
    assert preview.allowed and preview.simulation.ok and preview.fee is not None
    assert int(preview.fee.max_fee) > 0 and preview.fee.max_fee_usd is not None
    assert custodial.admin.payments() == []


def test_a_lost_answer_to_pay_is_retried_without_paying_twice(custodial: Custodial) -> None:
    """The first pay reaches the server and its answer is lost; the retry carries the same
    generated key, so the server replays the first payment and the chain moved money once."""
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["idempotency-key"])
        answer = custodial.forward(request)
        if len(keys) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return answer

    to = fresh_recipient(EVM.network)
    paid = custodial.client(handler).pay(
        wallet=EVM.wallet, recipient=to, amount="12.00", asset="DUSD"
    )
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith("sdk-")
    assert paid.replayed and len(custodial.admin.payments()) == 1
    assert custodial.agent.payment(paid.id).state == "confirmed"
    assert custodial.world.token_balance(EVM.network, to) == EVM.units("12")


def test_payment_errors_map_to_the_embedded_classes(custodial: Custodial) -> None:
    """Reused key → IdempotencyConflict; float amount → AmountError (before sending); admin
    key → Forbidden; another agent's payment → NotFound; external wallet → InvalidRequest."""
    to = fresh_recipient(EVM.network)
    body = {"wallet": EVM.wallet, "recipient": to, "asset": "DUSD"}
    custodial.agent.pay(**body, amount="1.00", idempotency_key="once")
    with pytest.raises(IdempotencyConflict):
        custodial.agent.pay(**body, amount="2.00", idempotency_key="once")
    with pytest.raises(AmountError) as caught:
        custodial.agent.pay(**body, amount=1.5)
    assert caught.value.code == "amount_not_a_string"
    with pytest.raises(Forbidden, match="session token"):
        custodial.admin.pay(**body, amount="1.00")
    other = custodial.world.session(custodial.http, "agent_b")
    paid_by_a = custodial.admin.payments()[0]
    with pytest.raises(NotFound):
        treasurer.connect(URL, other, http=custodial.http).payment(paid_by_a.id)
    with pytest.raises(InvalidRequest) as external:
        custodial.agent.pay(wallet="a-base", recipient=to, amount="1.00", asset="USDC")
    assert external.value.code == "wallet_not_custodial"


def test_wallet_balance_and_a_custodial_wallet_through_the_sdk(custodial: Custodial) -> None:
    balance = custodial.agent.wallet_balance(SOLANA.wallet)
    assert [b.symbol for b in balance.balances] == ["SOL", "DUSD"]
    assert balance.balances[1].amount == "10000"
    created = custodial.admin.create_wallet(
        "a-evm-2", agent="agent_a", chain="evm-local", custody="local"
    )
    assert created.custody == "local" and created.vendor == "treasurer"
    assert created.address in {a for _f, a in custodial.world.vault.addresses()}
    fresh = custodial.agent.wallet_balance(created)
    assert {b.symbol: b.base_units for b in fresh.balances} == {"ETH": "0", "DUSD": "0"}


def test_the_async_client_pays_polls_and_reads_balances(custodial: Custodial) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=custodial.world.app)
        async with treasurer.connect_async(
            URL, custodial.agent_token, transport=transport, backoff_s=0
        ) as agent:
            to = fresh_recipient(SOLANA.network)
            paid = await agent.pay(wallet=SOLANA.wallet, recipient=to, amount="3", asset="DUSD")
            assert paid.state == "broadcast"
            assert (await agent.payment(paid.id)).state == "confirmed"
            assert [p.id for p in await agent.payments()] == [paid.id]
            preview = await agent.pay(
                wallet=SOLANA.wallet, recipient=to, amount="3", asset="DUSD", dry_run=True
            )
            assert preview.allowed
            balance = await agent.wallet_balance(SOLANA.wallet)
            assert balance.balances[1].amount == "9997"

    asyncio.run(scenario())
