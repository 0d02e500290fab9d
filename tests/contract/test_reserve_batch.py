"""Batched reservations on PostgreSQL (``adapters/sql/reserve_batch.py``), at the edges.

The contract suite already races 64 writers through the batcher; these tests force what a
busy node meets only now and then: more reservations queued than one batch carries (batches of
two here, so every leader must keep leading until its own reservation is sent), and a batch
that mixes reservations that fit, that do not fit, and a replayed idempotency key, each of
which must get its own answer, and an item that fails for a reason of its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from tests.orgs import cross_wallet_org

import treasurer
from treasurer.adapters.sql import budget_store, reserve_batch
from treasurer.adapters.sql.reserve_batch import ReserveBatcher
from treasurer.service.ports import AuditRecord


def _small_batches(gov: treasurer.EmbeddedGovernance) -> None:
    gov.sql._batcher = ReserveBatcher(gov.sql.db, max_batch=2)


def test_every_queued_reservation_is_sent_once_with_its_own_answer(pg_url: str) -> None:
    """48 threads, batches of 2: every authorization is reserved exactly once and answered
    with its own balance rows; the budget rows hold exactly the sum."""
    with treasurer.open(pg_url) as gov:
        gov.apply(cross_wallet_org(agent_daily="100000.00", department_daily="100000.00"))
        _small_batches(gov)

        def spend(i: int) -> str:
            result = gov.authorize(
                agent="agent_a", wallet=("w1", "w2")[i % 2], amount="2.00", asset="USDC"
            )
            assert result.allowed, result.codes
            return result.id

        with ThreadPoolExecutor(48) as pool:
            ids = list(pool.map(spend, range(48)))
        assert len(set(ids)) == 48
        report = {row.group: row for row in gov.spend(by="agent")}
        assert report["agent_a"].pending_usd_micros == 96_000_000
        check = gov.check(agent="agent_a", wallet="w1", amount="0.01", asset="USDC")
        rows = gov.store.balances([claim.key for claim in check.claims])
        agent_row = next(b for k, b in rows.items() if k.startswith("agent:"))
        assert (agent_row.pending_micros, agent_row.pending_count) == (96_000_000, 48)


def test_a_batch_answers_fits_misses_and_replays_each_in_its_slot(pg_url: str) -> None:
    """$100 a day for agent_a: 32 threads race $7 spends with 16 idempotency keys (each key
    sent twice): exactly 14 keys fit, each key has one authorization, and both sends of a key
    get the same answer."""
    with treasurer.open(pg_url) as gov:
        gov.apply(cross_wallet_org(agent_daily="100.00", department_daily="100000.00"))
        _small_batches(gov)

        def spend(i: int) -> tuple[str, str, bool]:
            result = gov.authorize(
                agent="agent_a",
                wallet="w1",
                amount="7.00",
                asset="USDC",
                idempotency_key=f"k{i % 16}",
            )
            return f"k{i % 16}", result.id, result.allowed

        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(spend, range(32)))
        by_key: dict[str, set[tuple[str, bool]]] = {}
        for key, ident, allowed in answers:
            by_key.setdefault(key, set()).add((ident, allowed))
        assert all(len(seen) == 1 for seen in by_key.values()), by_key
        allowed = [key for key, seen in by_key.items() if next(iter(seen))[1]]
        assert len(allowed) == 14  # 14 x $7 = $98 of $100
        report = {row.group: row for row in gov.spend(by="agent")}
        assert report["agent_a"].pending_usd_micros == 98_000_000


def test_an_item_that_fails_on_its_own_fails_alone(pg_url: str) -> None:
    """One batch of a sound reservation and a broken one (an amount PostgreSQL cannot read):
    the batch fails whole, is sent again item by item, the sound one is reserved and the
    broken one fails with its own error; nothing of it stays."""
    with treasurer.open(pg_url) as gov:
        gov.apply(cross_wallet_org())
        spend = {"agent": "agent_a", "wallet": "w1", "amount": "3.00", "asset": "USDC"}
        claims = gov.check(**spend).claims
        template = gov.authorize(**spend).authorization
        gov.void(template.id)
        audit = AuditRecord("authorization.created", "test", "test", {})
        now = gov.clock.now()
        jobs = []
        for name in ("sound", "broken"):
            auth = replace(template, id=f"auth_{name}", idempotency_key=None)
            jobs.append(reserve_batch._Job(budget_store.batch_item(auth, claims, audit, now)[1]))
        jobs[1].item.claims[0]["x"] = "not a number"
        ReserveBatcher(gov.sql.db)._send(jobs)
        assert jobs[0].error is None and len(jobs[0].rows) == len(claims)
        assert getattr(jobs[1].error, "sqlstate", None) == "22P02", jobs[1].error
        assert gov.store.get_authorization("auth_sound") is not None
        assert gov.store.get_authorization("auth_broken") is None
