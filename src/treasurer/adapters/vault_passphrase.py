"""Where the vault passphrase comes from: the environment, else an owner-only file.

``TREASURER_VAULT_PASSPHRASE`` wins when set (containers, secret managers); otherwise the
passphrase file that ``treasurer init`` writes (:func:`new_passphrase`: 32 random bytes, hex,
mode 0600). :class:`Passphrase` carries the value with a description of its source, so error
messages can say what to check without ever printing the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from treasurer.adapters.vault_errors import VaultLocked

PASSPHRASE_ENV = "TREASURER_VAULT_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
#: The passphrase file's suggested name inside the data directory.
PASSPHRASE_FILE = "vault.passphrase"  # noqa: S105 - a file name
MAX_PASSPHRASE_FILE_BYTES = 4096


@dataclass(frozen=True, slots=True, repr=False)
class Passphrase:
    """The vault passphrase and where it came from (errors name the source, never the value)."""

    value: str
    source: str = "the passphrase given"

    def __repr__(self) -> str:
        return f"Passphrase(source={self.source!r})"


def new_passphrase() -> str:
    """A fresh passphrase for ``init``: 32 bytes from ``os.urandom``, as 64 hex digits."""
    return os.urandom(32).hex()


def load_passphrase(env: Mapping[str, str], path: Path | None) -> Passphrase:
    """``TREASURER_VAULT_PASSPHRASE`` if set, else the passphrase file (at most 4 KiB, UTF-8,
    trailing newline ignored); ``VaultLocked`` (code ``vault_passphrase_missing``) if neither."""
    value = env.get(PASSPHRASE_ENV, "")
    if value:
        return Passphrase(value, f"${PASSPHRASE_ENV}")
    if path is not None and path.is_file():
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_PASSPHRASE_FILE_BYTES + 1)
        except OSError as exc:
            raise VaultLocked(
                f"cannot read passphrase file {path}: {exc.strerror}; the server's user must "
                "own it (mode 0600)",
                code="vault_passphrase_missing",
            ) from None
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            text = None
        if text is None or len(raw) > MAX_PASSPHRASE_FILE_BYTES:
            raise VaultLocked(
                f"passphrase file {path} is not one line of UTF-8 text under 4 KiB; "
                "is it the right file?",
                code="vault_passphrase_missing",
            )
        if text:
            return Passphrase(text, f"passphrase file {path}")
    where = f" or create {path} (`treasurer init` does)" if path is not None else ""
    raise VaultLocked(
        f"no vault passphrase: set {PASSPHRASE_ENV}{where}", code="vault_passphrase_missing"
    )


def as_passphrase(passphrase: Passphrase | str) -> Passphrase:
    """Wrap a bare string; an empty passphrase is refused (``vault_passphrase_missing``)."""
    secret = passphrase if isinstance(passphrase, Passphrase) else Passphrase(passphrase)
    if not secret.value:
        raise VaultLocked(
            f"the vault passphrase is empty; set {PASSPHRASE_ENV} or the passphrase file",
            code="vault_passphrase_missing",
        )
    return secret
