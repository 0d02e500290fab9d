"""The hot org budget on PostgreSQL: reservations per second when every spend claims one row.

What is measured is the store's reservation alone (``SqlStore.reserve``: the authorization,
its lines, its audit event and the four conditional budget updates, org last), from 1 and 2
processes (as 1 and 2 nodes) of 8 or 32 threads each. Deciding costs the same either way and
is left out, so the figure is the database path that the hot row limits, not the Python in
front of it.

Each thread spends as its own agent, so only the org and department rows are shared. Three
variants, measured in the same run, each run on a fresh schema:

- **one by one** (``batch_reservations=False``): one ``treasurer_reserve`` call and one
  commit per reservation; the org row stays locked from its update until that commit's WAL
  flush, so all processes together get about one reservation per flush on it;
- **batched** (the default): each process sends what its threads queued meanwhile as one
  ``treasurer_reserve_batch`` call (``adapters/sql/reserve_batch.py``);
- the **control**: one by one, with no org or department budget, so no row is shared: what
  this machine does without a hot row, which tells whether the hot row is what limits.

Then the exactness check, both ways: 2 processes x 32 threads race 10 reservations each of
$7 at a $1,000 org budget; exactly 142 fit and exactly $994 must be reserved.

Bounded: fixed counts per thread and a time cap; loopback PostgreSQL only.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tests.cluster import drop_pg_schema, fresh_pg_schema

import treasurer
from benchmarks.common import BIG, Latency, bench_org, median_of, percentile
from treasurer.adapters.sql.store import SqlStore
from treasurer.domain.authorization import Authorization
from treasurer.domain.budgets import BudgetClaim
from treasurer.service.governance import new_id
from treasurer.service.ports import AuditRecord

SHAPES = ((1, 32), (2, 8), (2, 32))  # (processes, threads each)
PER_THREAD = (150, 30)  # full, quick
CAP_S = 60.0
#: (label, batched, with the org and department budgets). Each thread spends as its own agent,
#: so only the org and department rows are shared; the control run has no shared row at all.
VARIANTS = (
    ("one by one", False, True),
    ("batched", True, True),
    ("no shared row (control, one by one)", False, False),
)
MODES = ("one by one", "batched")
AGENTS = 64


def _org(shared: bool, org_daily: str = BIG) -> dict[str, Any]:
    org = bench_org(org_daily=org_daily)
    if not shared:
        del org["org"]["budgets"]
        for department in org["departments"]:
            del department["budgets"]
    return org


@dataclass(frozen=True)
class Template:
    authorization: Authorization
    claims: tuple[BudgetClaim, ...]
    now: datetime


def _templates(url: str, amount: str) -> list[Template]:
    """Per agent: one real authorization (voided) and the claims of such a spend."""
    out = []
    with treasurer.open(url) as gov:
        for i in range(AGENTS):
            spend = {"agent": f"agent{i}", "wallet": f"w{i}", "amount": amount, "asset": "USDC"}
            decision = gov.check(**spend)
            result = gov.authorize(**spend)
            gov.void(result.id)
            out.append(Template(result.authorization, tuple(decision.claims), gov.clock.now()))
    return out


def _worker(
    url: str,
    batched: bool,
    threads: int,
    per_thread: int,
    templates: list[Template],
    start_at: float,
) -> tuple[list[float], int, float]:
    """One process: ``threads`` threads reserving ``per_thread`` times; returns latencies (of
    reservations that fit), how many did not fit, and the busy span in seconds."""
    store = SqlStore(url, batch_reservations=batched)
    audit = AuditRecord("authorization.created", "bench", "bench", {"bench": True})

    def thread(index: int) -> tuple[list[float], int]:
        template = templates[index % len(templates)]
        own: list[float] = []
        refused = 0
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = time.perf_counter() + CAP_S
        for _ in range(per_thread):
            if time.perf_counter() > deadline:
                break
            auth = replace(template.authorization, id=new_id("auth"), idempotency_key=None)
            began = time.perf_counter()
            outcome = store.reserve(auth, template.claims, audit, template.now)
            if outcome.authorization is None:
                refused += 1
            else:
                own.append(time.perf_counter() - began)
        return own, refused

    try:
        began = time.time()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(thread, range(threads)))
        span = time.time() - max(began, start_at)
    finally:
        store.close()
    return [x for own, _r in results for x in own], sum(r for _o, r in results), span


def _run(
    url: str,
    batched: bool,
    processes: int,
    threads: int,
    per_thread: int,
    templates: list[Template],
) -> tuple[Latency, int]:
    context = multiprocessing.get_context("spawn")
    start_at = time.time() + 2.0  # every process connected and waiting before the clock
    with context.Pool(processes) as pool:
        jobs = [
            pool.apply_async(
                _worker,
                (url, batched, threads, per_thread, templates[p::processes], start_at),
            )
            for p in range(processes)
        ]
        outs = [job.get(timeout=CAP_S + 60) for job in jobs]
    latencies = [x for lat, _r, _s in outs for x in lat]
    span = max(s for _l, _r, s in outs)
    refused = sum(r for _l, r, _s in outs)
    latency = Latency(
        len(latencies),
        span,
        percentile(latencies, 0.5) * 1000 if latencies else 0.0,
        percentile(latencies, 0.99) * 1000 if latencies else 0.0,
    )
    return latency, refused


@dataclass
class HotResults:
    #: (mode, processes, threads) → median run
    levels: dict[tuple[str, int, int], Latency]
    #: mode → (fitted, refused, reserved $)
    exact: dict[str, tuple[int, int, int]]
    repeats: int

    @property
    def ok(self) -> bool:
        return all(fit == 142 and reserved == 994 for fit, _r, reserved in self.exact.values())


def run(pg_base: str, repeats: int, quick: bool) -> HotResults:
    per_thread = PER_THREAD[1 if quick else 0]
    runs: dict[tuple[str, int, int], list[Latency]] = {}
    for _ in range(repeats):
        for processes, threads in SHAPES:
            for label, batched, shared in VARIANTS:
                schema, url = fresh_pg_schema(pg_base, "hot")
                try:
                    with treasurer.open(url) as gov:
                        gov.apply(_org(shared))
                    templates = _templates(url, "1.00")
                    latency, _refused = _run(
                        url, batched, processes, threads, per_thread, templates
                    )
                    runs.setdefault((label, processes, threads), []).append(latency)
                finally:
                    drop_pg_schema(pg_base, schema)
    exact = {}
    for mode in MODES:
        schema, url = fresh_pg_schema(pg_base, "hot")
        try:
            with treasurer.open(url) as gov:
                gov.apply(_org(True, org_daily="1000.00"))
            templates = _templates(url, "7.00")
            latency, refused = _run(url, mode == "batched", 2, 32, 10, templates)
            with treasurer.open(url, migrate=False) as gov:
                reserved = sum(r.pending_usd_micros for r in gov.spend(by="org"))
            exact[mode] = (latency.count, refused, reserved // 1_000_000)
        finally:
            drop_pg_schema(pg_base, schema)
    return HotResults({k: median_of(v) for k, v in runs.items()}, exact, repeats)


def render(results: HotResults) -> list[str]:
    control = VARIANTS[2][0]
    lines = [
        "## The hot org budget on PostgreSQL: reservations alone",
        "",
        "`SqlStore.reserve` (the authorization, its lines, its audit event and the four",
        "conditional budget updates, org last) called directly from 1 or 2 processes (as 1 or 2",
        "nodes) of 8 or 32 threads, each thread as its own agent, so the org and department",
        "rows are the only shared ones: the database path the hot row limits, without the",
        "decision in front of it. *one by one*: one `treasurer_reserve` call and one commit",
        "per reservation (the org row stays locked until each commit's WAL flush); *batched*",
        "(what nodes do): each process sends what its threads queued meanwhile as one",
        "`treasurer_reserve_batch` call. The control has no org or department budget, so no",
        f"shared row: the ceiling of this machine without the hot row. Median of {results.repeats}",
        "run(s); each run on a fresh schema.",
        "",
        "| processes x threads | one by one: /s, p50, p99 ms | batched: /s, p50, p99 ms "
        "| batched / one by one (/s, p50) | control: /s, p50, p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for processes, threads in SHAPES:
        one = results.levels[("one by one", processes, threads)]
        batched = results.levels[("batched", processes, threads)]
        free = results.levels[(control, processes, threads)]
        ratio = batched.per_s / one.per_s if one.per_s else 0.0
        p50 = batched.p50_ms / one.p50_ms if one.p50_ms else 0.0
        lines.append(
            f"| {processes} x {threads} | {_cell(one)} | {_cell(batched)} | "
            f"{ratio:.2f}x, {p50:.2f}x | {_cell(free)} |"
        )
    lines += ["", "Exactness at the limit (2 processes x 32 threads x 10 tries of $7, $1,000):", ""]
    for mode, (fit, refused, reserved) in results.exact.items():
        verdict = "exact" if fit == 142 and reserved == 994 else "**WRONG**"
        lines.append(
            f"- {mode}: {fit} reserved, {refused} refused, ${reserved} reserved "
            f"(exactly 142 fit: $994): {verdict}."
        )
    return lines


def _cell(latency: Latency) -> str:
    return f"{latency.per_s:,.0f}, {latency.p50_ms:.1f}, {latency.p99_ms:.1f}"


def summary(results: HotResults) -> str:
    """One line for the console."""
    ratios = [
        results.levels[("batched", p, t)].per_s / results.levels[("one by one", p, t)].per_s
        for p, t in SHAPES
    ]
    return f"hot budget: batched / one by one = {statistics.median(ratios):.2f}x (median shape)"
