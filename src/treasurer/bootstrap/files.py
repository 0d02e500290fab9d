"""Owner-only secret files in the data directory: the admin key, sessions, the passphrase."""

from __future__ import annotations

import os
from pathlib import Path


def write_secret(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (0600) and write ``text``.

    Never replaces an existing file (``FileExistsError``): overwriting a passphrase would lock
    its owner out of the vault for good, and callers check for an earlier file first anyway.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)  # whatever the umask did
