"""The vault's errors: a branch of the one tree, raised by the key vault adapter only.

They live beside the vault, not in ``treasurer.domain.errors``, because only the vault raises
them and nothing in the domain reasons about them. Every one maps to HTTP 500 through the
``TreasurerError`` row of the problem table: a locked or damaged vault is the operator's
problem, never the API client's, and its message (file names, what to check) is meant for the
operator's log and terminal.

::

    TreasurerError
    └── VaultError                   (vault_error; also vault_closed, signer_family_mismatch,
        │                             signer_not_required, transaction_not_eip1559)
        ├── VaultLocked              (vault_passphrase_wrong; vault_passphrase_missing)
        └── VaultFileInvalid         (vault_file_invalid: tampered, swapped, malformed)
"""

from __future__ import annotations

from treasurer.domain.errors import TreasurerError


class VaultError(TreasurerError):
    """The key vault cannot do what was asked; ``code`` says which case."""

    code = "vault_error"


class VaultLocked(VaultError):
    """The passphrase is wrong (or missing: code ``vault_passphrase_missing``).

    The message names the file that failed to decrypt and where the passphrase comes from, so
    an operator knows what to check.
    """

    code = "vault_passphrase_wrong"


class VaultFileInvalid(VaultError):
    """A vault file is malformed, tampered with, swapped for another key's, or encrypted with
    another passphrase than the rest of the vault. The message names the file."""

    code = "vault_file_invalid"
