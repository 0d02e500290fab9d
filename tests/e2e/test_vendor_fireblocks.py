"""The Fireblocks API Co-Signer callback handler, over HTTP, with keys the test generates.

The test plays the Co-Signer: it builds each request JWT itself (RS256 over its own RSA key,
with ``cryptography`` directly, not with Treasurer's JWT code) and POSTs the raw token, with no
Treasurer credential, to ``/v1/vendors/fireblocks/v2/tx_sign_request``. It verifies every answer
with the callback handler's *public* key, again independently, and reads the action. The
handler is configured the way an operator does it: ``fireblocks.yaml`` and two PEM files in
the data directory.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from fastapi.testclient import TestClient
from tests.fakes import FakeClock
from tests.orgs import SHOP, cross_wallet_org, usdc

from treasurer.bootstrap import build_app
from treasurer.bootstrap.vendors import install_vendor_hooks
from treasurer.domain.calldata import encode_transfer
from treasurer.domain.errors import InvalidRequest

ROUTE = "/v1/vendors/fireblocks/v2/tx_sign_request"
BASE_USDC = usdc("base")["address"]


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict[str, Any], key: rsa.RSAPrivateKey, alg: str = "RS256") -> bytes:
    """A compact JWS, built by hand as the Co-Signer would send it."""
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{_b64(signature)}".encode()


def verified(token: bytes, key: rsa.RSAPublicKey) -> dict[str, Any]:
    """The payload of an answer, once its RS256 signature verifies with ``key``."""
    head, body, signature = token.decode().split(".")
    assert json.loads(_unb64(head))["alg"] == "RS256"
    key.verify(_unb64(signature), f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    payload: dict[str, Any] = json.loads(_unb64(body))
    return payload


def _pem_private(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_public(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass
class CoSigner:
    """The test's Co-Signer and the app under test."""

    client: TestClient
    clock: FakeClock
    cosigner: rsa.RSAPrivateKey
    handler_public: rsa.RSAPublicKey
    admin: dict[str, str]
    counter: int = 0

    def request(self, **fields: Any) -> dict[str, Any]:
        """A transfer signing request from vault 0 (overridable field by field)."""
        self.counter += 1
        claims = {
            "requestId": f"req-{self.counter}",
            "txId": f"fb-tx-{self.counter}",
            "operation": "TRANSFER",
            "sourceType": "VAULT",
            "sourceId": "0",
            "destType": "ONE_TIME_ADDRESS",
            "destAddress": SHOP,
            "asset": "USDC_BASE",
            "amount": 25.0,
            "amountStr": "25.000000",
            "fee": "0.0001",
            **fields,
        }
        return claims

    def ask(self, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
        response = self.client.post(ROUTE, content=sign(claims, key or self.cosigner))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        answer = verified(response.content, self.handler_public)
        assert answer["requestId"] == claims["requestId"]
        return answer

    def spent(self) -> int:
        """Cents captured or reserved by every agent (read from the governance itself)."""
        gov = self.client.app.state.treasurer.governance  # type: ignore[attr-defined]
        rows = gov.spend(by="agent")
        return sum(r.captured_usd_micros + r.pending_usd_micros for r in rows) // 10_000


def fireblocks_org() -> dict[str, Any]:
    """``cross_wallet_org`` with agent_a's base wallet held at Fireblocks, tiers for a delay
    and the agent's $1,000 day."""
    org = cross_wallet_org()
    agent = org["agents"][0]
    agent["wallets"][0]["vendor"] = "fireblocks"
    agent["tiers"] = {
        "instant_max_usd": "100.00",
        "notify_max_usd": "200.00",
        "delay_max_usd": "500.00",
        "delay_seconds": 600,
    }
    return org


@pytest.fixture
def cosigner(tmp_path: Path, sqlite_url: str, clock: FakeClock) -> Iterator[CoSigner]:
    from treasurer.service.credentials import create_admin_key  # noqa: PLC0415

    cosigner_key, handler_key = _key(), _key()
    (tmp_path / "cosigner.pub.pem").write_bytes(_pem_public(cosigner_key))
    private = tmp_path / "callback.key.pem"
    private.write_bytes(_pem_private(handler_key))
    private.chmod(0o600)
    (tmp_path / "fireblocks.yaml").write_text(
        "cosigner_public_key: cosigner.pub.pem\n"
        "callback_private_key: callback.key.pem\n"
        'wallets: {"0": w1, "1:USDC_ETH": w2}\n'
        "assets: {USDC_BASE: base:USDC, USDC_ETH: ethereum:USDC}\n"
    )
    app = build_app(sqlite_url, clock)
    install_vendor_hooks(app, tmp_path)
    store = app.state.treasurer.credentials.store
    _key_id, token = create_admin_key(store, "root", "admin", now=clock.now())
    admin = {"Authorization": f"Bearer {token}"}
    with TestClient(app) as client:
        assert client.post("/v1/org", json=fireblocks_org(), headers=admin).status_code == 200
        yield CoSigner(client, clock, cosigner_key, handler_key.public_key(), admin)


def test_a_transfer_within_policy_is_approved_and_reserved(cosigner: CoSigner) -> None:
    """$25 from vault 0 (wallet w1) to the shop: APPROVE, with the reservation made, and no
    Treasurer credential on the request: the Co-Signer's signature is the authentication."""
    answer = cosigner.ask(cosigner.request())
    assert answer == {"action": "APPROVE", "requestId": "req-1"}
    assert cosigner.spent() == 2500


def test_the_approval_and_signing_stages_share_one_authorization(cosigner: CoSigner) -> None:
    """Fireblocks asks twice about one transaction (approval, then signing, with a new
    requestId and the fee): one authorization, answered APPROVE both times."""
    first = cosigner.request()
    again = {**first, "requestId": "req-signing", "fee": "0.0002"}
    assert cosigner.ask(first)["action"] == "APPROVE"
    assert cosigner.ask(again) == {"action": "APPROVE", "requestId": "req-signing"}
    assert cosigner.spent() == 2500


def test_a_spend_over_budget_is_rejected_with_the_reason(cosigner: CoSigner) -> None:
    """$1,500 against the $1,000 day: REJECT, and the reason names the budget."""
    answer = cosigner.ask(cosigner.request(amountStr="1500", amount=1500.0))
    assert answer["action"] == "REJECT"
    assert "agent_daily_budget_exceeded" in answer["rejectionReason"]
    assert cosigner.spent() == 0


def test_the_delay_tier_answers_retry_until_the_delay_has_passed(cosigner: CoSigner) -> None:
    """$300 is in the delay tier (600 s): RETRY, then, asked again after the delay with the
    identical request (as the Co-Signer retries), APPROVE."""
    claims = cosigner.request(amountStr="300.000000")
    first = cosigner.ask(claims)
    assert first["action"] == "RETRY" and "delayed until" in first["rejectionReason"]
    cosigner.clock.advance(seconds=601)
    assert cosigner.ask(claims)["action"] == "APPROVE"
    assert cosigner.spent() == 30000


def test_a_transaction_that_changed_between_two_asks_is_rejected(cosigner: CoSigner) -> None:
    """Same txId, another amount: REJECT (never a second reservation)."""
    claims = cosigner.request()
    assert cosigner.ask(claims)["action"] == "APPROVE"
    changed = cosigner.ask({**claims, "requestId": "req-x", "amountStr": "26"})
    assert changed["action"] == "REJECT" and "changed" in changed["rejectionReason"]
    assert cosigner.spent() == 2500


def test_a_contract_call_is_decided_on_its_decoded_calldata(cosigner: CoSigner) -> None:
    """A CONTRACT_CALL to the USDC contract whose calldata transfers $2,000: amountStr (the
    native value) is 0, yet the decision sees the $2,000 transfer and refuses it."""
    data = encode_transfer(SHOP.lower(), 2_000 * 10**6).hex()
    call = cosigner.request(
        operation="CONTRACT_CALL",
        destAddress=BASE_USDC,
        amountStr="0",
        extraParameters={"contractCallData": data},
    )
    answer = cosigner.ask(call)
    assert answer["action"] == "REJECT"
    assert "agent_daily_budget_exceeded" in answer["rejectionReason"]
    small = encode_transfer(SHOP.lower(), 5 * 10**6).hex()
    approved = cosigner.ask(
        {**call, "txId": "fb-call-2", "extraParameters": {"contractCallData": small}}
    )
    assert approved["action"] == "APPROVE"
    assert cosigner.spent() == 500


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"sourceId": "9"}, "no Treasurer wallet"),
        ({"sourceType": "EXCHANGE_ACCOUNT"}, "not a vault account"),
        ({"operation": "RAW"}, "not governed"),
        ({"operation": "CONTRACT_CALL"}, "without contractCallData"),
        ({"amountStr": None}, "no amountStr"),
        ({"asset": "DOGE"}, "unknown_asset"),
    ],
)
def test_what_cannot_be_judged_is_rejected(
    cosigner: CoSigner, fields: dict[str, Any], reason: str
) -> None:
    """Fail closed: a request Treasurer cannot map to a spend is refused, saying why."""
    claims = {k: v for k, v in cosigner.request(**fields).items() if v is not None}
    answer = cosigner.ask(claims)
    assert answer["action"] == "REJECT"
    assert reason in answer["rejectionReason"]


def test_a_request_not_signed_by_the_cosigner_is_refused_without_a_decision(
    cosigner: CoSigner,
) -> None:
    """Another key, ``alg: none``, HS256, a tampered payload, garbage: 401, and nothing is
    reserved or recorded."""
    claims = cosigner.request()
    good = sign(claims, cosigner.cosigner).decode()
    head, body, signature = good.split(".")
    none = _b64(json.dumps({"alg": "none"}).encode()) + "." + body + "."
    hs256 = sign(claims, cosigner.cosigner, alg="HS256").decode()
    tampered = (
        head + "." + _b64(json.dumps({**claims, "amountStr": "1"}).encode()) + "." + signature
    )
    for token in (sign(claims, _key()).decode(), none, hs256, tampered, "not a token", ""):
        response = cosigner.client.post(ROUTE, content=token.encode())
        assert response.status_code == 401, (token, response.text)
    assert cosigner.spent() == 0
    audit = cosigner.client.get("/v1/audit?limit=500", headers=cosigner.admin).json()["items"]
    assert not any(e["kind"].startswith("authorization.") for e in audit)


def test_a_server_without_the_handler_answers_not_configured(
    sqlite_url: str, clock: FakeClock
) -> None:
    """No fireblocks.yaml: the route exists, is public, and says the vendor is not set up."""
    with TestClient(build_app(sqlite_url, clock)) as client:
        response = client.post(ROUTE, content=b"x.y.z")
    assert response.status_code == 404
    assert response.json()["code"] == "vendor_not_configured"


def test_a_bad_configuration_file_stops_the_start(tmp_path: Path, sqlite_url: str) -> None:
    """A private key readable by others, or an unknown key, is refused with the reason."""
    key = _key()
    (tmp_path / "pub.pem").write_bytes(_pem_public(key))
    private = tmp_path / "key.pem"
    private.write_bytes(_pem_private(key))
    private.chmod(0o644)
    config = tmp_path / "fireblocks.yaml"
    config.write_text(
        'cosigner_public_key: pub.pem\ncallback_private_key: key.pem\nwallets: {"0": w1}\n'
    )
    app = build_app(sqlite_url)
    with pytest.raises(InvalidRequest, match="readable by others"):
        install_vendor_hooks(app, tmp_path)
    private.chmod(0o600)
    config.write_text(config.read_text() + "secret: 1\n")
    with pytest.raises(InvalidRequest, match="unknown key"):
        install_vendor_hooks(app, tmp_path)
