"""The custodial key vault: round trips, signatures, wrong passphrases, tampering, files on disk.

Most tests write keys at a tiny scrypt cost (``scrypt_n=LOW_N``) so they run in milliseconds;
``test_default_cost_round_trip`` proves the real default (the keystore's n = 2^18) end to end.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction

from treasurer.adapters import vault_format as fmt
from treasurer.adapters.vault import (
    DEFAULT_SCRYPT_N,
    PASSPHRASE_ENV,
    EvmSigner,
    FileVault,
    Passphrase,
    SolanaSigner,
    VaultError,
    VaultFileInvalid,
    VaultLocked,
    export_private_key,
    load_passphrase,
    new_passphrase,
)
from treasurer.domain.errors import NotFound
from treasurer.service.chain_ports import ChainFamily

LOW_N = 2**4
PASS = "correct horse battery staple"
EVM, SOL = ChainFamily.EVM, ChainFamily.SOLANA
TX: dict[str, object] = {
    "type": 2,
    "chainId": 1337,
    "nonce": 0,
    "to": "0x" + "11" * 20,
    "value": 10**15,
    "gas": 21_000,
    "maxFeePerGas": 2 * 10**9,
    "maxPriorityFeePerGas": 10**9,
    "data": b"",
}


@pytest.fixture
def vault_dir(tmp_path: Path) -> Path:
    """Where the vault lives (created by the first open)."""
    return tmp_path / "data" / "vault"


def open_vault(directory: Path, passphrase: str = PASS) -> FileVault:
    return FileVault.open(directory, passphrase, scrypt_n=LOW_N)


@pytest.fixture
def vault(vault_dir: Path) -> Iterator[FileVault]:
    """An open vault at the test cost, closed afterwards."""
    with open_vault(vault_dir) as opened:
        yield opened


def key_path(directory: Path, family: ChainFamily, address: str) -> Path:
    return directory / f"{family.value}-{address}.json"


def evm_signer(vault: FileVault, address: str) -> EvmSigner:
    signer = vault.signer(address)
    assert isinstance(signer, EvmSigner)
    return signer


def solana_signer(vault: FileVault, address: str) -> SolanaSigner:
    signer = vault.signer(address)
    assert isinstance(signer, SolanaSigner)
    return signer


def transfer_ix(payer: Pubkey, sender: Pubkey | None = None) -> Instruction:
    return transfer(
        TransferParams(from_pubkey=sender or payer, to_pubkey=Pubkey.new_unique(), lamports=5)
    )


# --- round trips and signatures ----------------------------------------------------------------


def test_evm_round_trip_signs_recoverable_transactions(vault_dir: Path) -> None:
    """An EVM key survives close and reopen with the same address, and its EIP-1559
    signatures recover to that address."""
    with open_vault(vault_dir) as vault:
        address = vault.create_key(EVM)
        first = evm_signer(vault, address).sign_evm_transaction(TX)
    with open_vault(vault_dir) as reopened:
        assert reopened.addresses() == [(EVM, address)]
        raw = evm_signer(reopened, address.lower()).sign_evm_transaction(TX)
    assert raw[0] == 2  # EIP-2718 type 2 envelope
    assert Account.recover_transaction(raw) == address
    assert Account.recover_transaction(first) == address


def test_evm_personal_message_is_eip191(vault: FileVault) -> None:
    """``sign_personal_message`` produces a 65-byte EIP-191 signature of the key's address."""
    address = vault.create_key(EVM)
    signature = evm_signer(vault, address).sign_personal_message(b"treasurer")
    assert len(signature) == 65
    recovered = Account.recover_message(encode_defunct(primitive=b"treasurer"), signature=signature)
    assert recovered == address


def test_solana_round_trip_signs_verifiable_messages(vault_dir: Path) -> None:
    """A Solana key survives close and reopen; its Ed25519 signatures verify."""
    with open_vault(vault_dir) as vault:
        address = vault.create_key(SOL)
    with open_vault(vault_dir) as reopened:
        assert reopened.addresses() == [(SOL, address)]
        signature = reopened.signer(address).sign_message(b"hello")
    assert Signature.from_bytes(signature).verify(Pubkey.from_string(address), b"hello")
    assert not Signature.from_bytes(signature).verify(Pubkey.from_string(address), b"other")


def test_solana_transactions_legacy_v0_and_by_message(vault: FileVault) -> None:
    """Legacy and v0 transactions come back signed; an adapter holding only the ``Signer``
    port gets the same result from ``sign_message`` plus ``Transaction.populate``."""
    signer = solana_signer(vault, vault.create_key(SOL))
    payer, blockhash = Pubkey.from_string(signer.address), Hash.new_unique()
    ix = transfer_ix(payer)
    legacy = signer.sign_solana_transaction(Message([ix], payer), blockhash)
    legacy.verify()
    assert legacy.message.recent_blockhash == blockhash
    v0 = MessageV0.try_compile(payer, [ix], [], blockhash)
    assert signer.sign_versioned_transaction(v0).verify_with_results() == [True]
    message = Message.new_with_blockhash([ix], payer, blockhash)
    by_port = Transaction.populate(
        message, [Signature.from_bytes(signer.sign_message(bytes(message)))]
    )
    by_port.verify()
    assert by_port == legacy


def test_solana_refuses_messages_it_is_not_the_only_signer_of(vault: FileVault) -> None:
    """A message paid by another key, or needing a second signature, is refused by name."""
    signer = solana_signer(vault, vault.create_key(SOL))
    me, other = Pubkey.from_string(signer.address), Pubkey.new_unique()
    for message in (Message([transfer_ix(other)], other), Message([transfer_ix(me, other)], me)):
        with pytest.raises(VaultError) as caught:
            signer.sign_solana_transaction(message, Hash.new_unique())
        assert caught.value.code == "signer_not_required"


def test_signers_refuse_the_other_family(vault: FileVault) -> None:
    """An EVM signer does not sign raw messages and a Solana signer does not sign EVM
    transactions; an EVM transaction without chainId or with a legacy gasPrice is refused."""
    evm = evm_signer(vault, vault.create_key(EVM))
    sol = solana_signer(vault, vault.create_key(SOL))
    with pytest.raises(VaultError, match="sign_personal_message") as caught:
        evm.sign_message(b"x")
    assert caught.value.code == "signer_family_mismatch"
    with pytest.raises(VaultError):
        sol.sign_evm_transaction(TX)
    no_chain = {k: v for k, v in TX.items() if k != "chainId"}
    for bad in (no_chain, {**TX, "gasPrice": 1}):
        with pytest.raises(VaultError) as caught:
            evm.sign_evm_transaction(bad)
        assert caught.value.code == "transaction_not_eip1559"


def test_default_cost_round_trip(vault_dir: Path) -> None:
    """At the real default cost (n = 2^18) both families round-trip and the EVM file is a
    keystore v3 that ``Account.decrypt`` opens."""
    with FileVault.open(vault_dir, PASS) as vault:
        evm, sol = vault.create_key(EVM), vault.create_key(SOL)
    for path in (key_path(vault_dir, EVM, evm), key_path(vault_dir, SOL, sol)):
        assert json.loads(path.read_text())["crypto"]["kdfparams"]["n"] == DEFAULT_SCRYPT_N
    with FileVault.open(vault_dir, PASS) as reopened:
        raw = evm_signer(reopened, evm).sign_evm_transaction(TX)
        signature = reopened.signer(sol).sign_message(b"m")
    assert Account.recover_transaction(raw) == evm
    assert Signature.from_bytes(signature).verify(Pubkey.from_string(sol), b"m")
    keystore = json.loads(key_path(vault_dir, EVM, evm).read_text())
    assert Account.from_key(Account.decrypt(keystore, PASS)).address == evm


def test_keystore_v3_opens_with_eth_account(vault: FileVault) -> None:
    """The EVM file is a standard keystore v3 (scrypt): ``Account.decrypt`` returns the key."""
    address = vault.create_key(EVM)
    keystore = json.loads(key_path(vault.directory, EVM, address).read_text())
    assert keystore["version"] == 3
    assert keystore["crypto"]["kdf"] == "scrypt"
    key = Account.decrypt(keystore, PASS)
    assert Account.from_key(key).address == address


# --- passphrases -------------------------------------------------------------------------------


def test_wrong_passphrase_names_the_file_and_what_to_check(vault_dir: Path) -> None:
    """A wrong passphrase fails at open with ``vault_passphrase_wrong``, naming the check
    file, the passphrase's source and the variable to check."""
    open_vault(vault_dir).close()
    with pytest.raises(VaultLocked) as caught:
        FileVault.open(vault_dir, Passphrase("nope", "passphrase file /x/p"), scrypt_n=LOW_N)
    assert caught.value.code == "vault_passphrase_wrong"
    assert str(vault_dir / "vault-check.json") in caught.value.message
    assert "passphrase file /x/p" in caught.value.message
    assert PASSPHRASE_ENV in caught.value.message


def test_wrong_passphrase_without_check_file_is_still_wrong(vault_dir: Path) -> None:
    """With the check file gone, a passphrase that opens no key is reported as wrong (naming a
    key file), not as damage; the check file is not rewritten with the wrong passphrase."""
    with open_vault(vault_dir) as vault:
        address = vault.create_key(SOL)
    (vault_dir / "vault-check.json").unlink()
    with pytest.raises(VaultLocked, match=str(key_path(vault_dir, SOL, address))):
        open_vault(vault_dir, "nope")
    assert not (vault_dir / "vault-check.json").exists()
    open_vault(vault_dir).close()
    assert (vault_dir / "vault-check.json").exists()


def test_empty_passphrase_is_missing(vault_dir: Path) -> None:
    """An empty passphrase never opens a vault."""
    with pytest.raises(VaultLocked) as caught:
        open_vault(vault_dir, "")
    assert caught.value.code == "vault_passphrase_missing"


def test_load_passphrase_prefers_the_environment(tmp_path: Path) -> None:
    """The variable wins; else the file (trailing newline dropped); else a clear error."""
    path = tmp_path / "vault.passphrase"
    path.write_text("from-file\n")
    assert load_passphrase({PASSPHRASE_ENV: "from-env"}, path).value == "from-env"
    loaded = load_passphrase({PASSPHRASE_ENV: ""}, path)
    assert (loaded.value, loaded.source) == ("from-file", f"passphrase file {path}")
    assert "from-file" not in repr(loaded)
    path.write_text("\n")
    with pytest.raises(VaultLocked, match=PASSPHRASE_ENV) as caught:
        load_passphrase({}, path)
    assert caught.value.code == "vault_passphrase_missing"
    assert len(new_passphrase()) == 64


def test_export_rechecks_the_passphrase(vault: FileVault) -> None:
    """Export derives from the file with the passphrase given now: a wrong one fails even on an
    open vault; the right one returns keys that control the addresses."""
    evm, sol = vault.create_key(EVM), vault.create_key(SOL)
    with pytest.raises(VaultLocked):
        vault.export_private_key(evm, "nope")
    assert Account.from_key(vault.export_private_key(evm, PASS)).address == evm
    keypair = Keypair.from_base58_string(vault.export_private_key(sol, PASS))
    assert str(keypair.pubkey()) == sol


def test_export_needs_no_open_vault(vault_dir: Path) -> None:
    """The CLI exports from the files alone, without unlocking the other keys; a wrong
    passphrase is reported as such even when the check file is gone."""
    with open_vault(vault_dir) as vault:
        address = vault.create_key(EVM)
    assert Account.from_key(export_private_key(vault_dir, address, PASS)).address == address
    (vault_dir / "vault-check.json").unlink()
    with pytest.raises(VaultLocked):
        export_private_key(vault_dir, address, "nope")


# --- tampering and swapping --------------------------------------------------------------------


def _edit(path: Path, change: dict[str, object]) -> None:
    doc = json.loads(path.read_text())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = doc
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(json.dumps(doc))


def _flip_ciphertext(path: Path) -> None:
    doc = json.loads(path.read_text())
    ciphertext = bytearray.fromhex(doc["crypto"]["ciphertext"])
    ciphertext[0] ^= 1
    _edit(path, {"crypto.ciphertext": ciphertext.hex()})


@pytest.mark.parametrize("family", [EVM, SOL])
def test_tampered_ciphertext_fails_closed(vault_dir: Path, family: ChainFamily) -> None:
    """One flipped bit in a key file stops the open with ``vault_file_invalid`` naming it (the
    passphrase itself is fine: the check file opens)."""
    with open_vault(vault_dir) as vault:
        address = vault.create_key(family)
    _flip_ciphertext(key_path(vault_dir, family, address))
    with pytest.raises(VaultFileInvalid, match=str(key_path(vault_dir, family, address))):
        open_vault(vault_dir)


@pytest.mark.parametrize("family", [EVM, SOL])
def test_swapped_file_fails_closed(vault_dir: Path, family: ChainFamily) -> None:
    """A key file copied over another key's name is detected: the key is not the name's."""
    with open_vault(vault_dir) as vault:
        first, second = vault.create_key(family), vault.create_key(family)
    target = key_path(vault_dir, family, second)
    target.write_bytes(key_path(vault_dir, family, first).read_bytes())
    with pytest.raises(VaultFileInvalid, match=f"holds the key of {first}, not {second}"):
        open_vault(vault_dir)


@pytest.mark.parametrize("family", [EVM, SOL])
def test_edited_address_and_name_fail_closed(vault_dir: Path, family: ChainFamily) -> None:
    """Rewriting a file's address field and renaming it to match another address fails: the
    Solana address is GCM associated data, the EVM one is checked against the key."""
    with open_vault(vault_dir) as vault:
        real = vault.create_key(family)
    other = str(Keypair().pubkey()) if family is SOL else Account.create().address
    path = key_path(vault_dir, family, real)
    _edit(path, {"address": other if family is SOL else other[2:].lower()})
    path.rename(key_path(vault_dir, family, other))
    with pytest.raises(VaultFileInvalid):
        open_vault(vault_dir)


def test_solana_address_is_bound_by_associated_data(vault: FileVault) -> None:
    """Below the vault's own name and key checks, the format itself binds the address: the
    GCM tag covers it, so an edited address does not decrypt at all."""
    address = vault.create_key(SOL)
    path = key_path(vault.directory, SOL, address)
    doc = json.loads(path.read_text())
    assert fmt.decode_solana(doc, PASS, path)[0] == address
    with pytest.raises(fmt.Undecryptable):
        fmt.decode_solana({**doc, "address": str(Pubkey.new_unique())}, PASS, path)


def test_malformed_and_oversized_cost_files_are_invalid(vault_dir: Path) -> None:
    """Broken JSON, and a planted scrypt cost above the 1 GiB bound, are refused before any
    derivation runs, naming the file."""
    with open_vault(vault_dir) as vault:
        address = vault.create_key(SOL)
    path = key_path(vault_dir, SOL, address)
    good = path.read_text()
    _edit(path, {"crypto.kdfparams.n": 2**30})
    with pytest.raises(VaultFileInvalid, match="1 GiB"):
        open_vault(vault_dir)
    path.write_text(good[:-10])
    with pytest.raises(VaultFileInvalid, match="not valid JSON"):
        open_vault(vault_dir)


# --- files on disk -----------------------------------------------------------------------------


def test_files_are_owner_only_whatever_the_umask(vault_dir: Path) -> None:
    """Under umask 000 the vault directory is still 0700 and every file 0600; a loose existing
    directory is tightened."""
    vault_dir.mkdir(parents=True, mode=0o755)
    old = os.umask(0)
    try:
        with open_vault(vault_dir) as vault:
            vault.create_key(EVM)
            vault.create_key(SOL)
    finally:
        os.umask(old)
    assert stat.S_IMODE(vault_dir.stat().st_mode) == 0o700
    files = list(vault_dir.iterdir())
    assert len(files) == 3  # two keys and the check file; no temp file left behind
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_no_plaintext_key_material_on_disk(vault_dir: Path) -> None:
    """No file under the data directory contains a private key in any spelling: hex (either
    case), raw bytes, the Solana seed or its base58 keypair; nor the passphrase."""
    with open_vault(vault_dir) as vault:
        evm, sol = vault.create_key(EVM), vault.create_key(SOL)
        evm_key = bytes.fromhex(vault.export_private_key(evm, PASS)[2:])
        keypair = Keypair.from_base58_string(vault.export_private_key(sol, PASS))
        evm_signer(vault, evm).sign_evm_transaction(TX)
    needles = [
        evm_key,
        evm_key.hex().encode(),
        evm_key.hex().upper().encode(),
        keypair.secret(),
        keypair.secret().hex().encode(),
        bytes(keypair),
        str(keypair).encode(),
        PASS.encode(),
    ]
    files = [p for p in vault_dir.parent.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, path


def test_keys_from_another_process_unlock_on_first_use(vault_dir: Path) -> None:
    """A key another vault instance (say the CLI) adds later is listed and, on first use,
    unlocked once and cached."""
    with open_vault(vault_dir) as server, open_vault(vault_dir) as cli:
        address = cli.create_key(EVM)
        assert (EVM, address) in server.addresses()
        signer = server.signer(address)
        assert server.signer(address) is signer
        assert Account.recover_transaction(evm_signer(server, address).sign_evm_transaction(TX))


def test_concurrent_creates_are_all_kept(vault_dir: Path) -> None:
    """Eight threads creating keys at once each get their own file, all readable on reopen."""
    created: list[str] = []
    with open_vault(vault_dir) as vault:
        threads = [
            threading.Thread(target=lambda i=i: created.append(vault.create_key([EVM, SOL][i % 2])))
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    with open_vault(vault_dir) as reopened:
        assert sorted(a for _f, a in reopened.addresses()) == sorted(created)
        assert len(set(created)) == 8


# --- lookups, closing, leaks -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["", "../../etc/passwd", "0x" + "g" * 40, "0x" + "12" * 20, str(Pubkey.new_unique()), "0" * 44],
)
def test_unknown_or_malformed_address_is_not_found(vault: FileVault, address: str) -> None:
    """Anything but a stored address is ``NotFound``; only hex or base58 reaches a file name."""
    with pytest.raises(NotFound):
        vault.signer(address)
    with pytest.raises(NotFound):
        vault.export_private_key(address, PASS)


def test_close_forgets_keys(vault: FileVault) -> None:
    """After close, signers already handed out and the vault itself refuse to work."""
    evm = evm_signer(vault, vault.create_key(EVM))
    sol = vault.signer(vault.create_key(SOL))
    vault.close()
    calls: list[Callable[[], bytes]] = [
        lambda: evm.sign_evm_transaction(TX),
        lambda: sol.sign_message(b"x"),
    ]
    for call in calls:
        with pytest.raises(VaultError) as caught:
            call()
        assert caught.value.code == "vault_closed"
    with pytest.raises(VaultError, match="closed"):
        vault.signer(evm.address)
    with pytest.raises(VaultError, match="closed"):
        vault.create_key(EVM)


def test_nothing_leaks_through_repr_or_pickle(vault: FileVault) -> None:
    """``repr`` shows addresses only, and neither a signer nor the vault can be pickled."""
    evm = evm_signer(vault, vault.create_key(EVM))
    sol = solana_signer(vault, vault.create_key(SOL))
    secret_hex = vault.export_private_key(evm.address, PASS)[2:]
    secret_b58 = vault.export_private_key(sol.address, PASS)
    text = " ".join(repr(x) for x in (vault, evm, sol, Passphrase(PASS)))
    assert secret_hex not in text.lower()
    assert secret_b58 not in text
    assert PASS not in text
    for thing in (vault, evm, sol):
        with pytest.raises(TypeError):
            pickle.dumps(thing)
