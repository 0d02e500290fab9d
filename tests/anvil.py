"""EVM test helpers: a real anvil node for the JSON-RPC tests, and a signer over a raw key.

:func:`running_anvil` starts ``node_modules/.bin/anvil`` (from the npm package
``@foundry-rs/anvil``) on a free loopback port with a fixed chain id and mnemonic, waits until it
answers ``eth_chainId`` (bounded), and always stops it: SIGTERM through its ``Popen`` handle,
then SIGKILL to its own process group if it lingers (the npm launcher runs anvil as a child).
When the binary is missing the tests skip locally with a hint to run ``npm install``, and
fail in CI.

:class:`KeySigner` implements the ``Signer`` port over an ``eth_account`` key, so chain tests do
not depend on the vault.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from treasurer.service.chain_ports import Chain, ChainFamily, Receipt, ReceiptStatus

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
ANVIL_CHAIN_ID = 31337
#: anvil's (and Hardhat's) well-known development mnemonic; its keys hold test ETH only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNTS = 10
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0


class KeySigner:
    """A ``Signer`` over one in-memory ``eth_account`` key (tests only)."""

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    @classmethod
    def create(cls) -> KeySigner:
        """A signer over a fresh random key."""
        return cls(Account.create())

    @property
    def address(self) -> str:
        return self._account.address

    @property
    def family(self) -> ChainFamily:
        return ChainFamily.EVM

    def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
        return bytes(self._account.sign_transaction(transaction).raw_transaction)  # type: ignore[arg-type]

    def sign_message(self, message: bytes) -> bytes:
        raise NotImplementedError("EVM test signers only sign transactions")


@dataclass(frozen=True)
class AnvilNode:
    """A running anvil: its URL, chain id and prefunded development keys."""

    url: str
    chain_id: int
    keys: tuple[str, ...]

    def signer(self, index: int) -> KeySigner:
        return KeySigner(Account.from_key(self.keys[index]))


def dev_keys(count: int = DEV_ACCOUNTS) -> tuple[str, ...]:
    """The private keys anvil derives from :data:`DEV_MNEMONIC` (BIP-44 path m/44'/60'/0'/0/i)."""
    Account.enable_unaudited_hdwallet_features()
    return tuple(
        "0x" + Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(count)
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _chain_id(url: str) -> int | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=1.0) as response:
            return int(json.loads(response.read())["result"], 16)
    except (OSError, ValueError, KeyError):
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)
    # The launcher forwards SIGTERM to anvil; a child that outlived it is still in our group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _require_binary() -> None:
    if ANVIL.exists():
        return
    message = f"anvil is missing ({ANVIL}); run `npm install` in {ROOT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def running_anvil(chain_id: int = ANVIL_CHAIN_ID) -> Iterator[AnvilNode]:
    """Start anvil, yield it once it answers with ``chain_id``, and stop it however we leave."""
    _require_binary()
    with tempfile.TemporaryFile() as log:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            str(ANVIL),
            *("--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id)),
            *("--mnemonic", DEV_MNEMONIC, "--accounts", str(DEV_ACCOUNTS)),
        ]
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while _chain_id(url) != chain_id:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read()[-2000:].decode(errors="replace")
                    pytest.fail(f"anvil did not start on {url} (exit {process.poll()}):\n{tail}")
                time.sleep(0.1)
            yield AnvilNode(url=url, chain_id=chain_id, keys=dev_keys())
        finally:
            _stop(process)


def settle(chain: Chain, tx_id: str, timeout_s: float = 10.0) -> Receipt:
    """Poll ``chain.receipt`` until the transaction is no longer pending (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        receipt = chain.receipt(tx_id)
        if receipt.status is not ReceiptStatus.PENDING or time.monotonic() > deadline:
            return receipt
        time.sleep(0.05)
