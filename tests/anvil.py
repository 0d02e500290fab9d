"""EVM test helpers: a real anvil node for the JSON-RPC tests, and a signer over a raw key.

:func:`start_anvil` starts ``node_modules/.bin/anvil`` (from the npm package
``@foundry-rs/anvil``) on a free loopback port with a fixed chain id and mnemonic, waits until it
answers ``eth_chainId`` (bounded), and always stops it: SIGTERM through its ``Popen`` handle,
then SIGKILL to its own process group if it lingers (the npm launcher runs anvil as a child).
``automine=False`` starts it with ``--no-mining``: transactions wait in the mempool until
:meth:`AnvilNode.mine` (the ``evm_mine`` RPC), which is how a test holds a payment between its
broadcast and its confirmation. :func:`running_anvil` is the pytest wrapper: when the binary is
missing the tests skip locally with a hint to run ``npm install``, and fail in CI. The
benchmarks (``benchmarks/payments.py``) use :func:`start_anvil` directly, outside pytest.

:class:`KeySigner` implements the ``Signer`` port over an ``eth_account`` key, so chain tests do
not depend on the vault. :func:`deploy`, :func:`mint` and :func:`send_eth` set a node up from
its prefunded development keys, over a plain web3 client.
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from web3 import HTTPProvider, Web3

from treasurer.adapters.chains.evm_artifacts import DEMO_STABLECOIN, load_artifact
from treasurer.service.chain_ports import Chain, ChainFamily, Receipt, ReceiptStatus

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
ANVIL_CHAIN_ID = 31337
#: anvil's (and Hardhat's) well-known development mnemonic; its keys hold test ETH only.
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_ACCOUNTS = 10
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
RPC_TIMEOUT_S = 5.0
RECEIPT_TIMEOUT_S = 10.0


class AnvilMissing(RuntimeError):
    """``node_modules/.bin/anvil`` is not installed (run ``npm install``)."""


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
    """A running anvil: its URL, chain id, prefunded development keys and mining mode.

    ``process_group``: the id of the process group anvil runs in (the npm launcher and the
    binary), for a benchmark that reads the node's CPU time from ``/proc``.
    """

    url: str
    chain_id: int
    keys: tuple[str, ...]
    automine: bool = True
    process_group: int = 0

    def signer(self, index: int) -> KeySigner:
        return KeySigner(Account.from_key(self.keys[index]))

    def web3(self) -> Web3:
        """A plain web3 client for setup and for reading what the node holds."""
        return Web3(HTTPProvider(self.url, request_kwargs={"timeout": RPC_TIMEOUT_S}))

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """One raw JSON-RPC call (for anvil's own methods such as ``evm_mine``)."""
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
        request = urllib.request.Request(
            self.url, body.encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=RPC_TIMEOUT_S) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {answer['error']}")
        return answer.get("result")

    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` blocks now, with whatever the mempool holds."""
        for _ in range(blocks):
            self.rpc("evm_mine")

    def mempool_size(self) -> int:
        """Transactions waiting to be mined (``txpool_status``: pending + queued)."""
        status = self.rpc("txpool_status")
        return int(status["pending"], 16) + int(status["queued"], 16)


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


@contextlib.contextmanager
def start_anvil(
    chain_id: int = ANVIL_CHAIN_ID,
    *,
    automine: bool = True,
    accounts: int = DEV_ACCOUNTS,
    extra_args: Sequence[str] = (),
) -> Iterator[AnvilNode]:
    """Start anvil, yield it once it answers with ``chain_id``, and stop it however we leave.

    ``extra_args`` go to anvil as they are (a benchmark passes ``--prune-history``). Raises
    :class:`AnvilMissing` without the binary, ``RuntimeError`` if it does not start within
    :data:`START_TIMEOUT_S`.
    """
    if not ANVIL.exists():
        raise AnvilMissing(f"anvil is missing ({ANVIL}); run `npm install` in {ROOT}")
    with tempfile.TemporaryFile() as log:
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        command = [
            str(ANVIL),
            *("--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id)),
            *("--mnemonic", DEV_MNEMONIC, "--accounts", str(accounts)),
            *(() if automine else ("--no-mining",)),
            *extra_args,
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
                    raise RuntimeError(
                        f"anvil did not start on {url} (exit {process.poll()}):\n{tail}"
                    )
                time.sleep(0.1)
            yield AnvilNode(url, chain_id, dev_keys(accounts), automine, process.pid)
        finally:
            _stop(process)


@contextlib.contextmanager
def running_anvil(chain_id: int = ANVIL_CHAIN_ID, *, automine: bool = True) -> Iterator[AnvilNode]:
    """:func:`start_anvil` for pytest: skip without the binary (fail in CI), fail if it won't
    start."""
    with contextlib.ExitStack() as stack:
        try:
            node = stack.enter_context(start_anvil(chain_id, automine=automine))
        except AnvilMissing as missing:
            if os.environ.get("CI"):
                pytest.fail(str(missing))
            pytest.skip(str(missing))
        except RuntimeError as failed:
            pytest.fail(str(failed))
        yield node


def settle(chain: Chain, tx_id: str, timeout_s: float = 10.0) -> Receipt:
    """Poll ``chain.receipt`` until the transaction is no longer pending (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        receipt = chain.receipt(tx_id)
        if receipt.status is not ReceiptStatus.PENDING or time.monotonic() > deadline:
            return receipt
        time.sleep(0.05)


# -- setting a node up from its development keys ------------------------------------------------


def transact(node: AnvilNode, w3: Web3, key: str, transaction: dict[str, Any]) -> dict[str, Any]:
    """Sign ``transaction`` with ``key``, send it, mine it if the node does not, and return its
    receipt; a reverted setup transaction is an error."""
    account = Account.from_key(key)
    transaction = {
        **transaction,
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": node.chain_id,
    }
    if "gas" not in transaction:
        transaction["gas"] = w3.eth.estimate_gas(transaction)  # type: ignore[arg-type]
    if "maxFeePerGas" not in transaction and "gasPrice" not in transaction:
        base_fee = int(w3.eth.get_block("latest")["baseFeePerGas"])
        transaction["maxFeePerGas"] = 2 * base_fee + 10**9
        transaction["maxPriorityFeePerGas"] = 10**9
    raw = account.sign_transaction(transaction).raw_transaction
    tx_hash = w3.eth.send_raw_transaction(raw)
    if not node.automine:
        node.mine()
    receipt = dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S))
    if receipt["status"] != 1:
        raise RuntimeError(f"setup transaction {tx_hash.hex()} reverted")
    return receipt


def deploy(node: AnvilNode, w3: Web3, key: str, name: str, *args: object) -> ChecksumAddress:
    """Deploy the packaged contract ``name`` (see ``evm_artifacts``) from ``key``."""
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    built = factory.constructor(*args).build_transaction({"from": Account.from_key(key).address})
    address = transact(node, w3, key, dict(built))["contractAddress"]
    assert isinstance(address, str)
    return Web3.to_checksum_address(address)


def deploy_stablecoin(node: AnvilNode, w3: Web3) -> ChecksumAddress:
    """The demo stablecoin (6 decimals), owned (and so minted) by development key 0."""
    return deploy(node, w3, node.keys[0], DEMO_STABLECOIN, "Demo USD", "DUSD")


def mint(node: AnvilNode, w3: Web3, token: str, to: str, units: int) -> None:
    """Mint ``units`` base units of the demo stablecoin to ``to`` (from its owner, key 0)."""
    contract = w3.eth.contract(
        address=Web3.to_checksum_address(token), abi=load_artifact(DEMO_STABLECOIN).abi
    )
    owner = Account.from_key(node.keys[0]).address
    built = contract.functions.mint(Web3.to_checksum_address(to), units).build_transaction(
        {"from": owner}
    )
    transact(node, w3, node.keys[0], dict(built))


def send_eth(node: AnvilNode, w3: Web3, key: str, to: str, wei: int) -> None:
    """Send ``wei`` of the native coin from development key ``key`` to ``to``."""
    transact(node, w3, key, {"to": Web3.to_checksum_address(to), "value": wei, "gas": 21_000})
