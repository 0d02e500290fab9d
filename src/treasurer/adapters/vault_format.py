"""The vault on disk: file names, the two key-file formats, the passphrase check, safe writes.

One directory (``<data_dir>/vault``, mode 0700) holds one file per key, mode 0600:

``evm-<checksum address>.json``
    A standard Ethereum keystore v3 (``eth_account.Account.encrypt(key, passphrase,
    kdf="scrypt")``): scrypt → AES-128-CTR with a keccak MAC. Any Ethereum tool (geth,
    ``Account.decrypt``) opens it with the passphrase. The keystore's ``address`` field is not
    covered by its MAC, so after decrypting, the address derived from the key must match both
    that field and the file name: a renamed or swapped file fails.

``solana-<base58 public key>.json``
    Treasurer's Solana keystore, version 1, built like keystore v3 but with an AEAD cipher::

        {
          "format": "treasurer-solana-keystore",
          "version": 1,
          "address": "<base58 public key>",
          "crypto": {
            "cipher": "aes-256-gcm",
            "cipherparams": {"nonce": "<12 random bytes, hex>"},
            "ciphertext": "<AES-256-GCM(32-byte Ed25519 seed) || 16-byte tag, hex>",
            "kdf": "scrypt",
            "kdfparams": {"dklen": 32, "n": 262144, "r": 8, "p": 1,
                          "salt": "<16 random bytes, hex>"}
          }
        }

    The 32-byte AES key is ``scrypt(utf8(passphrase), salt, n, r, p, dklen=32)``; the
    associated data is the ASCII ``address``, so editing the address (or the file name, which
    must match it and the key's own public key) makes decryption fail. The plaintext is the
    Ed25519 seed (``Keypair.secret()``); the public key is derived from it on load.

``vault-check.json``
    The passphrase check: the same ``crypto`` object sealing a constant with associated data
    ``treasurer-vault-check`` (``"format": "treasurer-vault-check"``). The first open writes
    it; later opens verify it before touching any key. It binds the vault to one passphrase
    even while it holds no key, and tells a wrong passphrase (the check fails) from a damaged
    key file (the check passes, the key does not).

Files are written atomically and owner-only (:mod:`treasurer.adapters.vault_files`).
Readers bound what a file may ask for: at most 64 KiB, scrypt memory ``128·r·n`` at most
1 GiB, ``p`` at most 16, so a planted file cannot exhaust the host.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_account import Account
from eth_utils.address import to_checksum_address
from solders.pubkey import Pubkey

from treasurer.adapters.vault_files import invalid_file
from treasurer.service.chain_ports import ChainFamily

#: The keystore v3 default of eth-account: about 1 s and 256 MiB per derivation.
DEFAULT_SCRYPT_N = 2**18
SCRYPT_R = 8
SCRYPT_P = 1
MAX_SCRYPT_MEMORY_BYTES = 2**30
MAX_SCRYPT_P = 16
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32

SOLANA_FORMAT = "treasurer-solana-keystore"
CHECK_FORMAT = "treasurer-vault-check"
CHECK_FILE = "vault-check.json"
CHECK_PLAINTEXT = b"treasurer vault passphrase check v1"
CHECK_AAD = b"treasurer-vault-check"

_KEY_FILE = re.compile(r"^(evm|solana)-([0-9A-Za-z]{32,44})\.json$")
_EVM_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BASE58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{32,44}$")


class Undecryptable(Exception):
    """A well-formed file that this passphrase does not open (wrong passphrase or tampered)."""


def normalize_address(address: str) -> tuple[ChainFamily, str] | None:
    """The family and canonical spelling of an address, or None when it is neither.

    EVM addresses are case-insensitive (canonical: EIP-55 checksum); Solana addresses are
    canonical base58 of 32 bytes. Only these characters ever reach a file name.
    """
    if _EVM_ADDRESS.fullmatch(address):
        return ChainFamily.EVM, to_checksum_address(address)
    if _BASE58.fullmatch(address):
        try:
            canonical = str(Pubkey.from_string(address))
        except ValueError:
            return None
        return (ChainFamily.SOLANA, canonical) if canonical == address else None
    return None


def key_file_name(family: ChainFamily, address: str) -> str:
    return f"{family.value}-{address}.json"


def parse_key_file_name(name: str) -> tuple[ChainFamily, str] | None:
    """``(family, address)`` of a key file name; None for any other file (temp, check).

    Only canonical names count (EIP-55 checksum, canonical base58): the vault writes no
    other, and one spelling per key keeps lookups and listings consistent.
    """
    match = _KEY_FILE.fullmatch(name)
    if match is None:
        return None
    normalized = normalize_address(match.group(2))
    if normalized != (ChainFamily(match.group(1)), match.group(2)):
        return None
    return normalized


# --- the sealed box shared by Solana key files and the check file -----------------------------


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    kdf = Scrypt(salt=salt, length=KEY_BYTES, n=n, r=r, p=p)
    return kdf.derive(passphrase.encode("utf-8"))


def seal(secret: bytes, passphrase: str, aad: bytes, scrypt_n: int) -> dict[str, object]:
    """The ``crypto`` object: scrypt → AES-256-GCM, fresh salt and nonce from ``os.urandom``."""
    salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
    key = _scrypt(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, secret, aad)
    return {
        "cipher": "aes-256-gcm",
        "cipherparams": {"nonce": nonce.hex()},
        "ciphertext": ciphertext.hex(),
        "kdf": "scrypt",
        "kdfparams": {
            "dklen": KEY_BYTES,
            "n": scrypt_n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": salt.hex(),
        },
    }


def unseal(crypto: object, passphrase: str, aad: bytes, path: Path) -> bytes:
    """The sealed secret; :class:`Undecryptable` when the passphrase or the data is wrong."""
    box = _mapping(crypto, "crypto", path)
    if box.get("cipher") != "aes-256-gcm" or box.get("kdf") != "scrypt":
        raise invalid_file(path, "crypto", "expected cipher aes-256-gcm with kdf scrypt")
    n, r, p, salt = scrypt_params(box.get("kdfparams"), path)
    params = _mapping(box.get("cipherparams"), "crypto.cipherparams", path)
    nonce = _hex(params.get("nonce"), "crypto.cipherparams.nonce", path, NONCE_BYTES)
    ciphertext = _hex(box.get("ciphertext"), "crypto.ciphertext", path)
    try:
        return AESGCM(_scrypt(passphrase, salt, n, r, p)).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise Undecryptable from None


def scrypt_params(value: object, path: Path) -> tuple[int, int, int, bytes]:
    """``(n, r, p, salt)`` from ``kdfparams``, bounded so a planted file cannot exhaust memory."""
    params = _mapping(value, "crypto.kdfparams", path)
    n, r, p = params.get("n"), params.get("r"), params.get("p")
    if not all(type(x) is int for x in (n, r, p)) or params.get("dklen") != KEY_BYTES:
        raise invalid_file(path, "crypto.kdfparams", "n, r, p must be integers and dklen 32")
    n, r, p = cast(int, n), cast(int, r), cast(int, p)
    if n < 2 or n & (n - 1) or r < 1 or not 1 <= p <= MAX_SCRYPT_P:
        raise invalid_file(path, "crypto.kdfparams", "n must be a power of two, r and p positive")
    if 128 * r * n > MAX_SCRYPT_MEMORY_BYTES:
        raise invalid_file(path, "crypto.kdfparams", "scrypt cost above the 1 GiB limit")
    salt = _hex(params.get("salt"), "crypto.kdfparams.salt", path)
    if not SALT_BYTES <= len(salt) <= 64:
        raise invalid_file(path, "crypto.kdfparams.salt", "expected 16 to 64 bytes")
    return n, r, p, salt


# --- the three documents -----------------------------------------------------------------------


def encode_solana(seed: bytes, address: str, passphrase: str, scrypt_n: int) -> dict[str, object]:
    crypto = seal(seed, passphrase, address.encode("ascii"), scrypt_n)
    return {"format": SOLANA_FORMAT, "version": 1, "address": address, "crypto": crypto}


def decode_solana(doc: Mapping[str, object], passphrase: str, path: Path) -> tuple[str, bytes]:
    """``(address, seed)`` of a Solana key file; the caller checks the seed's public key."""
    if doc.get("format") != SOLANA_FORMAT or doc.get("version") != 1:
        raise invalid_file(path, "format", f"expected {SOLANA_FORMAT} version 1")
    address = doc.get("address")
    if not isinstance(address, str) or not _BASE58.fullmatch(address):
        raise invalid_file(path, "address", "expected a base58 public key")
    seed = unseal(doc.get("crypto"), passphrase, address.encode("ascii"), path)
    if len(seed) != KEY_BYTES:
        raise invalid_file(path, "crypto.ciphertext", "the secret is not a 32-byte seed")
    return address, seed


def encode_evm(private_key: bytes, passphrase: str, scrypt_n: int) -> dict[str, object]:
    """A standard keystore v3 document (scrypt, AES-128-CTR, keccak MAC)."""
    return dict(Account.encrypt(private_key, passphrase, kdf="scrypt", iterations=scrypt_n))


def decode_evm(doc: Mapping[str, object], passphrase: str, path: Path) -> bytes:
    """The private key of a keystore v3 file; the caller checks the address it derives."""
    if doc.get("version") != 3:
        raise invalid_file(path, "version", "expected an Ethereum keystore version 3")
    crypto = _mapping(doc.get("crypto"), "crypto", path)
    if crypto.get("kdf") != "scrypt" or crypto.get("cipher") != "aes-128-ctr":
        raise invalid_file(path, "crypto", "expected kdf scrypt with cipher aes-128-ctr")
    scrypt_params(crypto.get("kdfparams"), path)
    params = _mapping(crypto.get("cipherparams"), "crypto.cipherparams", path)
    _hex(params.get("iv"), "crypto.cipherparams.iv", path, 16)
    _hex(crypto.get("ciphertext"), "crypto.ciphertext", path, KEY_BYTES)
    _hex(crypto.get("mac"), "crypto.mac", path, 32)
    try:  # every field is checked above, so a failure here is the MAC: wrong passphrase
        return bytes(Account.decrypt(dict(doc), passphrase))
    except ValueError:
        raise Undecryptable from None


def encode_check(passphrase: str, scrypt_n: int) -> dict[str, object]:
    crypto = seal(CHECK_PLAINTEXT, passphrase, CHECK_AAD, scrypt_n)
    return {"format": CHECK_FORMAT, "version": 1, "crypto": crypto}


def verify_check(doc: Mapping[str, object], passphrase: str, path: Path) -> None:
    """Return if ``passphrase`` opens the check file; :class:`Undecryptable` if it does not."""
    if doc.get("format") != CHECK_FORMAT or doc.get("version") != 1:
        raise invalid_file(path, "format", f"expected {CHECK_FORMAT} version 1")
    if unseal(doc.get("crypto"), passphrase, CHECK_AAD, path) != CHECK_PLAINTEXT:
        raise invalid_file(path, "crypto", "the check value is not the expected constant")


# --- validation helpers ------------------------------------------------------------------------


def _mapping(value: object, where: str, path: Path) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise invalid_file(path, where, "expected an object")
    return cast(Mapping[str, object], value)


def _hex(value: object, where: str, path: Path, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise invalid_file(path, where, "expected a hex string")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise invalid_file(path, where, "expected a hex string") from None
    if length is not None and len(raw) != length:
        raise invalid_file(path, where, f"expected {length} bytes")
    return raw
