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

**Several nodes** sending from one address need more than a process lock: each would count on
its own and two would sign the same nonce. With a :class:`NonceLedger` (the deployment's
database, ``adapters/sql/nonce_ledger.py``) the rule becomes *a nonce is taken and broadcast
under the address's row lock*: the ledger holds the next nonce every node agrees on, locked
from allocation to broadcast; unknown (``None``) after a send whose outcome is unclear, so the
next sender, on whichever node, re-reads the chain.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Final, Protocol

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
class SharedNonce:
    """An address's next nonce as the ledger holds it; ``next`` is what the holder leaves."""

    next: int | None


class NonceLedger(Protocol):
    """Next nonces shared by every node of a deployment, one locked entry per address."""

    def hold(self, network: str, address: str) -> AbstractContextManager[SharedNonce]:
        """Lock ``address``'s entry for the ``with`` body (waiting for other holders) and
        store the ``next`` the body leaves, also when the body raises."""
        ...


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
        ledger: NonceLedger | None = None,
        network: str = "",
    ) -> None:
        self._pending_count = pending_count
        self._lock_timeout_s = lock_timeout_s
        self._ledger = ledger
        self._network = network
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
            if self._ledger is None:
                if account.next_nonce is None:
                    account.next_nonce = self._pending_count(address)
                slot = NonceSlot(account.next_nonce)
                try:
                    yield slot
                finally:
                    account.next_nonce = slot.nonce + 1 if slot.committed else None
            else:
                with self._ledger.hold(self._network, address.lower()) as shared:
                    start = self._pending_count(address) if shared.next is None else shared.next
                    slot = NonceSlot(start)
                    try:
                        yield slot
                    finally:
                        shared.next = slot.nonce + 1 if slot.committed else None
        finally:
            account.lock.release()
