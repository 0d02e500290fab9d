"""``evm-local``: an in-process EVM (py-evm through eth-tester) so everything runs offline.

At start it deploys the demo stablecoin (6 decimals, minted by its owner) and the
:file:`Reverter` contract, both from eth-tester's first prefunded account, and then behaves like
any other :class:`~treasurer.adapters.chains.evm.EvmChain` (``chain``). Blocks are mined on every
transaction, eth-tester's default. :meth:`LocalEvm.faucet` funds dev wallets with native coin
and demo tokens.

Why a lock around the provider: py-evm is not thread-safe, and the pipeline sends from several
threads. Each JSON-RPC request runs alone, which is how a real node behaves from the outside.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from eth_tester import EthereumTester  # type: ignore[import-untyped]
from eth_tester.exceptions import TransactionFailed  # type: ignore[import-untyped]
from eth_typing import ChecksumAddress
from eth_utils.exceptions import ValidationError
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.types import RPCEndpoint, RPCResponse, Wei

from treasurer.adapters.chains.evm import EvmChain
from treasurer.adapters.chains.evm_artifacts import DEMO_STABLECOIN, REVERTER, load_artifact
from treasurer.adapters.chains.evm_tx import FeeSettings, checksum_address
from treasurer.adapters.chains.networks import EVM_LOCAL_CHAIN_ID
from treasurer.domain.errors import InvalidRequest

NETWORK: Final = "evm-local"
DEMO_ASSET_NAME: Final = "Demo USD"
DEMO_ASSET_SYMBOL: Final = "DUSD"
DEMO_ASSET_DECIMALS: Final = 6
#: eth-tester's errors for a reverted call and a refused transaction.
TESTER_ERRORS: Final[tuple[type[BaseException], ...]] = (TransactionFailed, ValidationError)


class _SerialTesterProvider(EthereumTesterProvider):
    """eth-tester behind a lock: one request at a time, whatever the calling thread."""

    def __init__(self, tester: EthereumTester) -> None:
        super().__init__(tester)
        self._serial = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self._serial:
            return super().make_request(method, params)


class LocalEvm:
    """The embedded dev chain: an eth-tester EVM, its demo token and a faucet."""

    def __init__(self, *, fees: FeeSettings | None = None) -> None:
        self._tester = EthereumTester()
        self.w3 = Web3(_SerialTesterProvider(self._tester))
        self.chain = EvmChain(
            self.w3,
            network=NETWORK,
            chain_id=EVM_LOCAL_CHAIN_ID,
            fees=fees,
            node_errors=TESTER_ERRORS,
            fee_cache_s=0.0,  # in-process reads are cheap, and every transaction mines a block
        )
        self._owner: ChecksumAddress = self.w3.eth.accounts[0]
        self._faucet_lock = threading.Lock()
        self.token_address: ChecksumAddress = self._deploy(
            DEMO_STABLECOIN, DEMO_ASSET_NAME, DEMO_ASSET_SYMBOL
        )
        self.reverter_address: ChecksumAddress = self._deploy(REVERTER)

    def _deploy(self, name: str, *args: object) -> ChecksumAddress:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx_hash = factory.constructor(*args).transact({"from": self._owner})
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        address = receipt["contractAddress"]
        if receipt["status"] != 1 or address is None:
            raise RuntimeError(f"deploying {name} on {NETWORK} failed")  # a broken artifact
        return address

    def faucet(self, address: str, native_wei: int = 0, token_units: int = 0) -> None:
        """Give ``address`` native coin (wei) and demo tokens (base units, 6 decimals)."""
        recipient = checksum_address(address, "address")
        if native_wei < 0 or token_units < 0:
            raise InvalidRequest("faucet amounts cannot be negative", code="amount_negative")
        with self._faucet_lock:
            if native_wei:
                self._wait(
                    self.w3.eth.send_transaction(
                        {"from": self._owner, "to": recipient, "value": Wei(native_wei)}
                    )
                )
            if token_units:
                token = self.w3.eth.contract(
                    address=self.token_address, abi=load_artifact(DEMO_STABLECOIN).abi
                )
                tx_hash = token.functions.mint(recipient, token_units).transact(
                    {"from": self._owner}
                )
                self._wait(tx_hash)

    def _wait(self, tx_hash: HexBytes) -> None:
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)  # mined on send
        if receipt["status"] != 1:
            raise RuntimeError(f"faucet transaction {tx_hash.hex()} reverted")
