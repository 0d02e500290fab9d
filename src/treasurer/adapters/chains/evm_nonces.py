"""Nonces for concurrent sends from one address, with no collisions and no gaps.

An EVM account's transactions execute in nonce order, one per nonce. Two sends that pick the
same nonce collide (one is rejected or replaces the other); a nonce that is handed out but never
broadcast leaves a gap, and every later transaction waits behind it forever.

The allocator prevents both with one rule: **a nonce is taken and broadcast under the
address's lock.** The first send of an address reads the node's ``pending`` transaction count
(which includes what is still in the mempool, so a restarted process continues where the last
one stopped); each committed send advances a local counter. A send that fails before its
transaction certainly reached the node does not commit, and the next send resynchronises from
the node, so the nonce is used again rather than skipped. Sends from different addresses run in
parallel; sends from one address are serial, which costs only the time of signing and one
``eth_sendRawTransaction``.

One allocator serves one chain (an :class:`~treasurer.adapters.chains.evm.EvmChain`); keys are
addresses, compared case-insensitively.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

from treasurer.adapters.chains.evm_errors import ChainUnavailable

DEFAULT_LOCK_TIMEOUT_S: Final = 60.0


@dataclass
class NonceSlot:
    """The nonce reserved for one send. Call :meth:`commit` once the transaction is broadcast."""

    nonce: int
    committed: bool = field(default=False, init=False)

    def commit(self) -> None:
        self.committed = True


@dataclass
class _Account:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_nonce: int | None = None  # None: read the node's pending count before the next send


class NonceAllocator:
    """Per-address nonce counters, each behind a lock held from allocation to broadcast.

    ``pending_count`` reads the node's ``eth_getTransactionCount(address, "pending")``.
    ``lock_timeout_s`` bounds how long a send waits for the others of its address.
    """

    def __init__(
        self,
        pending_count: Callable[[str], int],
        *,
        lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> None:
        self._pending_count = pending_count
        self._lock_timeout_s = lock_timeout_s
        self._accounts: dict[str, _Account] = {}
        self._accounts_lock = threading.Lock()

    def _account(self, address: str) -> _Account:
        key = address.lower()
        with self._accounts_lock:
            account = self._accounts.get(key)
            if account is None:
                account = self._accounts[key] = _Account()
            return account

    @contextmanager
    def reserve(self, address: str) -> Iterator[NonceSlot]:
        """Hold ``address``'s lock and lend its next nonce for the body of the ``with``.

        Committed: the counter moves past the nonce. Not committed (an exception, or a broadcast
        whose outcome is unknown): the next send reads the node again, so no gap is left.
        """
        account = self._account(address)
        if not account.lock.acquire(timeout=self._lock_timeout_s):
            raise ChainUnavailable(
                f"sends from {address} are queued for more than {self._lock_timeout_s:g}s"
            )
        try:
            if account.next_nonce is None:
                account.next_nonce = self._pending_count(address)
            slot = NonceSlot(account.next_nonce)
            try:
                yield slot
            finally:
                account.next_nonce = slot.nonce + 1 if slot.committed else None
        finally:
            account.lock.release()
