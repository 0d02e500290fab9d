"""What left a set of addresses on an EVM chain: native coin and ERC-20 tokens, block by block.

Reconciliation (:mod:`treasurer.service.reconcile`) compares these transfers with what
Treasurer authorized. They come from two places, because the chain records them in two ways:

- **Native coin** moves as a transaction's ``value``. Each block of the range is read with its
  full transactions (``eth_getBlockByNumber`` with ``true``); a transaction counts when a
  watched address sent it, its value is not zero and its receipt says it succeeded (a reverted
  transaction moves nothing but its fee). Coin a *contract* sends on the wallet's behalf (an
  internal transaction) is invisible this way: only tracing shows it, and most nodes do not
  offer tracing.
- **ERC-20 tokens** move as ``Transfer(address indexed from, address indexed to, uint256
  value)`` logs. One ``eth_getLogs`` over the range with ``topic1`` = any watched address finds
  them all, whoever signed the transaction: the wallet, or a spender moving tokens under an
  allowance the wallet gave (``initiator`` tells them apart). ERC-721 emits the same event with
  the token id indexed (four topics, no data) and is left out.

Fees are not transfers and are not reported. A range is at most :data:`MAX_SCAN_BLOCKS`
blocks, so one call is bounded; the watcher walks longer distances in steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from eth_typing import BlockNumber, HexStr
from web3 import Web3
from web3.types import FilterParams, LogReceipt, TxData

from treasurer.service.chain_ports import NATIVE_INDEX, ObservedTransfer

#: keccak256("Transfer(address,address,uint256)"): ERC-20 (and ERC-721) transfer events.
TRANSFER_TOPIC: Final = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
#: Blocks one :func:`outgoing` call may cover (node providers cap ``eth_getLogs`` ranges too).
MAX_SCAN_BLOCKS: Final = 2_000
_WORD_BYTES: Final = 32
_ADDRESS_BYTES: Final = 20


def _hex(value: object) -> str:
    """``HexBytes``/``bytes``/``str`` as lowercase ``0x`` hex."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    text = str(value).lower()
    return text if text.startswith("0x") else "0x" + text


def _topic_of(address: str) -> str:
    """An address as the 32-byte topic an indexed ``address`` argument becomes."""
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


def _address_of(topic: object) -> str:
    raw = _hex(topic)
    return "0x" + raw[-2 * _ADDRESS_BYTES :]


def outgoing(w3: Web3, watched: Iterable[str], start: int, end: int) -> list[ObservedTransfer]:
    """Transfers out of ``watched`` (EVM addresses) in blocks ``start..end``, in chain order:
    by block, then position in the block, then the native value before the logs of a
    transaction."""
    senders = {address.lower() for address in watched}
    if end < start or not senders:
        return []
    if end - start + 1 > MAX_SCAN_BLOCKS:
        raise ValueError(f"scan at most {MAX_SCAN_BLOCKS} blocks at once, not {end - start + 1}")
    found: list[tuple[tuple[int, int, int], ObservedTransfer]] = []
    found.extend(_native(w3, senders, start, end))
    found.extend(_tokens(w3, senders, start, end))
    found.sort(key=lambda item: item[0])
    return [transfer for _order, transfer in found]


def _native(
    w3: Web3, senders: set[str], start: int, end: int
) -> list[tuple[tuple[int, int, int], ObservedTransfer]]:
    found = []
    for number in range(start, end + 1):
        block = w3.eth.get_block(BlockNumber(number), full_transactions=True)
        for entry in block.get("transactions", []):
            tx: Mapping[str, Any] = (
                w3.eth.get_transaction(HexStr(_hex(entry)))  # a node that sent hashes only
                if isinstance(entry, bytes | str)
                else entry
            )
            sender = str(tx["from"]).lower()
            value = int(tx["value"])
            if sender not in senders or value <= 0:
                continue
            tx_id = _hex(tx["hash"])
            receipt = w3.eth.get_transaction_receipt(HexStr(tx_id))
            if receipt["status"] != 1:
                continue
            recipient = tx.get("to") or receipt.get("contractAddress") or ""
            position = int(tx.get("transactionIndex") or 0)
            found.append(
                (
                    (number, position, NATIVE_INDEX),
                    ObservedTransfer(
                        tx_id=tx_id,
                        index=NATIVE_INDEX,
                        sender=sender,
                        recipient=str(recipient).lower(),
                        amount=value,
                        token=None,
                        block=number,
                        initiator=sender,
                    ),
                )
            )
    return found


def _tokens(
    w3: Web3, senders: set[str], start: int, end: int
) -> list[tuple[tuple[int, int, int], ObservedTransfer]]:
    params: FilterParams = {
        "fromBlock": BlockNumber(start),
        "toBlock": BlockNumber(end),
        "topics": [HexStr(TRANSFER_TOPIC), [HexStr(_topic_of(a)) for a in sorted(senders)]],
    }
    initiators: dict[str, str | None] = {}
    found = []
    for log in w3.eth.get_logs(params):
        transfer = _erc20(log, senders)
        if transfer is None:
            continue
        tx_id = transfer.tx_id
        if tx_id not in initiators:
            tx: TxData = w3.eth.get_transaction(HexStr(tx_id))
            initiators[tx_id] = str(tx["from"]).lower() if "from" in tx else None
        order = (transfer.block, int(log.get("transactionIndex") or 0), transfer.index)
        found.append((order, _with_initiator(transfer, initiators[tx_id])))
    return found


def _erc20(log: LogReceipt, senders: set[str]) -> ObservedTransfer | None:
    """An ERC-20 ``Transfer`` from a watched address, or None (ERC-721, removed, not ours)."""
    topics = log["topics"]
    data = bytes(log["data"])
    if log.get("removed") or len(topics) != 3 or len(data) != _WORD_BYTES:
        return None
    if _hex(topics[0]) != TRANSFER_TOPIC:
        return None
    sender = _address_of(topics[1])
    if sender not in senders:
        return None
    amount = int.from_bytes(data, "big")
    if amount == 0:
        return None
    return ObservedTransfer(
        tx_id=_hex(log["transactionHash"]),
        index=int(log["logIndex"]),
        sender=sender,
        recipient=_address_of(topics[2]),
        amount=amount,
        token=str(log["address"]).lower(),
        block=int(log["blockNumber"]),
    )


def _with_initiator(transfer: ObservedTransfer, initiator: str | None) -> ObservedTransfer:
    return ObservedTransfer(
        tx_id=transfer.tx_id,
        index=transfer.index,
        sender=transfer.sender,
        recipient=transfer.recipient,
        amount=transfer.amount,
        token=transfer.token,
        block=transfer.block,
        initiator=initiator,
    )
