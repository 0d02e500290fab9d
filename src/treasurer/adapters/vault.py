"""The custodial key vault: keys encrypted at rest, unlocked once per process.

:class:`FileVault` implements the ``Vault`` port over a directory (``<data_dir>/vault``, 0700)
holding one encrypted file per key (0600; formats in :mod:`treasurer.adapters.vault_format`):
EVM keys (secp256k1, ``eth_account.Account.create()``, ``os.urandom`` entropy) as standard
Ethereum keystore v3 files, Solana keys (Ed25519, ``solders`` ``Keypair()``) as scrypt +
AES-256-GCM files. The passphrase comes from ``TREASURER_VAULT_PASSPHRASE`` or a passphrase
file (:func:`load_passphrase`; ``treasurer init`` writes one with 32 random bytes, hex, 0600).

Unlock once, then keep keys in memory. scrypt at the keystore default (n = 2^18, r = 8) costs
about a second and 256 MiB per file, on purpose: that is what makes a stolen file expensive
to attack. Paying it per signature would put a second on every payment, so
:meth:`FileVault.open` verifies the passphrase (``vault-check.json``) and decrypts every key
up front (in a small thread pool: scrypt releases the GIL), and signing then costs
milliseconds (``benchmarks/vault.py`` measures both). A key written later by another process
(``treasurer`` CLI beside a running server) is decrypted on its first use, once, then cached.

The price is that decrypted keys live in the server's memory for its lifetime; a memory
disclosure or a debugger attached to the process can read them. Mitigations:

- Process isolation: only the server process (its own OS user, no core dumps, no ptrace) opens
  the vault; agents hold session tokens and never run in it.
- No API route, log line or error message ever returns a key: signers reveal only signatures,
  their ``repr`` shows the address, and pickling them is refused. The one way out is
  :meth:`FileVault.export_private_key`, an operator command that re-derives from the file with
  a passphrase typed again (the cached one is never used for it).
- :meth:`FileVault.close` drops every key and the passphrase, best effort: the Solana key is
  a Rust object (ed25519-dalek zeroizes its signing key on drop); Python's immutable ``bytes``
  inside eth-account and the passphrase ``str`` cannot be wiped, only released.

Errors (:mod:`treasurer.adapters.vault_errors`): ``VaultLocked`` for a wrong or missing
passphrase, ``VaultFileInvalid`` for a tampered, swapped or malformed file; both name the file.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn

from eth_account import Account
from solders.keypair import Keypair

from treasurer.adapters import vault_format as fmt
from treasurer.adapters import vault_keys as keys
from treasurer.adapters.vault_errors import VaultError, VaultFileInvalid, VaultLocked
from treasurer.adapters.vault_files import ensure_directory, write_document
from treasurer.adapters.vault_keys import AnySigner
from treasurer.adapters.vault_passphrase import (
    PASSPHRASE_ENV,
    PASSPHRASE_FILE,
    Passphrase,
    as_passphrase,
    load_passphrase,
    new_passphrase,
)
from treasurer.adapters.vault_signers import EvmSigner, SolanaSigner
from treasurer.domain.errors import InvalidRequest, NotFound
from treasurer.service.chain_ports import ChainFamily, Signer, Vault

__all__ = [
    "DEFAULT_SCRYPT_N",
    "PASSPHRASE_ENV",
    "PASSPHRASE_FILE",
    "VAULT_DIR",
    "AnySigner",
    "EvmSigner",
    "FileVault",
    "Passphrase",
    "SolanaSigner",
    "VaultError",
    "VaultFileInvalid",
    "VaultLocked",
    "export_private_key",
    "load_passphrase",
    "new_passphrase",
]

DEFAULT_SCRYPT_N = fmt.DEFAULT_SCRYPT_N
#: The vault directory's suggested name inside the data directory.
VAULT_DIR = "vault"
#: Parallel unlocks at open; each derivation at the default cost holds 256 MiB.
DEFAULT_UNLOCK_WORKERS = 2


class FileVault:
    """The ``Vault`` port over encrypted files. Build it with :meth:`open`; thread-safe."""

    def __init__(
        self,
        directory: Path,
        passphrase: Passphrase,
        signers: dict[str, AnySigner],
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> None:
        """Wrap already unlocked signers; :meth:`open` is the way to get here."""
        self._directory = directory
        self._passphrase: Passphrase | None = passphrase
        self._signers = signers
        self._scrypt_n = scrypt_n
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        directory: Path,
        passphrase: Passphrase | str,
        *,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        unlock_workers: int = DEFAULT_UNLOCK_WORKERS,
    ) -> FileVault:
        """Create or open the vault in ``directory`` and decrypt every key in it.

        ``scrypt_n`` is the cost of files written from now on (tests lower it); files keep the
        cost they were written with. The first open writes ``vault-check.json``, binding the
        vault to this passphrase. Fails closed: one undecryptable or swapped file stops the open.
        """
        secret = as_passphrase(passphrase)
        if (
            scrypt_n < 2
            or scrypt_n & (scrypt_n - 1)
            or 1024 * scrypt_n > fmt.MAX_SCRYPT_MEMORY_BYTES
        ):
            raise ValueError("scrypt_n must be a power of two from 2 to 2**20")
        ensure_directory(directory)
        check_path = directory / fmt.CHECK_FILE
        checked = check_path.exists()
        if checked:
            keys.verify_check(check_path, secret)
        found = keys.key_files(directory)
        signers = keys.unlock_all(found, secret, unlock_workers, check_path if checked else None)
        if not checked:
            try:
                write_document(check_path, fmt.encode_check(secret.value, scrypt_n))
            except FileExistsError:  # another process opened it first: it must agree
                keys.verify_check(check_path, secret)
        return cls(directory, secret, signers, scrypt_n=scrypt_n)

    @property
    def directory(self) -> Path:
        return self._directory

    def create_key(self, family: ChainFamily) -> str:
        """Generate a key of ``family``, store it encrypted, return its address."""
        passphrase = self._open_passphrase()
        try:
            family = ChainFamily(family)
        except ValueError:
            raise InvalidRequest(f"unknown chain family {family!r}", field="family") from None
        signer: AnySigner
        if family is ChainFamily.EVM:
            account = Account.create()
            signer = EvmSigner(account)
            doc = fmt.encode_evm(account.key, passphrase.value, self._scrypt_n)
        else:
            keypair = Keypair()
            signer = SolanaSigner(keypair)
            doc = fmt.encode_solana(
                keypair.secret(), signer.address, passphrase.value, self._scrypt_n
            )
        path = self._directory / fmt.key_file_name(family, signer.address)
        try:
            write_document(path, doc)
        except FileExistsError:  # a fresh random key colliding means something is very wrong
            raise VaultFileInvalid(
                f"vault file {path} already exists; refusing to replace it"
            ) from None
        with self._lock:
            self._require_open()
            self._signers[signer.address] = signer
        return signer.address

    def addresses(self) -> list[tuple[ChainFamily, str]]:
        """Every key in the vault directory (also those another process added), sorted."""
        self._open_passphrase()
        return [(family, address) for family, address, _path in keys.key_files(self._directory)]

    def signer(self, address: str) -> AnySigner:
        """The signer of ``address`` (any case for EVM); ``NotFound`` if the vault lacks it."""
        family, canonical = keys.normalize(address)
        with self._lock:
            self._require_open()
            found = self._signers.get(canonical)
        if found is not None:
            return found
        with self._load_lock:  # written by another process since open: unlock it once
            passphrase = self._open_passphrase()
            found = self._signers.get(canonical)
            if found is not None:
                return found
            path = _existing_file(self._directory, family, canonical)
            try:
                signer = keys.unlock_key(family, canonical, path, passphrase.value)
            except fmt.Undecryptable:
                raise keys.undecryptable([path], self._directory / fmt.CHECK_FILE) from None
            with self._lock:
                self._require_open()
                self._signers[canonical] = signer
            return signer

    def export_private_key(self, address: str, passphrase: Passphrase | str) -> str:
        """The plaintext private key of ``address``: see :func:`export_private_key`."""
        return export_private_key(self._directory, address, passphrase)

    def close(self) -> None:
        """Drop every unlocked key and the passphrase; later calls fail with ``vault_closed``."""
        with self._lock:
            keys.forget_all(self._signers.values())
            self._signers.clear()
            self._passphrase = None

    def __enter__(self) -> FileVault:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FileVault(directory={str(self._directory)!r}, keys={len(self._signers)})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a vault holds private keys and cannot be pickled or copied")

    def _require_open(self) -> None:
        if self._passphrase is None:
            raise VaultError(f"the vault {self._directory} is closed", code="vault_closed")

    def _open_passphrase(self) -> Passphrase:
        with self._lock:
            self._require_open()
            assert self._passphrase is not None
            return self._passphrase


def export_private_key(directory: Path, address: str, passphrase: Passphrase | str) -> str:
    """The plaintext private key of ``address`` in the vault at ``directory``, for an operator
    taking custody back (``treasurer vault export``); needs no open vault.

    Re-derives from the file with ``passphrase``, which the operator types again: no code
    path exports with the passphrase the vault holds, and a wrong one fails. EVM: ``0x``
    and 64 hex digits (MetaMask, ``Account.from_key``); Solana: base58 of the 64-byte
    keypair (Phantom, ``Keypair.from_base58_string``).
    """
    family, canonical = keys.normalize(address)
    path = _existing_file(directory, family, canonical)
    secret = as_passphrase(passphrase)
    try:
        key = keys.decrypt_key(family, canonical, path, secret.value)
    except fmt.Undecryptable:
        check_path = directory / fmt.CHECK_FILE
        if not check_path.exists():
            raise keys.wrong_passphrase(path, secret) from None
        keys.verify_check(check_path, secret)  # raises VaultLocked for a wrong passphrase
        raise keys.undecryptable([path], check_path) from None
    if family is ChainFamily.EVM:
        return "0x" + key.hex()
    return str(Keypair.from_seed(key))


def _existing_file(directory: Path, family: ChainFamily, address: str) -> Path:
    path = directory / fmt.key_file_name(family, address)
    if not path.is_file():
        raise NotFound(f"the vault {directory} holds no key for {address}")
    return path


if TYPE_CHECKING:

    def _implements_ports(
        vault: FileVault, evm: EvmSigner, solana: SolanaSigner
    ) -> tuple[Vault, Signer, Signer]:
        """Never called: mypy checks here that the classes implement the ports."""
        return vault, evm, solana
