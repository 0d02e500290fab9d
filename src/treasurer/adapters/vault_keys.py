"""Unlocking key files: decrypt, check the key is the file's, build signers, in parallel.

Also the vault's error messages for a wrong passphrase and for damaged or swapped files, so
they read the same wherever they are raised.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeAlias

from eth_account import Account
from solders.keypair import Keypair

from treasurer.adapters import vault_format as fmt
from treasurer.adapters.vault_errors import VaultError, VaultFileInvalid, VaultLocked
from treasurer.adapters.vault_files import read_document
from treasurer.adapters.vault_passphrase import PASSPHRASE_ENV, Passphrase
from treasurer.adapters.vault_signers import EvmSigner, SolanaSigner
from treasurer.domain.errors import NotFound
from treasurer.service.chain_ports import ChainFamily

AnySigner: TypeAlias = EvmSigner | SolanaSigner
KeyFile: TypeAlias = tuple[ChainFamily, str, Path]


def unlock_all(
    files: list[KeyFile], passphrase: Passphrase, workers: int, check_path: Path | None
) -> dict[str, AnySigner]:
    """Every key of ``files`` as a signer, ``workers`` scrypt derivations at a time.

    Fails closed: one damaged or swapped file fails the whole unlock. ``check_path`` is the
    verified passphrase check, or None when the vault has none yet; then a passphrase that
    opens no key at all is reported as wrong rather than the files as damaged.
    """
    signers: dict[str, AnySigner] = {}
    failed: list[Path] = []
    with ThreadPoolExecutor(max(1, workers), "treasurer-vault-unlock") as pool:
        jobs = [(p, pool.submit(unlock_key, f, a, p, passphrase.value)) for f, a, p in files]
        for path, job in jobs:
            try:
                signer = job.result()
            except fmt.Undecryptable:
                failed.append(path)
            except VaultError:
                forget_all(signers.values())
                raise
            else:
                signers[signer.address] = signer
    if failed:
        forget_all(signers.values())
        if check_path is None and len(failed) == len(files):
            raise wrong_passphrase(failed[0], passphrase)
        raise undecryptable(failed, check_path)
    return signers


def normalize(address: str) -> tuple[ChainFamily, str]:
    """Family and canonical address; ``NotFound`` for anything that is not an address."""
    normalized = fmt.normalize_address(address)
    if normalized is None:  # also keeps anything but hex/base58 out of file names
        raise NotFound(f"the vault holds no key for {address[:64]!r}: not an EVM or Solana address")
    return normalized


def key_files(directory: Path) -> list[KeyFile]:
    """The key files of ``directory`` by name, sorted; other files (check, temp) are skipped."""
    found: list[KeyFile] = []
    for path in sorted(directory.iterdir()):
        parsed = fmt.parse_key_file_name(path.name)
        if parsed is not None and path.is_file():
            found.append((parsed[0], parsed[1], path))
    return found


def decrypt_key(family: ChainFamily, address: str, path: Path, passphrase: str) -> bytes:
    """The key in ``path``, after checking it is the key of ``address`` (not a swapped file)."""
    doc = read_document(path)
    claimed: str | None
    if family is ChainFamily.EVM:
        key = fmt.decode_evm(doc, passphrase, path)
        actual = str(Account.from_key(key).address)
        field = doc.get("address")
        claimed = None if field is None else _claimed_evm(field)
    else:
        claimed, key = fmt.decode_solana(doc, passphrase, path)
        actual = str(Keypair.from_seed(key).pubkey())
    if actual != address or claimed not in (None, address):
        raise VaultFileInvalid(
            f"vault file {path} holds the key of {actual}, not {address}: it was renamed, "
            "copied over or edited. Restore it from a backup; do not delete it (it may hold funds)."
        )
    return key


def _claimed_evm(field: object) -> str:
    normalized = (
        fmt.normalize_address("0x" + field.removeprefix("0x")) if isinstance(field, str) else None
    )
    return normalized[1] if normalized is not None else repr(field)


def unlock_key(family: ChainFamily, address: str, path: Path, passphrase: str) -> AnySigner:
    """The signer of the key in ``path`` (one scrypt derivation)."""
    key = decrypt_key(family, address, path, passphrase)
    if family is ChainFamily.EVM:
        return EvmSigner(Account.from_key(key))
    return SolanaSigner(Keypair.from_seed(key))


def verify_check(path: Path, passphrase: Passphrase) -> None:
    """Return if ``passphrase`` opens the check file at ``path``; ``VaultLocked`` if not."""
    try:
        fmt.verify_check(read_document(path), passphrase.value, path)
    except fmt.Undecryptable:
        raise wrong_passphrase(path, passphrase) from None


def wrong_passphrase(path: Path, passphrase: Passphrase) -> VaultLocked:
    return VaultLocked(
        f"wrong vault passphrase: {passphrase.source} does not decrypt {path}. Check that "
        f"{PASSPHRASE_ENV} (or the passphrase file) holds the passphrase this vault was "
        "created with; a new passphrase cannot open existing keys."
    )


def undecryptable(paths: list[Path], check_path: Path | None) -> VaultFileInvalid:
    names = ", ".join(str(p) for p in paths)
    opens = check_path if check_path is not None else "the other key files"
    return VaultFileInvalid(
        f"vault key file(s) {names} do not decrypt with the passphrase that opens {opens}: "
        "they were modified, corrupted, or written with another passphrase. Restore them from "
        "a backup; do not delete them (they may hold funds)."
    )


def forget_all(signers: Iterable[AnySigner]) -> None:
    """Drop the keys of ``signers`` (best effort; see the vault's docstring)."""
    for signer in signers:
        signer.forget()
