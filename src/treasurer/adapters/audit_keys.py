"""The deployment's audit signing key: an Ed25519 private key in a PEM file only its owner reads.

:func:`load_or_create_signing_key` makes the key on first use and loads it afterwards. The
file is created atomically and never replaced (two processes starting at once agree on one
key), and a file that others may read is refused rather than used: whoever reads it can sign
checkpoints in this deployment's name. The public key is written beside it
(``<name>.pub``, PEM) for auditors: ``treasurer audit verify --public-key <name>.pub``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from treasurer.domain.errors import TreasurerError
from treasurer.service.audit_signing import Ed25519Signer

#: A PEM Ed25519 key is about 120 bytes; anything much larger is not ours.
MAX_KEY_FILE_BYTES = 16 * 1024


class AuditKeyInvalid(TreasurerError):
    """The signing key file cannot be used (unreadable, not Ed25519, or readable by others)."""

    code = "audit_key_invalid"


def public_key_path(path: Path) -> Path:
    """Where the public half of the key at ``path`` is written (``audit-signing.pub``)."""
    return path.with_suffix(".pub")


def load_or_create_signing_key(path: Path) -> Ed25519Signer:
    """The signer of the key at ``path``, creating the key (0600, PEM PKCS#8) if absent."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FileExistsError):  # another process made one first: use it
            _write_new(path, pem, 0o600)
    signer = _load(path)
    with contextlib.suppress(FileExistsError, PermissionError):
        _write_new(public_key_path(path), signer.public_key_pem(), 0o644)
    return signer


def _load(path: Path) -> Ed25519Signer:
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AuditKeyInvalid(
                f"audit signing key {path} is accessible to other users "
                f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
            )
        with path.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise AuditKeyInvalid(f"cannot read audit signing key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if len(data) > MAX_KEY_FILE_BYTES or not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyInvalid(
            f"audit signing key {path} is not an unencrypted Ed25519 private key (PEM); "
            "restore it from a backup, or move it away to start a new key (old checkpoints "
            "stay verifiable with the old public key)"
        )
    return Ed25519Signer(key)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file atomically (temp file, fsync, hard link); FileExistsError
    if ``path`` exists. A crash leaves at most a hidden temp file, never half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # whatever the umask did
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
