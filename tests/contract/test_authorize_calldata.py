"""Governance-mode authorizations of raw calldata: decided on what the bytes really do.

An external wallet about to sign a contract call sends ``to``, ``data`` and ``value`` instead
of an amount and a recipient. An ERC-20 ``transfer`` hidden in the calldata is decided on its
real recipient and amount (so a recipients denylist and the budgets see them), an ``approve``
as an approval, any other call as a contract call at its native value; and the calldata is
part of what an idempotent retry compares. Every store; the embedded API and the SDK over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import SHOP, W3, cross_wallet_org, usdc

import treasurer
from treasurer.bootstrap import EmbeddedGovernance, build_app
from treasurer.domain.calldata import encode_approve, encode_transfer, encode_transfer_from
from treasurer.domain.errors import AmountError, IdempotencyConflict, InvalidRequest
from treasurer.service.credentials import create_admin_key

USDC = usdc("base")["address"]
BURN = "0x000000000000000000000000000000000000dead"
UNIT = 10**6


def _hex(raw: bytes) -> str:
    return "0x" + raw.hex()


def calldata_org() -> dict[str, Any]:
    """The cross-wallet org, with base's native coin, a burn address denied at the org and a
    Solana wallet."""
    org = cross_wallet_org()
    org["assets"].append(
        {
            "id": "base:ETH",
            "chain": "base",
            "symbol": "ETH",
            "decimals": 18,
            "price": {"source": "manual", "max_age": "1h"},
        }
    )
    org["policies"] = [
        {
            "id": "no-burn",
            "type": "recipients",
            "scope": "org",
            "params": {"deny": [{"address": BURN, "label": "burn"}]},
        }
    ]
    org["agents"][1]["wallets"].append(
        {
            "id": "sol",
            "chain": "solana-devnet",
            "address": "9WdVr1xzBABczUTkiSyY5Khhc8nP8V3V7uf4zaz4geHu",
            "custody": "external",
            "vendor": "privy",
        }
    )
    return org


@pytest.fixture
def gov(database_url: str, clock: FakeClock) -> Iterator[EmbeddedGovernance]:
    governance = treasurer.open(database_url, clock=clock)
    governance.apply(calldata_org())
    yield governance
    governance.close()


def test_an_erc20_transfer_in_calldata_is_decided_on_its_real_recipient_and_amount(
    gov: EmbeddedGovernance,
) -> None:
    """The call goes to the USDC contract; the decision sees $250 to the shop, recorded with
    the raw call in the audit trail."""
    data = _hex(encode_transfer(SHOP, 250 * UNIT))
    result = gov.authorize(agent="agent_a", wallet="w1", to=USDC, data=data)
    assert result.allowed, result.codes
    auth = result.authorization
    assert (auth.asset_id, auth.amount, auth.recipient) == ("base:USDC", 250 * UNIT, SHOP)
    assert auth.value_usd_micros == 250_000_000
    request = result.decision["request"]
    assert isinstance(request, dict)
    assert request["kind"] == "transfer"
    assert request["call"] == {"to": USDC.lower(), "data": data, "value": "0"}


def test_a_denied_recipient_hidden_in_calldata_is_denied(gov: EmbeddedGovernance) -> None:
    """transfer(burn, 1) and transferFrom(self, burn, 1) both reach the recipients denylist,
    though the call itself goes to the USDC contract."""
    for raw in (encode_transfer(BURN, UNIT), encode_transfer_from(SHOP, BURN, UNIT)):
        denied = gov.authorize(agent="agent_a", wallet="w1", to=USDC, data=_hex(raw))
        assert not denied.allowed and "recipient_denied" in denied.codes, denied.codes


def test_the_budget_sees_the_calldata_amount(gov: EmbeddedGovernance) -> None:
    """$1,500 in the calldata against a $1,000 day: denied for budget, though no amount was
    given and the call's native value is zero."""
    data = _hex(encode_transfer(SHOP, 1_500 * UNIT))
    denied = gov.authorize(agent="agent_a", wallet="w1", to=USDC, data=data, value="0")
    assert "agent_daily_budget_exceeded" in denied.codes
    check = gov.check(agent="agent_a", wallet="w1", to=USDC, data=data)
    assert not check.allowed and check.value_usd_micros == 1_500_000_000


def test_an_approve_in_calldata_is_an_approval(gov: EmbeddedGovernance) -> None:
    """approve(spender, n) is held to token_approvals (none here: denied as such)."""
    data = _hex(encode_approve(SHOP, 10 * UNIT))
    denied = gov.authorize(agent="agent_a", wallet="w1", to=USDC, data=data)
    assert "token_approval_not_allowed" in denied.codes


def test_the_calldata_is_part_of_what_a_retry_compares(gov: EmbeddedGovernance) -> None:
    """Same key and same bytes (in any hex case): the first result. Same key, one byte changed,
    or the same spend written without calldata: a conflict, never a second reservation."""
    data = _hex(encode_transfer(SHOP, 20 * UNIT))
    first = gov.authorize(agent="agent_a", wallet="w1", to=USDC, data=data, idempotency_key="k")
    again = gov.authorize(
        agent="agent_a",
        wallet="w1",
        to=USDC.upper().replace("0X", "0x"),
        data=data.upper().replace("0X", "0x"),
        idempotency_key="k",
    )
    assert again.replayed and again.id == first.id
    changed = _hex(encode_transfer(SHOP, 20 * UNIT + 1))
    with pytest.raises(IdempotencyConflict):
        gov.authorize(agent="agent_a", wallet="w1", to=USDC, data=changed, idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        gov.authorize(
            agent="agent_a",
            wallet="w1",
            amount="20",
            asset="USDC",
            recipient=SHOP,
            idempotency_key="k",
        )
    plain = gov.authorize(
        agent="agent_a", wallet="w1", amount="1", asset="USDC", recipient=SHOP, idempotency_key="p"
    )
    replay = gov.authorize(
        agent="agent_a", wallet="w1", amount="1", asset="USDC", recipient=SHOP, idempotency_key="p"
    )
    assert replay.replayed and replay.id == plain.id  # requests without calldata: unchanged


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"data": "0xa9059cbb"}, "field_required", "to"),
        ({"to": USDC}, "field_required", "data"),
        ({"to": USDC, "data": "0x", "amount": "1"}, "field_not_allowed", "amount"),
        ({"to": USDC, "data": "0x", "recipient": SHOP}, "field_not_allowed", "recipient"),
        ({"to": USDC, "data": "0xa9059cbb00"}, "calldata_malformed", None),
        ({"to": W3, "data": _hex(encode_transfer(SHOP, UNIT))}, "unknown_asset", "to"),
        ({"to": "usdc", "data": "0x"}, "address_invalid", "to"),
    ],
)
def test_calldata_requests_that_cannot_be_decided_are_refused(
    gov: EmbeddedGovernance, fields: dict[str, Any], code: str, field: str | None
) -> None:
    """Each malformed request names its field and a stable code."""
    with pytest.raises((InvalidRequest, AmountError)) as caught:
        gov.authorize(agent="agent_a", wallet="w1", **fields)
    assert caught.value.code == code
    if field is not None:
        assert caught.value.field == field


def test_calldata_on_a_solana_wallet_is_refused(gov: EmbeddedGovernance) -> None:
    with pytest.raises(InvalidRequest) as caught:
        gov.authorize(agent="agent_b", wallet="sol", to=USDC, data="0x")
    assert caught.value.code == "call_not_supported"


def test_the_sdk_authorizes_calldata_over_http(sqlite_url: str, clock: FakeClock) -> None:
    """The remote client sends to/data/value as JSON; the server decodes them the same way,
    and a JSON number for value is refused before anything is sent."""
    app = build_app(sqlite_url, clock)
    store = app.state.treasurer.credentials.store
    _key, token = create_admin_key(store, "root", "admin", now=clock.now())
    with TestClient(app) as http:
        admin = treasurer.connect("http://testserver", token, http=http)
        admin.apply(calldata_org())
        session = admin.create_session("agent_a", name="calldata")
        agent = treasurer.connect("http://testserver", session.token, http=http)
        data = _hex(encode_transfer(SHOP, 30 * UNIT))
        result = agent.authorize(wallet="w1", to=USDC, data=data, value="0")
        assert result.allowed and result.amount == "30" and result.asset == "base:USDC"
        assert result.decision.request is not None
        assert result.decision.request["recipient"] == SHOP
        denied = agent.authorize(wallet="w1", to=USDC, data=_hex(encode_transfer(BURN, UNIT)))
        assert "recipient_denied" in denied.codes
        with pytest.raises(AmountError):
            agent.authorize(wallet="w1", to=USDC, data=data, value=0.0)
        with pytest.raises(InvalidRequest) as caught:
            agent.authorize(wallet="w1", to=USDC, data=data, amount="30")
        assert caught.value.code == "field_not_allowed"
