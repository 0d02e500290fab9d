"""Reading the outcome of an EVM transaction, carefully enough to void a spend on it.

A receipt with status 1 confirms a spend and status 0 reverts it; either way the fee was paid
(``gasUsed x effectiveGasPrice``, plus the L1 data fee that OP-stack chains such as Base and
Optimism report as ``l1Fee``). The hard case is a transaction the node does not know: it may be
on its way (a load-balanced RPC, a slow mempool) or gone for good. Calling it ``dropped`` lets the
caller void the authorization, so that is only said when it is certain: this process sent it,
and the sender's nonce has since been used by a *mined* transaction that is not this one. In
every other case the answer is ``pending`` and the caller keeps waiting (up to its own limit).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any, Final

from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.types import TxReceipt

from treasurer.domain.errors import InvalidRequest
from treasurer.service.chain_ports import Receipt, ReceiptStatus

_TX_ID = re.compile(r"0x[0-9a-fA-F]{64}")
SENT_LOG_LIMIT: Final = 10_000


class SentLog:
    """Sender and nonce of the transactions this process broadcast, newest kept, bounded."""

    def __init__(self, limit: int = SENT_LOG_LIMIT) -> None:
        self._limit = limit
        self._entries: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, tx_id: str, sender: str, nonce: int) -> None:
        with self._lock:
            self._entries[tx_id.lower()] = (sender, nonce)
            self._entries.move_to_end(tx_id.lower())
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    def get(self, tx_id: str) -> tuple[str, int] | None:
        with self._lock:
            return self._entries.get(tx_id.lower())


def _as_int(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return 0


def _from_receipt(w3: Web3, tx_id: str, found: TxReceipt, confirmations: int) -> Receipt:
    block = int(found["blockNumber"])
    if confirmations > 1 and w3.eth.block_number - block + 1 < confirmations:
        return Receipt(tx_id, ReceiptStatus.PENDING, 0, block)
    extra: dict[str, Any] = dict(found)
    fee = int(found["gasUsed"]) * int(found["effectiveGasPrice"]) + _as_int(extra.get("l1Fee"))
    status = ReceiptStatus.CONFIRMED if found["status"] == 1 else ReceiptStatus.REVERTED
    return Receipt(tx_id, status, fee, block)


def _lookup(w3: Web3, tx_id: HexStr) -> TxReceipt | None:
    try:
        return w3.eth.get_transaction_receipt(tx_id)
    except TransactionNotFound:
        return None


def receipt_of(w3: Web3, tx_id: str, confirmations: int, sent: SentLog) -> Receipt:
    """The current outcome of ``tx_id`` (see the module docstring for ``dropped``)."""
    if not _TX_ID.fullmatch(tx_id):
        raise InvalidRequest(
            f"tx_id: {tx_id!r} is not an EVM transaction hash (0x and 64 hex digits)",
            field="tx_id",
            code="tx_id_invalid",
        )
    key = HexStr(tx_id.lower())
    found = _lookup(w3, key)
    if found is not None:
        return _from_receipt(w3, tx_id, found, confirmations)
    try:
        w3.eth.get_transaction(key)
        return Receipt(tx_id, ReceiptStatus.PENDING)  # known to the node, not mined yet
    except TransactionNotFound:
        pass
    ours = sent.get(tx_id)
    if ours is None:
        return Receipt(tx_id, ReceiptStatus.PENDING)
    sender, nonce = ours
    if w3.eth.get_transaction_count(Web3.to_checksum_address(sender), "latest") <= nonce:
        return Receipt(tx_id, ReceiptStatus.PENDING)
    # The nonce is used. Look once more: our transaction may have been mined in the meantime.
    found = _lookup(w3, key)
    if found is not None:
        return _from_receipt(w3, tx_id, found, confirmations)
    return Receipt(tx_id, ReceiptStatus.DROPPED)
