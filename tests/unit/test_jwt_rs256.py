"""The RS256-only JWT code the Fireblocks handler speaks: what it accepts and what it refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from treasurer.adapters.vendors import jwt_rs256
from treasurer.adapters.vendors.jwt_rs256 import TokenInvalid

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_a_token_round_trips_and_its_claims_come_back(key: rsa.RSAPrivateKey) -> None:
    token = jwt_rs256.encode({"action": "APPROVE", "requestId": "r1"}, key)
    claims = jwt_rs256.decode(token, key.public_key(), now=NOW)
    assert claims == {"action": "APPROVE", "requestId": "r1"}


def test_expiry_and_not_before_are_enforced_with_leeway(key: rsa.RSAPrivateKey) -> None:
    """exp 120 s ago is refused; 30 s ago is within the 60 s leeway; nbf in the future too."""
    stamp = NOW.timestamp()
    for claims in ({"exp": stamp - 120}, {"nbf": stamp + 120}, {"exp": "soon"}):
        with pytest.raises(TokenInvalid):
            jwt_rs256.decode(jwt_rs256.encode(claims, key), key.public_key(), now=NOW)
    ok = jwt_rs256.encode({"exp": stamp - 30, "nbf": stamp + 30}, key)
    assert jwt_rs256.decode(ok, key.public_key(), now=NOW)["exp"] == stamp - 30


def test_keys_that_are_not_rsa_2048_are_refused() -> None:
    """A 1024-bit RSA key and an EC key are not RS256 keys."""
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    curve = ec.generate_private_key(ec.SECP256R1())
    for private in (small, curve):
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(ValueError, match="RSA"):
            jwt_rs256.load_private_key(pem)
        with pytest.raises(ValueError, match="RSA"):
            jwt_rs256.load_public_key(public)


def test_malformed_tokens_are_refused(key: rsa.RSAPrivateKey) -> None:
    good = jwt_rs256.encode({"a": 1}, key)
    head, body, signature = good.split(".")
    for token in (
        "",
        "a.b",
        f"{head}.{body}",
        f"{head}.{body}.{signature}.x",
        f"!!.{body}.{signature}",
        f"{head}.{body}.{signature[:-4]}AAAA",
        "é.é.é",
    ):
        with pytest.raises(TokenInvalid):
            jwt_rs256.decode(token, key.public_key(), now=NOW)
