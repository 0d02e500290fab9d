"""Budgets never overspend under concurrency: threads and several OS processes, both stores.

64 concurrent authorizations of $20 against a $1,000 daily budget must yield exactly 50
reservations, 14 denials for budget, and posted + pending equal to the sum authorized.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from tests.fakes import FakeClock
from tests.orgs import cross_wallet_org

import treasurer
from treasurer.domain.errors import InvalidState

NOON = datetime(2026, 6, 15, 16, 0, tzinfo=UTC)
AGENT_KEY = "agent:agent_a:budget:day|day:2026-06-15|"


def _authorize_many(url: str, count: int, start: threading.Barrier | None = None) -> list[str]:
    """Fire ``count`` $20 authorizations from threads; return each result's state."""
    gov = treasurer.open(url, clock=FakeClock(NOON), migrate=False)
    wallets = ["w1", "w2"]

    def one(i: int) -> str:
        if start is not None:
            start.wait()
        result = gov.authorize(agent="agent_a", wallet=wallets[i % 2], amount="20.00", asset="USDC")
        return result.state.value if result.allowed else ",".join(result.codes)

    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(one, range(count)))
    finally:
        gov.close()


def _worker(url: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    out.put(_authorize_many(url, count))


def _assert_exact(url: str, outcomes: list[str]) -> None:
    assert len(outcomes) == 64
    assert outcomes.count("pending") == 50
    assert outcomes.count("agent_daily_budget_exceeded") == 14
    with treasurer.open(url, clock=FakeClock(NOON)) as gov:
        balance = gov.store.balances([AGENT_KEY])[AGENT_KEY]
        assert balance.posted_micros + balance.pending_micros == 50 * 20_000_000
        assert balance.pending_count == 50
        rows = gov.spend(by="agent")
        assert sum(r.pending_usd_micros for r in rows) == 1_000_000_000


def _prepare(url: str) -> None:
    with treasurer.open(url, clock=FakeClock(NOON)) as gov:
        gov.apply(cross_wallet_org())


@pytest.mark.slow
def test_threads_never_overspend(database_url: str) -> None:
    """64 threads released at once on one budget: exactly 50 succeed."""
    _prepare(database_url)
    outcomes = _authorize_many(database_url, 64, threading.Barrier(64))
    _assert_exact(database_url, outcomes)


@pytest.mark.slow
def test_processes_never_overspend(database_url: str) -> None:
    """Four OS processes of 16 threads each race on one budget: exactly 50 succeed."""
    _prepare(database_url)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(database_url, 16, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    outcomes = [state for _ in workers for state in queue.get(timeout=120)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    _assert_exact(database_url, outcomes)


def test_capture_and_void_race_take_effect_once(database_url: str, clock: FakeClock) -> None:
    """Sixteen racing capture/void calls on one authorization: exactly one effect."""
    _prepare(database_url)
    with treasurer.open(database_url, clock=FakeClock(NOON)) as gov:
        for _round in range(5):
            auth = gov.authorize(agent="agent_a", wallet="w1", amount="100.00", asset="USDC")
            barrier = threading.Barrier(16)

            def act(i: int, auth_id: str = auth.id, gate: threading.Barrier = barrier) -> str:
                gate.wait()
                try:
                    done = gov.capture(auth_id) if i % 2 else gov.void(auth_id)
                except InvalidState:
                    return "refused"
                return done.state.value

            with ThreadPoolExecutor(max_workers=16) as pool:
                results = list(pool.map(act, range(16)))
            final = gov.store.get_authorization(auth.id)
            assert final is not None
            assert final.state.value in {"captured", "voided"}
            assert set(results) <= {final.state.value, "refused"}
        balance = gov.store.balances([AGENT_KEY])[AGENT_KEY]
        captured = next(r for r in gov.spend(by="agent") if r.group == "agent_a")
        assert balance.pending_micros == 0
        assert balance.posted_micros == captured.captured_usd_micros
        assert balance.posted_count == captured.captured_count
