"""Shared benchmark plumbing: a bench org with four covering budgets, timing, machine facts."""

from __future__ import annotations

import os
import platform
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

#: Budgets large enough that the load never hits them, except where a bench wants it to.
BIG = "1000000000.00"


def bench_org(*, agent_daily: str = BIG, org_daily: str = BIG) -> dict[str, Any]:
    """One department, 64 agents with one wallet each plus a shared agent: four covering
    budgets per spend (wallet, agent, department, org)."""
    usdc = {
        "id": "base:USDC",
        "chain": "base",
        "symbol": "USDC",
        "decimals": 6,
        "address": "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
        "stablecoin": True,
        "price": {"source": "fixed", "usd": "1.00"},
    }
    agents = []
    for i in range(65):
        agents.append(
            {
                "id": f"agent{i}",
                "department": "ops",
                "budgets": [{"window": "day", "limit_usd": agent_daily}],
                "wallets": [
                    {
                        "id": f"w{i}",
                        "chain": "base",
                        "address": f"0x{i + 1:040x}",
                        "custody": "external",
                        "vendor": "other",
                        "budgets": [{"window": "day", "limit_usd": BIG}],
                    }
                ],
            }
        )
    return {
        "version": 1,
        "org": {
            "id": "bench",
            "timezone": "UTC",
            "budgets": [{"window": "day", "limit_usd": org_daily}],
        },
        "assets": [usdc],
        "departments": [{"id": "ops", "budgets": [{"window": "day", "limit_usd": BIG}]}],
        "agents": agents,
    }


@dataclass(frozen=True)
class Latency:
    count: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_clients(clients: int, per_client: int, call: Callable[[int, int], None]) -> Latency:
    """Run ``call(client, i)`` from ``clients`` threads, ``per_client`` times each."""
    latencies: list[float] = []

    def client(index: int) -> list[float]:
        own = []
        for i in range(per_client):
            started = time.perf_counter()
            call(index, i)
            own.append(time.perf_counter() - started)
        return own

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for own in pool.map(client, range(clients)):
            latencies.extend(own)
    elapsed = time.perf_counter() - started
    return Latency(
        len(latencies),
        elapsed,
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
    )


def median_of(runs: list[Latency]) -> Latency:
    """The run with the median throughput (figures of one real run, not a blend)."""
    ordered = sorted(runs, key=lambda r: r.per_s)
    return ordered[len(ordered) // 2]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        pg = subprocess.run(
            ["psql", "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pg = "psql not found"
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {pg}"
    )


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0
