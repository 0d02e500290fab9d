"""The deployment's audit signing key file: made once (0600), reused, refused when exposed."""

from __future__ import annotations

from pathlib import Path

import pytest

from treasurer.adapters.audit_keys import (
    AuditKeyInvalid,
    load_or_create_signing_key,
    public_key_path,
)
from treasurer.domain.audit_chain import key_id_of
from treasurer.service.audit_signing import public_key_from_text, verify_ed25519


def test_the_key_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    """First call makes the key and its .pub; later calls load the same key."""
    path = tmp_path / "data" / "audit-signing.pem"
    signer = load_or_create_signing_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" in path.read_bytes()
    again = load_or_create_signing_key(path)
    assert (again.key_id, again.public_key) == (signer.key_id, signer.public_key)
    assert key_id_of(signer.public_key) == signer.key_id
    public = public_key_path(path)
    assert public.name == "audit-signing.pub"
    assert public_key_from_text(public.read_text()) == signer.public_key
    signature = signer.sign(b"message").hex()
    assert verify_ed25519(signer.public_key, b"message", signature)
    assert not verify_ed25519(signer.public_key, b"other", signature)
    assert "PRIVATE" not in repr(signer)


def test_a_key_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.pem"
    load_or_create_signing_key(path)
    path.chmod(0o644)
    with pytest.raises(AuditKeyInvalid, match="chmod 600"):
        load_or_create_signing_key(path)


def test_a_file_that_is_not_an_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit-signing.pem"
    path.write_text("not a key")
    path.chmod(0o600)
    with pytest.raises(AuditKeyInvalid, match="not an unencrypted Ed25519 private key"):
        load_or_create_signing_key(path)
