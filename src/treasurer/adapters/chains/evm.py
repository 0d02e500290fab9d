"""An EVM network as a :class:`~treasurer.service.chain_ports.Chain`, over any web3 provider.

The same class drives the embedded chain (eth-tester, see :mod:`.evm_local`), anvil and real
networks over JSON-RPC (:meth:`EvmChain.over_rpc`, with request timeouts and bounded retries).

- **Fees** are EIP-1559 (:mod:`.evm_tx`): a quote is the most the transaction may cost, and
  :meth:`EvmChain.send` never signs a transaction that could cost more than the quote it was
  given, since that quote is what a ``fee_limit`` policy allowed.
- **Nonces** come from a :class:`~.evm_nonces.NonceAllocator`: concurrent sends from one address
  get consecutive nonces, a failed send leaves no gap, a restart continues from the node.
- **Outcomes**: a transaction whose broadcast may have reached the node returns its id even if
  the node did not confirm receipt (a timeout), because a spend that might land must be followed
  by :meth:`EvmChain.receipt`, never voided blindly. A transaction the node refused raises
  :class:`~.evm_errors.ChainRejected`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

import requests
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    Web3RPCError,
)
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from treasurer.adapters.chains.evm_errors import (
    CallReverted,
    ChainMisconfigured,
    ChainRejected,
    ChainUnavailable,
    reason_of,
)
from treasurer.adapters.chains.evm_history import outgoing as scan_outgoing
from treasurer.adapters.chains.evm_nonces import NonceAllocator, NonceLedger
from treasurer.adapters.chains.evm_receipts import SentLog, receipt_of
from treasurer.adapters.chains.evm_tx import (
    EvmCall,
    FeeSettings,
    call_for,
    checksum_address,
    complete_fee,
    price_fee,
    reports_success,
)
from treasurer.domain.calldata import decode_uint256, encode_balance_of
from treasurer.domain.errors import InvalidRequest
from treasurer.service.chain_ports import (
    ChainFamily,
    FeeQuote,
    ObservedTransfer,
    Receipt,
    Signer,
    Simulation,
    Transfer,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors after which a request may or may not have reached the node.
TRANSPORT_ERRORS: Final[tuple[type[BaseException], ...]] = (
    requests.RequestException,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TimeoutError,
    ConnectionError,
)
#: Errors a node (or eth-tester) raises when a call reverts or a transaction is refused.
NODE_ERRORS: Final[tuple[type[BaseException], ...]] = (ContractLogicError, Web3RPCError)
_EVM_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")
#: What a node says when another writer holds our nonce: mined already ("nonce too low"), or
#: still in the mempool with a fee ours does not outbid ("replacement transaction
#: underpriced", geth, anvil and reth alike). Either way ours was refused, nothing was sent.
_NONCE_CONFLICT = re.compile(
    r"nonce too low|invalid transaction nonce|nonce.*already|replacement transaction underpriced",
    re.I,
)
#: What a node says when a call cannot succeed (as opposed to the node itself failing).
_CANNOT_SUCCEED = re.compile(
    r"revert|insufficient funds|out of gas|gas required exceeds|invalid opcode|exceeds allowance"
    r"|exceeds balance",
    re.I,
)
_SEND_ATTEMPTS: Final = 2  # one retry, only when another writer took our nonce
#: Seconds a base fee and priority tip read from the node are reused by fee quotes.
FEE_MARKET_CACHE_S: Final = 1.0


class EvmChain:
    """One EVM network reached through ``w3``.

    ``chain_id``: when given, the node must answer ``eth_chainId`` with it (checked once, before
    the first use); when omitted, the node's id is trusted (embedded chains).
    ``node_errors``: extra exception types the provider raises for reverts and refusals
    (eth-tester raises its own).
    ``fee_cache_s``: how long the base fee and priority tip read from the node are reused.
    Quotes price gas at twice the base fee, which covers far more than a second of base-fee
    movement, and a quote only bounds what a send may cost; reading the fee market once per
    payment would add two round trips to each.
    """

    def __init__(
        self,
        w3: Web3,
        *,
        network: str,
        chain_id: int | None = None,
        fees: FeeSettings | None = None,
        confirmations: int = 1,
        node_errors: tuple[type[BaseException], ...] = (),
        nonces: NonceAllocator | None = None,
        nonce_ledger: NonceLedger | None = None,
        fee_cache_s: float = FEE_MARKET_CACHE_S,
    ) -> None:
        if confirmations < 1:
            raise ValueError("confirmations counts the including block, so it is at least 1")
        self._w3 = w3
        self._network = network
        self._expected_chain_id = chain_id
        self._chain_id: int | None = None
        self._chain_id_lock = threading.Lock()
        self._fees = fees or FeeSettings()
        self._confirmations = confirmations
        self._node_errors = NODE_ERRORS + node_errors
        self._nonces = nonces or NonceAllocator(
            self._pending_count, ledger=nonce_ledger, network=network
        )
        self._sent = SentLog()
        self._fee_cache_s = fee_cache_s
        self._fee_lock = threading.Lock()
        self._fee_market_cache: tuple[float, int, int] | None = None  # (read at, base fee, tip)

    @classmethod
    def over_rpc(
        cls,
        network: str,
        rpc_url: str,
        *,
        chain_id: int,
        timeout_s: float = 10.0,
        retries: int = 2,
        fees: FeeSettings | None = None,
        confirmations: int = 1,
        nonce_ledger: NonceLedger | None = None,
    ) -> EvmChain:
        """A chain behind a JSON-RPC URL; each request times out after ``timeout_s`` and
        transport failures are retried ``retries`` times (re-sending a signed transaction is
        safe: the node recognises the same bytes). ``nonce_ledger``: the nonces every node of
        the deployment shares (see :mod:`~treasurer.adapters.chains.evm_nonces`)."""
        retry = ExceptionRetryConfiguration(
            errors=(requests.ConnectionError, requests.HTTPError, requests.Timeout),
            retries=retries + 1,
            backoff_factor=0.2,
        )
        provider = HTTPProvider(
            rpc_url,
            request_kwargs={"timeout": timeout_s},
            exception_retry_configuration=retry,
        )
        w3 = Web3(provider)
        # web3's validation middleware asks the node for eth_chainId before every call it
        # checks; this adapter verifies the chain id once itself (``chain_id``), so the
        # middleware only doubles the round trips of a gas estimate.
        w3.middleware_onion.remove("validation")
        return cls(
            w3,
            network=network,
            chain_id=chain_id,
            fees=fees,
            confirmations=confirmations,
            nonce_ledger=nonce_ledger,
        )

    @property
    def network(self) -> str:
        return self._network

    @property
    def family(self) -> ChainFamily:
        return ChainFamily.EVM

    @property
    def chain_id(self) -> int:
        """The node's chain id, verified against the configured one on first use."""
        with self._chain_id_lock:
            if self._chain_id is None:
                answered = self._rpc(lambda: self._w3.eth.chain_id)
                expected = self._expected_chain_id
                if expected is not None and answered != expected:
                    raise ChainMisconfigured(
                        f"network {self._network} expects chain id {expected} but its RPC "
                        f"node serves chain id {answered}; check the configured URL"
                    )
                self._chain_id = answered
            return self._chain_id

    # -- reads ------------------------------------------------------------------------------

    def balance(self, address: str, token: str | None = None) -> int:
        """Native balance in wei, or the ``token``'s ``balanceOf`` in its base units."""
        owner = checksum_address(address, "address")
        contract = None if token is None else checksum_address(token, "token")
        self._check_chain()
        if contract is None:
            return self._rpc(lambda: self._w3.eth.get_balance(owner))
        data = encode_balance_of(owner.lower())
        not_a_token: tuple[type[BaseException], ...] = (InvalidRequest, *self._node_errors)
        try:
            answer = self._rpc(lambda: self._w3.eth.call({"to": contract, "data": data}))
            return decode_uint256(bytes(answer))
        except not_a_token as exc:
            raise InvalidRequest(
                f"token {token} on {self._network} did not answer balanceOf: {reason_of(exc)}",
                field="token",
                code="token_not_erc20",
            ) from exc

    def quote_fee(self, transfer: Transfer) -> FeeQuote:
        """Estimate gas (plus margin) and price it at 2x base fee + priority fee.

        A raw ``CALL`` is estimated with its own calldata and value, like any other call.
        Raises :class:`CallReverted` when the call would revert: there is nothing to quote.
        """
        return self._price(call_for(transfer))

    def simulate(self, transfer: Transfer) -> Simulation:
        """Execute the call against the latest state without sending it.

        Fails (as a value) on a revert (with the contract's reason: its ``require`` message or
        custom error), on a native balance below the amount or call value, and on a token whose
        ``transfer``/``transferFrom``/``approve`` returns ``false`` instead of reverting — for
        a raw ``CALL`` too, when its calldata is one of those.
        """
        call = call_for(transfer)
        self._check_chain()
        if call.value:
            held = self._rpc(lambda: self._w3.eth.get_balance(call.sender))
            if held < call.value:
                return Simulation(False, f"insufficient funds: balance {held} < {call.value}")
        try:
            answer = bytes(self._rpc(lambda: self._w3.eth.call(call.params())))
        except self._node_errors as exc:
            return Simulation(False, reason_of(exc))
        if reports_success(call) and len(answer) == 32 and not any(answer):
            return Simulation(False, "the token returned false")
        return Simulation(True)

    def receipt(self, tx_id: str) -> Receipt:
        """Confirmed/reverted once mined with enough confirmations; pending until then."""
        self._check_chain()
        return self._rpc(lambda: receipt_of(self._w3, tx_id, self._confirmations, self._sent))

    def head(self) -> int:
        """The newest block with the adapter's confirmations (``latest - confirmations + 1``):
        reconciliation reads no block a reorg could still undo."""
        self._check_chain()
        latest = self._rpc(lambda: self._w3.eth.block_number)
        return int(latest) - (self._confirmations - 1)

    def outgoing(self, addresses: Sequence[str], start: int, end: int) -> list[ObservedTransfer]:
        """Native and ERC-20 transfers out of ``addresses`` in blocks ``start..end`` (see
        :mod:`.evm_history`); addresses that are not EVM addresses are ignored."""
        watched = [a for a in addresses if _EVM_ADDRESS.fullmatch(a)]
        self._check_chain()
        return self._rpc(lambda: scan_outgoing(self._w3, watched, start, end))

    # -- send -------------------------------------------------------------------------------

    def send(self, transfer: Transfer, signer: Signer, fee: FeeQuote) -> str:
        """Build an EIP-1559 transaction, sign it with ``signer`` and broadcast it.

        The gas limit and fees come from ``fee``; any it leaves out are quoted now, and the
        result must not cost more than ``fee.max_fee``. If another writer used our next nonce,
        the send is retried once with a fresh one.
        """
        call = call_for(transfer)
        if signer.family != ChainFamily.EVM or signer.address.lower() != call.sender.lower():
            raise InvalidRequest(
                f"the signer ({signer.family} {signer.address}) does not hold the sender "
                f"{transfer.sender}",
                field="sender",
                code="signer_mismatch",
            )
        fee = complete_fee(fee, lambda: self._price(call))
        for attempt in range(_SEND_ATTEMPTS):
            try:
                return self._sign_and_broadcast(call, signer, fee)
            except ChainRejected as exc:
                if not _NONCE_CONFLICT.search(exc.message):
                    raise
                if attempt + 1 == _SEND_ATTEMPTS:
                    raise nonce_conflict(exc) from exc
                log.info("nonce conflict sending from %s; retrying with a fresh nonce", call.sender)
        raise AssertionError("unreachable")  # pragma: no cover

    def _sign_and_broadcast(self, call: EvmCall, signer: Signer, fee: FeeQuote) -> str:
        chain_id = self.chain_id
        with self._nonces.reserve(call.sender) as slot:
            transaction: dict[str, object] = {
                "type": 2,
                "chainId": chain_id,
                "nonce": slot.nonce,
                "to": call.to,
                "value": call.value,
                "data": "0x" + call.data.hex(),
                "gas": fee.gas_limit,
                "maxFeePerGas": fee.max_fee_per_gas,
                "maxPriorityFeePerGas": fee.max_priority_fee_per_gas,
            }
            raw = signer.sign_evm_transaction(transaction)
            tx_id = "0x" + Web3.keccak(raw).hex().removeprefix("0x")
            try:
                self._w3.eth.send_raw_transaction(raw)
            except TRANSPORT_ERRORS as exc:
                # It may have reached the node: hand back the id to follow. The slot is not
                # committed, so the next send re-reads the node and reuses the nonce if not.
                log.warning("broadcast of %s is unconfirmed: %s", tx_id, reason_of(exc))
                self._sent.record(tx_id, call.sender, slot.nonce)
                return tx_id
            except self._node_errors as exc:
                raise ChainRejected(
                    f"{self._network} refused the transaction from {call.sender}: {reason_of(exc)}"
                ) from exc
            slot.commit()
            self._sent.record(tx_id, call.sender, slot.nonce)
            return tx_id

    # -- node access ------------------------------------------------------------------------

    def _check_chain(self) -> None:
        if self._expected_chain_id is not None:
            _ = self.chain_id

    def _pending_count(self, address: str) -> int:
        return self._rpc(
            lambda: self._w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending")
        )

    def _price(self, call: EvmCall) -> FeeQuote:
        self._check_chain()
        base_fee, tip = self._fee_market()
        return price_fee(self._estimate(call), base_fee, tip, self._fees)

    def _fee_market(self) -> tuple[int, int]:
        """The base fee and priority tip, read at most once per ``fee_cache_s``."""
        with self._fee_lock:
            cached = self._fee_market_cache
            now = time.monotonic()
            if cached is not None and now - cached[0] < self._fee_cache_s:
                return cached[1], cached[2]
        base_fee, tip = self._base_fee(), self._priority_fee()
        with self._fee_lock:
            self._fee_market_cache = (time.monotonic(), base_fee, tip)
        return base_fee, tip

    def _estimate(self, call: EvmCall) -> int:
        try:
            return self._rpc(lambda: self._w3.eth.estimate_gas(call.params()))
        except self._node_errors as exc:
            if not is_revert(exc):
                raise ChainUnavailable(
                    f"{self._network} could not estimate gas for the call from {call.sender} "
                    f"to {call.to}: {reason_of(exc)}; try again"
                ) from exc
            raise CallReverted(
                f"on {self._network}, the call from {call.sender} to {call.to} would revert: "
                f"{reason_of(exc)}"
            ) from exc

    def _base_fee(self) -> int:
        block = self._rpc(lambda: self._w3.eth.get_block("latest"))
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            raise ChainMisconfigured(f"{self._network} has no EIP-1559 base fee")
        return int(base_fee)

    def _priority_fee(self) -> int:
        try:
            return self._rpc(lambda: int(self._w3.eth.max_priority_fee))
        except self._node_errors:
            # Nodes without eth_maxPriorityFeePerGas: fall back to the configured tip.
            return self._fees.default_priority_fee_wei

    def _rpc(self, request: Callable[[], T]) -> T:
        """Run one node request; transport failures become :class:`ChainUnavailable`."""
        try:
            return request()
        except TRANSPORT_ERRORS as exc:
            raise ChainUnavailable(
                f"the {self._network} node did not answer: {reason_of(exc)}"
            ) from exc


def nonce_conflict(refused: ChainRejected) -> ChainRejected:
    """The refusal of a send whose nonce another writer took twice running, named as such: a
    node's own words ("replacement transaction underpriced") do not tell an operator that
    the cause is another sender from the same address, nor that nothing was sent."""
    return ChainRejected(f"nonce conflict, still after one retry: {refused.message}")


def is_revert(exc: BaseException) -> bool:
    """Whether a node error means the call itself cannot succeed (a revert, too few funds),
    rather than the node failing to answer (rate limit, pruned state, internal error): the
    first is the caller's problem, the second is worth a retry."""
    if isinstance(exc, ContractLogicError):
        return True
    if isinstance(exc, Web3RPCError):
        return bool(_CANNOT_SUCCEED.search(str(exc)))
    return True  # eth-tester's own errors are execution failures
