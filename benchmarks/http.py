"""HTTP ``POST /v1/authorizations`` against real ``treasurer serve`` processes.

Deployments measured: one node on SQLite, one node on PostgreSQL, two nodes on one PostgreSQL
database (clients spread over the nodes round-robin, as a load balancer would). Each run starts
a fresh deployment (``tests/cluster.py``: ``treasurer init``, then the nodes on free loopback
ports), applies the bench org (four covering budgets per spend: wallet, agent, department, org)
and creates one agent session per client, then drives it at 1, 16 and 64 concurrent clients
from a separate load-generator process (``benchmarks/loadgen.py``: asyncio over raw keep-alive
sockets, tens of microseconds of CPU per request, so it leaves the cores to the servers).

With ``baseline`` (a ``src`` directory of the code before a change), every run is repeated on
that code too, interleaved with the current one, so before and after meet the same machine
state; compare them as ratios.

Also measured: the hot org budget (64 clients through two PostgreSQL nodes, all on one agent
and wallet, so all four budget rows are shared, against an org budget that runs out mid-run:
what it allows must be exactly what fits), the overspend check (64 clients x 4 tries of $7
against a $1,000 org budget: exactly 142 fit), start-up time and memory per node.

Bounded: a fixed number of requests per client and a time cap per level; every process is
stopped through its own handle. Loopback only.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from tests.cluster import Cluster, drop_pg_schema, fresh_pg_schema, postgres_cpu_s, running_cluster

from benchmarks.common import Latency, bench_org, median_of, percentile
from benchmarks.loadgen import Plan

CLIENTS = (1, 16, 64)
#: No level runs longer than this, whatever the request counts (the load stops by itself).
LEVEL_CAP_S = 60.0
#: Requests per client at each level (full run, quick run).
PER_CLIENT = {1: (600, 100), 16: (100, 20), 64: (40, 8)}
WARMUP_PER_CLIENT = 5
OVERSPEND = {"clients": 64, "tries": 4, "amount": "7.00", "limit": "1000.00"}
#: The hot case: clients, requests per client (full, quick), amount, and the org budget that
#: runs out among them (full, quick).
HOT_CLIENTS = 64
HOT_PER_CLIENT = (40, 10)
HOT_AMOUNT = "1.00"
HOT_LIMIT = ("2500.00", "600.00")  # all but the last few dozen fit: the denial path, which
#: reads the per-wallet breakdown to explain itself, stays out of the throughput figure
DEPLOYMENTS = ("SQLite, 1 node", "PostgreSQL, 1 node", "PostgreSQL, 2 nodes")

AIMS = {"ratio_2_nodes": 1.3, "p99_64_ms": 50.0, "idle_mib": 100.0, "startup_s": 1.0}
#: Why the two-node aims depend on CPU more than on the database (said under the ratios).
CPU_NOTE = [
    "The nodes, PostgreSQL and the load generator share the same two cores, and a node is one",
    "Python process: a second node can add at most the CPU the first leaves idle, so the",
    "two-node ratio is bounded by about 2 x node CPU / (node + PostgreSQL + load generator CPU)",
    "per decision (from the CPU column), and a busy machine (see the load average above) takes",
    "its share first. At 64 clients in a closed loop, p99 < 50 ms needs well over 1,280",
    'decisions/s. "Where a node\'s time goes" below shows what one decision costs a node.',
]


@contextmanager
def deployment(name: str, pg_base: str | None, source: Path | None) -> Iterator[Cluster]:
    """A fresh ``name`` deployment (its own data directory, and schema on PostgreSQL)."""
    root = Path(tempfile.mkdtemp(prefix="treasurer-bench-"))
    nodes = 2 if "2 nodes" in name else 1
    schema = url = None
    try:
        if name.startswith("PostgreSQL"):
            if pg_base is None:
                raise RuntimeError("PostgreSQL deployments need a PostgreSQL URL")
            schema, url = fresh_pg_schema(pg_base, "bench")
        with running_cluster(root, url, nodes, source=source) as cluster:
            yield cluster
    finally:
        if schema is not None and pg_base is not None:
            drop_pg_schema(pg_base, schema)
        shutil.rmtree(root, ignore_errors=True)


def prepare(cluster: Cluster, org: dict[str, Any], agents: int) -> list[str]:
    """Apply ``org`` and create one session per agent (``agent0``..); returns their tokens."""
    with httpx.Client(base_url=cluster.urls[0], headers=cluster.admin, timeout=30.0) as admin:
        applied = admin.post("/v1/org", json=org)
        if applied.status_code != 200:
            raise RuntimeError(f"POST /v1/org: {applied.status_code} {applied.text}")
        tokens = []
        for i in range(agents):
            created = admin.post(f"/v1/agents/agent{i}/sessions", json={"name": "bench"})
            if created.status_code != 201:
                raise RuntimeError(f"session for agent{i}: {created.status_code} {created.text}")
            tokens.append(str(created.json()["token"]))
        return tokens


# -- the load ----------------------------------------------------------------------------------
@dataclass
class Level:
    latency: Latency
    errors: int
    #: CPU per request: all nodes together, PostgreSQL (every backend), the load generator; ms.
    server_cpu_ms: float = 0.0
    postgres_cpu_ms: float = 0.0
    client_cpu_ms: float = 0.0
    decisions: list[dict[str, Any]] = field(default_factory=list, repr=False)


def drive(
    cluster: Cluster,
    tokens: list[str],
    bodies: list[dict[str, Any]],
    per_client: int,
    *,
    keep_decisions: bool = False,
) -> Level:
    """One load-generator process: client ``i`` sends ``bodies[i]`` with ``tokens[i]`` to node
    ``i mod nodes``, ``per_client`` times (or until the level's time cap)."""
    plan = Plan(
        urls=cluster.urls,
        tokens=tokens,
        bodies=bodies,
        per_client=per_client,
        cap_s=LEVEL_CAP_S,
        keep_decisions=keep_decisions,
    )
    nodes_cpu = sum(node.cpu_s() for node in cluster.nodes)
    pg_cpu = postgres_cpu_s()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen"],
        input=json.dumps(asdict(plan)),
        capture_output=True,
        text=True,
        timeout=LEVEL_CAP_S + 60,
        check=True,
    )
    nodes_cpu = sum(node.cpu_s() for node in cluster.nodes) - nodes_cpu
    pg_cpu = postgres_cpu_s() - pg_cpu
    out = json.loads(done.stdout)
    latencies: list[float] = out["latencies_s"]
    if not latencies:
        raise RuntimeError(f"no successful request ({out['statuses']})")
    count = len(latencies) + int(out["errors"])
    latency = Latency(
        len(latencies),
        float(out["elapsed_s"]),
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
    )
    return Level(
        latency,
        int(out["errors"]),
        nodes_cpu * 1000 / count,
        pg_cpu * 1000 / count,
        float(out["cpu_s"]) * 1000 / count,
        out["decisions"],
    )


def own_bodies(clients: int, amount: str = "1.00") -> list[dict[str, Any]]:
    return [{"wallet": f"w{i}", "amount": amount, "asset": "USDC"} for i in range(clients)]


# -- one run of one deployment -----------------------------------------------------------------
@dataclass
class Run:
    startup_s: float
    idle_mib: float
    loaded_mib: float
    levels: dict[int, Level]


def throughput_run(name: str, pg_base: str | None, source: Path | None, quick: bool) -> Run:
    with deployment(name, pg_base, source) as cluster:
        tokens = prepare(cluster, bench_org(), max(CLIENTS))
        time.sleep(0.2)  # let the nodes settle after the org load
        idle = statistics.fmean(node.rss_mib() for node in cluster.nodes)
        drive(cluster, tokens, own_bodies(max(CLIENTS)), WARMUP_PER_CLIENT)
        levels = {}
        for clients in CLIENTS:
            per_client = PER_CLIENT[clients][1 if quick else 0]
            levels[clients] = drive(cluster, tokens[:clients], own_bodies(clients), per_client)
        loaded = statistics.fmean(node.rss_mib() for node in cluster.nodes)
        startup = statistics.fmean(node.startup_s for node in cluster.nodes)
        return Run(startup, idle, loaded, levels)


@dataclass
class Budgeted:
    """A run against an org budget that runs out: what was allowed must be what fits."""

    level: Level
    allowed: int
    denied: int
    allowed_usd: Decimal
    reserved_usd: Decimal
    limit_usd: Decimal
    fits: int

    @property
    def ok(self) -> bool:
        return (
            self.reserved_usd <= self.limit_usd
            and self.reserved_usd == self.allowed_usd
            and self.allowed == self.fits
        )


def budgeted_run(
    name: str,
    pg_base: str | None,
    source: Path | None,
    *,
    clients: int,
    per_client: int,
    amount: str,
    limit: str,
    one_agent: bool,
) -> Budgeted:
    """``clients`` race for an org budget of ``limit`` in steps of ``amount`` (all on agent0's
    wallet with ``one_agent``, so every budget row is shared), with decisions kept."""
    with deployment(name, pg_base, source) as cluster:
        tokens = prepare(cluster, bench_org(org_daily=limit), 1 if one_agent else clients)
        if one_agent:
            tokens, bodies = tokens * clients, own_bodies(1, amount) * clients
        else:
            bodies = own_bodies(clients, amount)
        level = drive(cluster, tokens, bodies, per_client, keep_decisions=True)
        allowed = [d for d in level.decisions if d["state"] == "pending"]
        with httpx.Client(base_url=cluster.urls[-1], headers=cluster.admin, timeout=30.0) as admin:
            report = admin.get("/v1/spend", params={"group_by": "org"}).json()
        reserved = sum(
            (Decimal(r["pending_usd"]) + Decimal(r["captured_usd"]) for r in report["rows"]),
            Decimal(0),
        )
        fits = min(int(Decimal(limit) // Decimal(amount)), len(level.decisions))
        return Budgeted(
            level,
            allowed=len(allowed),
            denied=len(level.decisions) - len(allowed),
            allowed_usd=sum((Decimal(d["value_usd"]) for d in allowed), Decimal(0)),
            reserved_usd=reserved,
            limit_usd=Decimal(limit),
            fits=fits,
        )


# -- the suite ---------------------------------------------------------------------------------
@dataclass
class HttpResults:
    #: (deployment, "after" | "before") → runs
    runs: dict[tuple[str, str], list[Run]]
    hot: dict[str, list[Budgeted]]
    overspend: dict[str, list[Budgeted]]
    quick: bool
    hot_name: str

    def level(self, key: tuple[str, str], clients: int) -> Latency:
        return median_of([r.levels[clients].latency for r in self.runs[key]])

    def cpu(self, key: tuple[str, str], clients: int) -> tuple[float, float, float]:
        levels = [r.levels[clients] for r in self.runs[key]]
        return (
            statistics.median(x.server_cpu_ms for x in levels),
            statistics.median(x.postgres_cpu_ms for x in levels),
            statistics.median(x.client_cpu_ms for x in levels),
        )

    def errors(self, key: tuple[str, str], clients: int) -> int:
        return sum(r.levels[clients].errors for r in self.runs[key])

    def median(self, key: tuple[str, str], attribute: str) -> float:
        return float(statistics.median(getattr(r, attribute) for r in self.runs[key]))

    @property
    def overspend_ok(self) -> bool:
        return all(b.ok for runs in (*self.hot.values(), *self.overspend.values()) for b in runs)


def run(
    repeats: int, quick: bool, pg_base: str | None, baseline: Path | None = None
) -> HttpResults:
    variants: list[tuple[str, Path | None]] = [("after", None)]
    if baseline is not None:
        variants.insert(0, ("before", baseline))
    names = [d for d in DEPLOYMENTS if pg_base or d.startswith("SQLite")]
    runs: dict[tuple[str, str], list[Run]] = {}
    hot: dict[str, list[Budgeted]] = {}
    overspend: dict[str, list[Budgeted]] = {}
    hot_name = "PostgreSQL, 2 nodes" if pg_base else "SQLite, 1 node"
    q = 1 if quick else 0
    for _ in range(repeats):
        for name in names:
            for variant, source in variants:
                runs.setdefault((name, variant), []).append(
                    throughput_run(name, pg_base, source, quick)
                )
        for variant, source in variants:
            hot.setdefault(variant, []).append(
                budgeted_run(
                    hot_name,
                    pg_base,
                    source,
                    clients=HOT_CLIENTS,
                    per_client=HOT_PER_CLIENT[q],
                    amount=HOT_AMOUNT,
                    limit=HOT_LIMIT[q],
                    one_agent=True,
                )
            )
    for name in (names[0], names[-1]):
        overspend[name] = [
            budgeted_run(
                name,
                pg_base,
                None,
                clients=int(OVERSPEND["clients"]),
                per_client=int(OVERSPEND["tries"]),
                amount=str(OVERSPEND["amount"]),
                limit=str(OVERSPEND["limit"]),
                one_agent=False,
            )
        ]
    return HttpResults(runs, hot, overspend, quick, hot_name)


# -- the report --------------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render(results: HttpResults, quick: bool = False) -> list[str]:
    """The Markdown section for docs/benchmarks.md, each figure beside its aim."""
    n = len(next(iter(results.runs.values())))
    counts = ", ".join(f"{c} x {PER_CLIENT[c][1 if quick else 0]}" for c in CLIENTS)
    has_before = any(v == "before" for _n, v in results.runs)
    lines = [
        "## HTTP `POST /v1/authorizations` against `treasurer serve` nodes",
        "",
        f"Each figure is the median of {n} run(s); each run starts a fresh deployment",
        "(`treasurer init`, then the nodes on loopback ports; two nodes share one PostgreSQL",
        "database and clients alternate between them, as behind a load balancer) and applies",
        "the bench org (four covering budgets per spend: wallet, agent, department, org). The",
        "load generator is a separate process (`benchmarks/loadgen.py`: asyncio over raw",
        "keep-alive sockets, one connection and one agent session per client) on the same two",
        f"cores. Requests (clients x requests each): {counts}; every one an allowed $1.00",
        "decision. CPU columns are per request: all nodes together, every PostgreSQL backend,",
        "and the load generator.",
    ]
    if has_before:
        lines += [
            "",
            "*before* is the code of the last commit before this work (run from a copy of its",
            "`src`), *after* the code of this report; each run of one is followed by the same",
            "run of the other, so both meet the same machine state.",
        ]
    lines += [
        "",
        "| deployment | code | clients | decisions/s | p50 ms | p99 ms | errors "
        "| CPU ms: nodes, PostgreSQL, load generator |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for (name, variant), _runs in sorted(results.runs.items(), key=_order):
        for clients in CLIENTS:
            level = results.level((name, variant), clients)
            server, pg, gen = results.cpu((name, variant), clients)
            pg_text = f"{pg:.2f}" if name.startswith("PostgreSQL") else "-"
            lines.append(
                f"| {name} | {variant} | {clients} | {level.per_s:,.0f} | {level.p50_ms:.1f} | "
                f"{level.p99_ms:.1f} | {results.errors((name, variant), clients)} | "
                f"{server:.2f}, {pg_text}, {gen:.2f} |"
            )
    lines += ["", *_ratios(results), "", *CPU_NOTE]
    lines += ["", *_memory(results), "", *_budgeted(results)]
    return lines


def _order(item: tuple[tuple[str, str], list[Run]]) -> tuple[int, int]:
    (name, variant), _runs = item
    return DEPLOYMENTS.index(name), 0 if variant == "before" else 1


def _ratios(results: HttpResults) -> list[str]:
    lines = ["| figure | measured | aim | verdict |", "|---|---:|---|---|"]
    one, two = ("PostgreSQL, 1 node", "after"), ("PostgreSQL, 2 nodes", "after")
    if one in results.runs and two in results.runs:
        ratio = results.level(two, 64).per_s / results.level(one, 64).per_s
        p99 = results.level(two, 64).p99_ms
        lines.append(
            f"| two PostgreSQL nodes / one, decisions/s at 64 clients | {ratio:.2f}x | "
            f"≥ {AIMS['ratio_2_nodes']}x | {_verdict(ratio >= AIMS['ratio_2_nodes'])} |"
        )
        lines.append(
            f"| p99 at 64 clients, two PostgreSQL nodes | {p99:.1f} ms | "
            f"< {AIMS['p99_64_ms']:.0f} ms | {_verdict(p99 < AIMS['p99_64_ms'])} |"
        )
    for name in DEPLOYMENTS:
        before, after = (name, "before"), (name, "after")
        if before in results.runs and after in results.runs:
            for clients in (16, 64):
                ratio = results.level(after, clients).per_s / results.level(before, clients).per_s
                cpu = results.cpu(after, clients)[0] / results.cpu(before, clients)[0]
                lines.append(
                    f"| {name}, {clients} clients: after / before | {ratio:.2f}x decisions/s, "
                    f"{cpu:.2f}x node CPU per decision | | |"
                )
    return lines


def _memory(results: HttpResults) -> list[str]:
    lines = [
        "Start-up and memory per node (median over runs of the *after* code; VmRSS of each",
        "node process, averaged over the nodes of a deployment):",
        "",
        "| deployment | start-up s (process start → first `/health` 200) | idle MiB "
        "(org applied) | after the load MiB |",
        "|---|---:|---:|---:|",
    ]
    for name in DEPLOYMENTS:
        key = (name, "after")
        if key in results.runs:
            lines.append(
                f"| {name} | {results.median(key, 'startup_s'):.2f} | "
                f"{results.median(key, 'idle_mib'):.1f} | {results.median(key, 'loaded_mib'):.1f} |"
            )
    return lines


def _budgeted(results: HttpResults) -> list[str]:
    q = 1 if results.quick else 0
    lines = [
        "### The hot org budget",
        "",
        f"{HOT_CLIENTS} clients, all as one agent on one wallet (every budget row of the spend "
        f"is shared), {HOT_PER_CLIENT[q]} requests of ${HOT_AMOUNT} each, through the nodes of "
        f"the hot deployment ({results.hot_name}), against an org budget of ${HOT_LIMIT[q]} "
        f"that runs out during the run (exactly {int(Decimal(HOT_LIMIT[q]) // Decimal(HOT_AMOUNT))}"
        " fit). Median run by decisions/s:",
        "",
        "| code | decisions/s | p50 ms | p99 ms | allowed | reserved | overspend |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for variant, runs in results.hot.items():
        best = median_of([b.level.latency for b in runs])
        chosen = next(b for b in runs if b.level.latency is best)
        verdict = "none" if all(b.ok for b in runs) else "**OVERSPEND or mismatch**"
        lines.append(
            f"| {variant} | {best.per_s:,.0f} | {best.p50_ms:.1f} | {best.p99_ms:.1f} | "
            f"{chosen.allowed} | ${chosen.reserved_usd} | {verdict} (all {len(runs)} runs) |"
        )
    lines += ["", "### Overspend check over HTTP", ""]
    for name, runs in results.overspend.items():
        for b in runs:
            lines.append(
                f"- {name}: {OVERSPEND['clients']} clients x {OVERSPEND['tries']} tries of "
                f"${OVERSPEND['amount']} against a ${b.limit_usd:,} org budget: "
                f"{b.allowed} allowed (${b.allowed_usd}; exactly {b.fits} fit), "
                f"{b.denied} denied, ${b.reserved_usd} "
                f"reserved: {'no overspend' if b.ok else '**OVERSPEND or mismatch**'}."
            )
    return lines
