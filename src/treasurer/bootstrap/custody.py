"""The key vault of the data directory: its passphrase, opening it, exporting a key.

Where the passphrase comes from, first match wins: ``TREASURER_VAULT_PASSPHRASE``, the file
named by ``TREASURER_VAULT_PASSPHRASE_FILE``, ``<data_dir>/vault.passphrase``. ``treasurer
init`` writes a random one to that file (owner-only, 0600) unless the environment gives one.

Opening the vault decrypts every key once (scrypt, about a second per key at the default cost),
and the process then holds the keys in memory: the slow derivation is paid at start, never per
signature. See :mod:`treasurer.adapters.vault` for what that trade costs and how it is
contained.
"""

from __future__ import annotations

from treasurer.adapters.vault import (
    DEFAULT_SCRYPT_N,
    PASSPHRASE_ENV,
    FileVault,
    Passphrase,
    VaultLocked,
    export_private_key,
    load_passphrase,
    new_passphrase,
)
from treasurer.bootstrap.files import write_secret
from treasurer.settings import Settings, SettingsInvalid


def has_passphrase(settings: Settings) -> bool:
    """Whether a passphrase is configured at all (the environment, or an existing file)."""
    return bool(settings.vault_passphrase) or settings.effective_vault_passphrase_file.exists()


def passphrase(settings: Settings) -> Passphrase:
    """The configured passphrase; ``VaultLocked`` (``vault_passphrase_missing``) if none."""
    env = {PASSPHRASE_ENV: settings.vault_passphrase} if settings.vault_passphrase else {}
    return load_passphrase(env, settings.effective_vault_passphrase_file)


def open_vault(settings: Settings) -> FileVault:
    """Open (or create) the vault of the data directory and decrypt its keys."""
    return FileVault.open(
        settings.vault_dir,
        passphrase(settings),
        scrypt_n=settings.vault_scrypt_n or DEFAULT_SCRYPT_N,
    )


def prepare_vault(settings: Settings) -> tuple[FileVault, list[str]]:
    """For ``init``: a passphrase file if none is configured, then the opened vault.

    Opening it writes the vault's check file, which binds the vault to this passphrase: a
    wrong one is refused from then on, before any key is touched.
    """
    lines: list[str] = []
    path = settings.effective_vault_passphrase_file
    if settings.vault_passphrase:
        lines.append(f"Vault passphrase: from ${PASSPHRASE_ENV}.")
    elif path.exists():
        lines.append(f"Vault passphrase: {path.resolve()} (kept from an earlier init).")
    elif settings.vault_dir.is_dir() and any(settings.vault_dir.iterdir()):
        # A new passphrase could never open this vault; writing one would only hide the loss.
        raise VaultLocked(
            f"the vault {settings.vault_dir.resolve()} exists but no passphrase is configured: "
            f"set {PASSPHRASE_ENV}, or restore the passphrase file {path.resolve()}",
            code="vault_passphrase_missing",
        )
    else:
        try:
            write_secret(path, new_passphrase() + "\n")
        except OSError as exc:
            raise SettingsInvalid(
                f"cannot create the vault passphrase file {path}: {exc.strerror}; set "
                "TREASURER_VAULT_PASSPHRASE_FILE to a path in an existing directory you own",
                field="TREASURER_VAULT_PASSPHRASE_FILE",
            ) from None
        lines.append(
            f"Vault passphrase written to {path.resolve()} (owner-only; back it up: "
            "without it the custodial keys cannot be opened)."
        )
    vault = open_vault(settings)
    lines.append(f"Key vault: {settings.vault_dir.resolve()} (keys encrypted with scrypt).")
    return vault, lines


def export_key(settings: Settings, address: str) -> str:
    """The plaintext private key of ``address`` (``treasurer vault export``), read with the
    configured passphrase. Decrypts that one file only; a wrong passphrase raises
    ``VaultLocked`` naming where the passphrase came from."""
    return export_private_key(settings.vault_dir, address, passphrase(settings))
