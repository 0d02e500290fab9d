"""The EVM nonce ledger on PostgreSQL: one row per address, locked from allocation to broadcast.

Why a row lock held across the broadcast: the nonce a node signs must be one no other node
signs, and it must reach the chain before the next one is handed out, or the chain sees a gap.
``SELECT … FOR UPDATE`` makes every other node's send from the address wait at the row until
this one commits what it left (``next_nonce``), which costs one signature and one
``eth_sendRawTransaction`` of waiting, the same as the process lock within one node.

What the holder leaves is committed even when its body raises (a refused or failed send):
the allocator then leaves NULL, so the next sender re-reads the chain rather than trusting a
count that a rejection may have proved wrong. ``lock_timeout`` bounds the wait, as the
process lock's timeout does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import psycopg.errors

from treasurer.adapters.chains.evm_errors import ChainUnavailable
from treasurer.adapters.chains.evm_nonces import SharedNonce
from treasurer.adapters.sql.pg_db import PostgresDatabase

LOCK_TIMEOUT_S: Final = 60


class SqlNonceLedger:
    """:class:`~treasurer.adapters.chains.evm_nonces.NonceLedger` over ``evm_nonces``."""

    def __init__(self, db: PostgresDatabase, *, lock_timeout_s: int = LOCK_TIMEOUT_S) -> None:
        self._db = db
        self._lock_timeout_s = lock_timeout_s

    @contextmanager
    def hold(self, network: str, address: str) -> Iterator[SharedNonce]:
        failure: BaseException | None = None
        key = {"network": network, "address": address}
        with self._db.transaction() as tx:
            tx.execute(f"SET LOCAL lock_timeout = '{int(self._lock_timeout_s)}s'")
            tx.execute(
                "INSERT INTO evm_nonces (network, address, next_nonce) "
                "VALUES (:network, :address, NULL) ON CONFLICT DO NOTHING",
                key,
            )
            try:
                row = tx.one(
                    "SELECT next_nonce FROM evm_nonces "
                    "WHERE network = :network AND address = :address FOR UPDATE",
                    key,
                )
            except psycopg.errors.LockNotAvailable as exc:
                raise ChainUnavailable(
                    f"sends from {address} are queued for more than "
                    f"{self._lock_timeout_s}s on other nodes"
                ) from exc
            assert row is not None  # inserted above if it was missing
            shared = SharedNonce(None if row[0] is None else int(row[0]))
            try:
                yield shared
            except BaseException as exc:  # recorded below, then raised after the commit
                failure = exc
            tx.execute(
                "UPDATE evm_nonces SET next_nonce = :next "
                "WHERE network = :network AND address = :address",
                {**key, "next": shared.next},
            )
        if failure is not None:
            raise failure
