"""Compact JWS with RS256 only (RFC 7515 / 7519), over ``cryptography``.

Why not a general JWT library: a vendor callback needs exactly one algorithm, and the classic
JWT mistakes come from generality (``alg: none``, an HMAC "signed" with the RSA public key,
unchecked expiry). This module accepts one header algorithm, ``RS256``, refuses everything
else before looking at the payload, verifies RSASSA-PKCS1-v1_5 with SHA-256 over the exact
bytes received, and checks ``exp`` and ``nbf`` when the token carries them (with
``leeway_s`` for clock skew). RSA keys shorter than 2048 bits are refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

MIN_RSA_BITS: Final = 2048
#: A token is at most this long: a callback carries one transaction, not a file.
MAX_TOKEN_BYTES: Final = 64 * 1024


class TokenInvalid(ValueError):
    """The token is malformed, not RS256, badly signed, expired or not yet valid."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenInvalid("a token segment is not base64url") from exc


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenInvalid(f"the token {what} is not JSON") from exc
    if not isinstance(value, dict):
        raise TokenInvalid(f"the token {what} is not a JSON object")
    return value


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """An RSA public key (PEM, SubjectPublicKeyInfo or PKCS#1), at least 2048 bits."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RS256 needs an RSA public key of at least {MIN_RSA_BITS} bits")
    return key


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """An unencrypted RSA private key (PEM), at least 2048 bits."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise ValueError(f"RS256 needs an RSA private key of at least {MIN_RSA_BITS} bits")
    return key


def encode(claims: dict[str, Any], key: rsa.RSAPrivateKey) -> str:
    """``claims`` signed with ``key`` as a compact RS256 token."""
    header = _b64encode(json.dumps({"alg": "RS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64encode(signature)}"


def decode(
    token: str | bytes, key: rsa.RSAPublicKey, *, now: datetime, leeway_s: float = 60.0
) -> dict[str, Any]:
    """The claims of ``token`` once its RS256 signature by ``key`` (and its ``exp``/``nbf``)
    checks out; :class:`TokenInvalid` otherwise."""
    raw = token if isinstance(token, bytes) else token.encode("utf-8", "replace")
    raw = raw.strip()
    if not raw or len(raw) > MAX_TOKEN_BYTES:
        raise TokenInvalid("the token is empty or too long")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise TokenInvalid("the token is not ASCII") from exc
    parts = text.split(".")
    if len(parts) != 3:
        raise TokenInvalid("a compact JWS has three segments")
    header = _json_object(_b64decode(parts[0]), "header")
    if header.get("alg") != "RS256":
        raise TokenInvalid(f"algorithm {header.get('alg')!r} is not accepted; only RS256 is")
    if "crit" in header:
        raise TokenInvalid("critical header parameters are not supported")
    try:
        key.verify(
            _b64decode(parts[2]),
            f"{parts[0]}.{parts[1]}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature as exc:
        raise TokenInvalid("the signature does not verify with the configured key") from exc
    claims = _json_object(_b64decode(parts[1]), "payload")
    moment = now.timestamp()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, int | float) or moment > exp + leeway_s):
        raise TokenInvalid("the token has expired")
    if nbf is not None and (not isinstance(nbf, int | float) or moment < nbf - leeway_s):
        raise TokenInvalid("the token is not valid yet")
    return claims
