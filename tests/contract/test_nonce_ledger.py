"""Nonces shared by nodes on PostgreSQL: two allocators (two nodes) never sign the same nonce.

The chain is a fake that behaves as an EVM node does for one sender: it accepts only the next
nonce, and its pending count is how many it accepted. Each allocator has its own database
pool, as each node has.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from treasurer.adapters.chains.evm_nonces import NonceAllocator, NonceLedger
from treasurer.adapters.sql.db import postgres_conninfo_from_url
from treasurer.adapters.sql.migrate import migrate
from treasurer.adapters.sql.nonce_ledger import SqlNonceLedger
from treasurer.adapters.sql.pg_db import PostgresDatabase

pytestmark = pytest.mark.postgres
ADDRESS = "0xAbC0000000000000000000000000000000000001"


class Chain:
    """One sender's nonces as a node sees them: the next one is accepted, any other refused."""

    def __init__(self) -> None:
        self.accepted: list[int] = []
        self.refused: list[int] = []
        self._lock = threading.Lock()

    def pending_count(self, _address: str) -> int:
        with self._lock:
            return len(self.accepted)

    def broadcast(self, nonce: int) -> bool:
        with self._lock:
            if nonce != len(self.accepted):
                self.refused.append(nonce)
                return False
            self.accepted.append(nonce)
            return True


def send(allocator: NonceAllocator, chain: Chain) -> bool:
    """Take a nonce and broadcast it, committing it only if the chain took it."""
    with allocator.reserve(ADDRESS) as slot:
        if chain.broadcast(slot.nonce):
            slot.commit()
            return True
        return False


@pytest.fixture
def ledgers(pg_url: str) -> Iterator[list[NonceLedger]]:
    """Two ledgers on one database, each with its own pool: the nodes' views."""
    migrate(pg_url)
    dbs = [PostgresDatabase(postgres_conninfo_from_url(pg_url), max_size=4) for _ in range(2)]
    try:
        yield [SqlNonceLedger(db) for db in dbs]
    finally:
        for db in dbs:
            db.close()


def test_without_a_ledger_two_nodes_clash(ledgers: list[NonceLedger]) -> None:
    """The control: counting in memory, the second node's count goes stale and clashes."""
    chain = Chain()
    a, b = (NonceAllocator(chain.pending_count) for _ in range(2))
    assert send(a, chain) and send(b, chain)
    assert not send(a, chain)  # a still counts 1, which b already used
    assert chain.refused == [1]


def test_with_the_ledger_nodes_take_turns_without_a_clash(ledgers: list[NonceLedger]) -> None:
    chain = Chain()
    a, b = (NonceAllocator(chain.pending_count, ledger=ledger, network="n") for ledger in ledgers)
    for allocator in (a, b, a, a, b, b, a):
        assert send(allocator, chain)
    assert chain.accepted == list(range(7)) and chain.refused == []


def test_concurrent_sends_through_two_nodes_use_every_nonce_once(
    ledgers: list[NonceLedger],
) -> None:
    """2 nodes x 6 threads x 10 sends from one address: nonces 0..119, each once, no refusal."""
    chain = Chain()
    nodes = [NonceAllocator(chain.pending_count, ledger=ledger, network="n") for ledger in ledgers]
    results: list[bool] = []

    def worker(allocator: NonceAllocator) -> None:
        for _ in range(10):
            results.append(send(allocator, chain))

    threads = [threading.Thread(target=worker, args=(node,)) for node in nodes for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [True] * 120
    assert chain.accepted == list(range(120)) and chain.refused == []


def test_after_a_failed_or_unclear_send_the_next_node_reads_the_chain(
    ledgers: list[NonceLedger],
) -> None:
    """A send that raised, or whose outcome is unknown (not committed), leaves the count unknown:
    the next sender, on the other node, asks the chain instead of trusting it."""
    chain = Chain()
    a, b = (NonceAllocator(chain.pending_count, ledger=ledger, network="n") for ledger in ledgers)
    assert send(a, chain)
    with pytest.raises(RuntimeError), a.reserve(ADDRESS) as slot:
        assert slot.nonce == 1
        raise RuntimeError("the signer failed")
    with b.reserve(ADDRESS) as slot:  # unclear: it reached the chain, but was not committed
        assert slot.nonce == 1
        assert chain.broadcast(slot.nonce)
    assert send(a, chain)  # a reads the chain: 2, not the 1 it would have counted
    assert chain.accepted == [0, 1, 2] and chain.refused == []


def test_a_node_waits_while_another_holds_the_address(ledgers: list[NonceLedger]) -> None:
    """The row lock spans the broadcast: the other node's send waits, then takes the next."""
    chain = Chain()
    a, b = (NonceAllocator(chain.pending_count, ledger=ledger, network="n") for ledger in ledgers)
    taken: list[int] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait(10)
        with b.reserve(ADDRESS) as slot:
            taken.append(slot.nonce)
            assert chain.broadcast(slot.nonce)
            slot.commit()

    thread = threading.Thread(target=other)
    thread.start()
    with a.reserve(ADDRESS) as slot:
        inside.set()
        thread.join(0.5)
        assert thread.is_alive() and taken == []  # b waits at the row
        assert chain.broadcast(slot.nonce)
        slot.commit()
    thread.join(10)
    assert taken == [1] and chain.accepted == [0, 1]
