"""The payment store contract, run against every store (SQLite file and PostgreSQL schema).

What the pipeline relies on: guarded transitions that happen once, idempotency keys unique per
agent, exact 256-bit amounts, the confirmer's work list, and outbox rows that commit (or not)
with the transition they announce.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from treasurer.adapters.sql.payment_store import SqlPaymentStore
from treasurer.adapters.sql.store import SqlStore
from treasurer.domain.money import MAX_UINT256
from treasurer.domain.payment import Notification, Payment, PaymentState, can_move

T0 = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(database_url: str) -> Iterator[SqlPaymentStore]:
    """A migrated payment store on the backend under test."""
    sql = SqlStore(database_url)
    sql.migrate()
    yield SqlPaymentStore(sql.db)
    sql.close()


def _payment(ident: str, *, key: str | None = None, at: datetime = T0) -> Payment:
    return Payment(
        id=ident,
        agent_id="agent_a",
        wallet_id="hot",
        chain="evm-local",
        asset_id="evm-local:DUSD",
        recipient="0x5555555555555555555555555555555555555555",
        amount=MAX_UINT256,
        state=PaymentState.CREATED,
        request_hash="h",
        created_at=at,
        updated_at=at,
        idempotency_key=key,
        fee_quote=MAX_UINT256 - 1,
        fee_quote_usd_micros=12,
    )


def test_insert_and_read_back_exactly(store: SqlPaymentStore) -> None:
    """Every field survives a round trip, 2^256-1 base units included."""
    payment = _payment("p1", key="k")
    assert store.insert(payment) == (payment, True)
    assert store.get("p1") == payment
    assert store.find_by_idempotency_key("agent_a", "k") == payment
    assert store.get("missing") is None


def test_idempotency_key_is_unique_per_agent(store: SqlPaymentStore) -> None:
    """A second insert under the same (agent, key) returns the first payment instead."""
    first = _payment("p1", key="k")
    store.insert(first)
    assert store.insert(_payment("p2", key="k")) == (first, False)
    assert store.insert(_payment("p3")) == (_payment("p3"), True)  # no key: no constraint
    assert store.insert(_payment("p4"))[1]


def test_transitions_are_guarded_and_happen_once(store: SqlPaymentStore) -> None:
    """Of racing writers moving ``created → broadcast``, exactly one succeeds."""
    store.insert(_payment("p1"))
    sent = replace(_payment("p1"), state=PaymentState.BROADCAST, tx_id="0xabc", raw_tx="0x02")

    def move(_: int) -> bool:
        return store.update(sent, PaymentState.CREATED)

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(move, range(16)))
    assert outcomes.count(True) == 1
    assert store.get("p1") == sent
    assert not store.update(replace(sent, state=PaymentState.FAILED), PaymentState.CREATED)


def test_outbox_row_commits_only_with_its_transition(store: SqlPaymentStore) -> None:
    """The notification is written with the transition, and not at all when it loses."""
    store.insert(_payment("p1"))
    sent = replace(_payment("p1"), state=PaymentState.BROADCAST, updated_at=T0)
    note = Notification("payment.notify", {"payment": "p1"})
    assert store.update(sent, PaymentState.CREATED, note)
    assert not store.update(sent, PaymentState.CREATED, note)
    rows = store.notifications(10)
    assert len(rows) == 1
    assert rows[0]["kind"] == "payment.notify"
    assert rows[0]["payload"] == {"payment": "p1"}
    assert rows[0]["created_at"] == T0 and rows[0]["delivered_at"] is None


def test_unfinished_lists_oldest_first_and_filters_states(store: SqlPaymentStore) -> None:
    """The confirmer's work list: unfinished payments only, oldest first, bounded."""
    for i, state in enumerate(PaymentState):
        payment = replace(_payment(f"p{i}", at=T0 + timedelta(seconds=10 - i)), state=state)
        store.insert(payment)
    unfinished = store.unfinished(10)
    assert {p.state for p in unfinished} == {PaymentState.CREATED, PaymentState.BROADCAST}
    assert [p.created_at for p in unfinished] == sorted(p.created_at for p in unfinished)
    assert len(store.unfinished(1)) == 1
    only = store.unfinished(10, frozenset({PaymentState.BROADCAST}))
    assert [p.state for p in only] == [PaymentState.BROADCAST]


def test_lifecycle_moves_one_way() -> None:
    """Final states have no way out; ``queued`` can still be claimed, cancelled or failed."""
    assert can_move(PaymentState.CREATED, PaymentState.BROADCAST)
    for after in (PaymentState.CREATED, PaymentState.CANCELLED, PaymentState.FAILED):
        assert can_move(PaymentState.QUEUED, after)
    assert not can_move(PaymentState.QUEUED, PaymentState.BROADCAST)  # only once claimed
    assert not can_move(PaymentState.BROADCAST, PaymentState.CREATED)
    finals = (PaymentState.CONFIRMED, PaymentState.FAILED, PaymentState.DENIED)
    for final in (*finals, PaymentState.CANCELLED):
        assert not any(can_move(final, other) for other in PaymentState)
