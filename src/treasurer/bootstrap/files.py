"""Owner-only secret files in the data directory: the admin key, sessions, the passphrase,
the audit checkpoint key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from treasurer.adapters.audit_keys import load_or_create_signing_key
from treasurer.service.audit_ports import CheckpointSigner

#: The deployment's audit checkpoint key (Ed25519, PEM; the public half is written beside it).
AUDIT_KEY_FILE: Final = "audit-signing.pem"


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (0600) and write ``text``.

    Never replaces an existing file (``FileExistsError``): overwriting a passphrase would lock
    its owner out of the vault for good, and callers check for an earlier file first anyway.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # whatever the umask did


def audit_signer(data_dir: Path) -> CheckpointSigner | None:
    """The deployment's checkpoint signer, created on first use in the data directory; None
    when there is no data directory (a node run from a database URL alone still seals the
    chain, it just signs no checkpoints until it has a directory for its key)."""
    if not data_dir.is_dir():
        return None
    return load_or_create_signing_key(data_dir / AUDIT_KEY_FILE)
