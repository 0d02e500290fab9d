"""Ed25519 for audit checkpoints: a signer over a private key, and signature checks.

The domain verifier takes the check as a function (:func:`verify_ed25519`), so the pure core
needs no cryptography library; key files are read and written by
:mod:`treasurer.adapters.audit_keys`. Keys travel as 32 raw bytes in lowercase hex, the form
the export carries, or as PEM (SubjectPublicKeyInfo), the form ``--public-key`` accepts.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from treasurer.domain.audit_chain import key_id_of
from treasurer.domain.errors import InvalidRequest

_RAW = serialization.Encoding.Raw
_RAW_PUBLIC = serialization.PublicFormat.Raw


class Ed25519Signer:
    """A :class:`~treasurer.service.audit_ports.CheckpointSigner` holding the private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key().public_bytes(_RAW, _RAW_PUBLIC).hex()
        self._key_id = key_id_of(self._public)

    @property
    def key_id(self) -> str:
        return self._key_id

    @property
    def public_key(self) -> str:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def public_key_pem(self) -> bytes:
        """The public key as PEM, for auditors (``treasurer audit verify --public-key``)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:  # never the private key
        return f"Ed25519Signer(key_id={self._key_id!r})"


def verify_ed25519(public_key_hex: str, message: bytes, signature_hex: str) -> bool:
    """True when ``signature_hex`` is ``public_key_hex``'s Ed25519 signature of ``message``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex))
        key.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_from_text(text: str) -> str:
    """An Ed25519 public key given as PEM or as 64 hex digits → 64 lowercase hex digits."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise InvalidRequest("public key: not a PEM public key", field="public_key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidRequest("public key: not an Ed25519 key", field="public_key")
        return key.public_bytes(_RAW, _RAW_PUBLIC).hex()
    candidate = stripped.lower()
    if len(candidate) == 64 and all(c in "0123456789abcdef" for c in candidate):
        return candidate
    raise InvalidRequest(
        "public key: give a PEM file (-----BEGIN PUBLIC KEY-----) or 64 hex digits",
        field="public_key",
    )
