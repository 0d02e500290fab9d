"""HTTP ``POST /v1/authorizations`` against a real ``treasurer serve`` process on SQLite.

Each repeat starts one server (``treasurer init`` in a temporary data directory, then
``treasurer serve`` on a free loopback port), measures its start-up time (process start to the
first ``/health`` 200) and its idle memory (VmRSS from ``/proc/<pid>/status`` with the bench
org applied, before any load), then drives it from this process (the load generator; httpx
sync clients, one thread and one keep-alive connection per client, each with its own agent
session) at 1, 16 and 64 concurrent clients. A second server per repeat runs the overspend
check: 64 clients race for a $1,000 org budget in $7 steps; what is reserved must stay within
the limit and equal the sum of what was allowed.

Bounded: a fixed number of requests per client and a time cap per level; every server is
stopped through its own process handle (terminate, bounded wait, then kill). Loopback only.

    python -m benchmarks.http [--quick] [--repeats N]     prints the figures
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import Latency, bench_org, median_of, percentile

HOST = "127.0.0.1"
CLIENTS = (1, 16, 64)
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: No level runs longer than this, whatever the request counts (the load stops by itself).
LEVEL_CAP_S = 60.0
#: Requests per client at each level (full run, quick run).
PER_CLIENT = {1: (3000, 200), 16: (300, 25), 64: (80, 8)}
WARMUP_REQUESTS = 200
OVERSPEND = {"clients": 64, "tries": 4, "amount": "7.00", "limit": "1000.00"}

AIMS = {
    "per_s": 2000.0,  # decisions/s (at 16 clients)
    "p99_16_ms": 20.0,
    "p99_64_ms": 50.0,
    "idle_mib": 100.0,
    "startup_s": 1.0,
}


# -- the server process ------------------------------------------------------------------------
def treasurer_command() -> list[str]:
    """The ``treasurer`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "treasurer"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from treasurer.bootstrap.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` (VmRSS in /proc/<pid>/status), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (/proc/<pid>/stat), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU time of this process (the load generator, all threads), seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Server:
    url: str
    pid: int
    admin: dict[str, str]
    startup_s: float
    process: subprocess.Popen[bytes] = field(repr=False)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the server we started, by its handle: terminate, bounded wait, then kill."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@contextmanager
def serve() -> Iterator[Server]:
    """``treasurer init`` then ``treasurer serve`` in a fresh data directory; stopped on exit."""
    data = Path(tempfile.mkdtemp(prefix="treasurer-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "TREASURER_DATA_DIR": str(data / "data"),
        "TREASURER_HOST": HOST,
        "TREASURER_PORT": str(port),
    }
    env.pop("TREASURER_DATABASE_URL", None)
    command = treasurer_command()
    log = data / "serve.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [*command, "init"], env=env, cwd=data, check=True, capture_output=True, timeout=120
        )
        token = (data / "data" / "admin.key").read_text().strip()
        with log.open("wb") as out:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*command, "serve"], env=env, cwd=data, stdout=out, stderr=subprocess.STDOUT
            )
        url = f"http://{HOST}:{port}"
        startup_s = _wait_for_health(url, process, log, started)
        yield Server(url, process.pid, {"Authorization": f"Bearer {token}"}, startup_s, process)
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(data, ignore_errors=True)


def _wait_for_health(
    url: str, process: subprocess.Popen[bytes], log: Path, started: float
) -> float:
    deadline = started + STARTUP_TIMEOUT_S
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"treasurer serve exited: {log.read_text()}")
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.005)
    raise RuntimeError(f"treasurer serve did not answer within {STARTUP_TIMEOUT_S} s")


def prepare(server: Server, org: dict[str, Any], agents: int) -> list[dict[str, str]]:
    """Apply ``org`` and create one session per agent (``agent0``..); returns their headers."""
    with httpx.Client(base_url=server.url, headers=server.admin, timeout=30.0) as admin:
        applied = admin.post("/v1/org", json=org)
        if applied.status_code != 200:
            raise RuntimeError(f"POST /v1/org: {applied.status_code} {applied.text}")
        sessions = []
        for i in range(agents):
            created = admin.post(f"/v1/agents/agent{i}/sessions", json={"name": "bench"})
            if created.status_code != 201:
                raise RuntimeError(f"session for agent{i}: {created.status_code} {created.text}")
            sessions.append({"Authorization": f"Bearer {created.json()['token']}"})
        return sessions


# -- the load ----------------------------------------------------------------------------------
@dataclass
class Level:
    latency: Latency
    errors: int
    #: CPU per decision: the server process's and the load generator's, milliseconds.
    server_cpu_ms: float = 0.0
    client_cpu_ms: float = 0.0


def drive(
    server: Server,
    sessions: list[dict[str, str]],
    clients: int,
    per_client: int,
    amount: str = "1.00",
    cap_s: float = LEVEL_CAP_S,
) -> tuple[Level, list[dict[str, Any]]]:
    """``clients`` threads, each with its own session and connection, POST authorizations
    until ``per_client`` are done or ``cap_s`` has passed. Returns the latencies (successful
    decisions only) and every decision body."""
    start = threading.Barrier(clients + 1, timeout=60)
    results: list[tuple[list[float], list[dict[str, Any]], int]] = [([], [], 0)] * clients
    deadline = [0.0]

    def client(index: int) -> None:
        body = {"wallet": f"w{index}", "amount": amount, "asset": "USDC"}
        own: list[float] = []
        decisions: list[dict[str, Any]] = []
        errors = 0
        with httpx.Client(
            base_url=server.url,
            headers=sessions[index],
            timeout=30.0,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        ) as http:
            http.get("/health")  # open the connection before the clock starts
            start.wait()
            for _ in range(per_client):
                if time.perf_counter() > deadline[0]:
                    break
                began = time.perf_counter()
                try:
                    response = http.post("/v1/authorizations", json=body)
                except httpx.HTTPError:
                    errors += 1
                    continue
                elapsed = time.perf_counter() - began
                if response.status_code == 201:
                    own.append(elapsed)
                    decisions.append(response.json())
                else:
                    errors += 1
        results[index] = (own, decisions, errors)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + cap_s
    server_cpu, client_cpu = cpu_s(server.pid), own_cpu_s()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout=cap_s + 60)
    elapsed = time.perf_counter() - began
    server_cpu, client_cpu = cpu_s(server.pid) - server_cpu, own_cpu_s() - client_cpu
    latencies = [x for own, _d, _e in results for x in own]
    decisions = [d for _o, own_decisions, _e in results for d in own_decisions]
    errors = sum(e for _o, _d, e in results)
    if not latencies:
        raise RuntimeError(f"no successful request at {clients} clients ({errors} errors)")
    latency = Latency(
        len(latencies),
        elapsed,
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
    )
    count = len(latencies) + errors
    level = Level(latency, errors, server_cpu * 1000 / count, client_cpu * 1000 / count)
    return level, decisions


# -- one repeat --------------------------------------------------------------------------------
@dataclass
class Overspend:
    allowed: int
    denied: int
    allowed_usd: Decimal
    reserved_usd: Decimal
    limit_usd: Decimal

    @property
    def ok(self) -> bool:
        return self.reserved_usd <= self.limit_usd and self.reserved_usd == self.allowed_usd


@dataclass
class Repeat:
    startup_s: float
    idle_mib: float
    loaded_mib: float
    levels: dict[int, Level]
    overspend: Overspend


def _throughput(quick: bool) -> tuple[float, float, float, dict[int, Level]]:
    with serve() as server:
        sessions = prepare(server, bench_org(), max(CLIENTS))
        time.sleep(0.2)  # let the server settle after the org load
        idle = rss_mib(server.pid)
        drive(server, sessions, 1, 20 if quick else WARMUP_REQUESTS)
        levels = {}
        for clients in CLIENTS:
            per_client = PER_CLIENT[clients][1 if quick else 0]
            levels[clients], _ = drive(server, sessions, clients, per_client)
        return server.startup_s, idle, rss_mib(server.pid), levels


def _overspend() -> Overspend:
    clients, tries = OVERSPEND["clients"], OVERSPEND["tries"]
    assert isinstance(clients, int) and isinstance(tries, int)
    limit = str(OVERSPEND["limit"])
    with serve() as server:
        sessions = prepare(server, bench_org(org_daily=limit), clients)
        _level, decisions = drive(server, sessions, clients, tries, str(OVERSPEND["amount"]))
        allowed = [d for d in decisions if d["state"] == "pending"]
        with httpx.Client(base_url=server.url, headers=server.admin, timeout=30.0) as admin:
            report = admin.get("/v1/spend", params={"group_by": "org"}).json()
        reserved = sum(
            (Decimal(r["pending_usd"]) + Decimal(r["captured_usd"]) for r in report["rows"]),
            Decimal(0),
        )
        return Overspend(
            allowed=len(allowed),
            denied=len(decisions) - len(allowed),
            allowed_usd=sum((Decimal(d["value_usd"]) for d in allowed), Decimal(0)),
            reserved_usd=reserved,
            limit_usd=Decimal(limit),
        )


@dataclass
class HttpResults:
    repeats: list[Repeat]

    def median(self, attribute: str) -> float:
        return float(statistics.median(getattr(r, attribute) for r in self.repeats))

    def spread(self, attribute: str, unit: str, digits: int) -> str:
        """``median unit`` and, over several runs, ``(min to max)``."""
        values = [getattr(r, attribute) for r in self.repeats]
        text = f"{statistics.median(values):.{digits}f} {unit}"
        if len(values) > 1:
            text += f" ({min(values):.{digits}f} to {max(values):.{digits}f})"
        return text

    def level(self, clients: int) -> Latency:
        return median_of([r.levels[clients].latency for r in self.repeats])

    def cpu_ms(self, clients: int) -> tuple[float, float]:
        """Median CPU per decision: (server, load generator), milliseconds."""
        levels = [r.levels[clients] for r in self.repeats]
        return (
            statistics.median(x.server_cpu_ms for x in levels),
            statistics.median(x.client_cpu_ms for x in levels),
        )

    def errors(self, clients: int) -> int:
        return sum(r.levels[clients].errors for r in self.repeats)

    @property
    def overspend_ok(self) -> bool:
        return all(r.overspend.ok for r in self.repeats)


def run(repeats: int, quick: bool) -> HttpResults:
    out = []
    for _ in range(repeats):
        startup, idle, loaded, levels = _throughput(quick)
        out.append(Repeat(startup, idle, loaded, levels, _overspend()))
    return HttpResults(out)


# -- the report --------------------------------------------------------------------------------
def _verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


def render(results: HttpResults, quick: bool = False) -> list[str]:
    """The Markdown section for docs/benchmarks.md, each figure beside its aim."""
    n = len(results.repeats)
    counts = ", ".join(f"{c} x {PER_CLIENT[c][1 if quick else 0]}" for c in CLIENTS)
    lines = [
        "## HTTP `POST /v1/authorizations`, one `treasurer serve` process on SQLite",
        "",
        f"Each figure is the median of {n} run(s); each run starts a fresh server",
        "(`treasurer init`, then `treasurer serve` on a loopback port) and applies the bench",
        "org (four covering budgets per spend). The load generator is a separate process",
        "(httpx, one thread, one keep-alive connection and one agent session per client) on",
        "the same cores as the server, so it takes CPU from the server under test. Requests",
        f"(clients x requests each): {counts}; every request is an allowed $1.00 decision.",
        "",
        "| clients | decisions/s | p50 ms | p99 ms | errors | server CPU ms/decision "
        "| load-generator CPU ms/request | aim | verdict |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for clients in CLIENTS:
        level = results.level(clients)
        aim, ok = "", None
        if clients == 16:
            aim = "≥ 2,000/s and p99 < 20 ms"
            ok = level.per_s >= AIMS["per_s"] and level.p99_ms < AIMS["p99_16_ms"]
        elif clients == 64:
            aim = "p99 < 50 ms"
            ok = level.p99_ms < AIMS["p99_64_ms"]
        server_cpu, client_cpu = results.cpu_ms(clients)
        lines.append(
            f"| {clients} | {level.per_s:,.0f} | {level.p50_ms:.2f} | {level.p99_ms:.2f} | "
            f"{results.errors(clients)} | {server_cpu:.2f} | {client_cpu:.2f} | {aim} | "
            f"{'' if ok is None else _verdict(ok)} |"
        )
    startup = results.median("startup_s")
    idle = results.median("idle_mib")
    server_cpu_16 = results.cpu_ms(16)[0]
    if server_cpu_16 > 0:  # zero when workers run in child processes (not measured)
        lines += [
            "",
            f"At {server_cpu_16:.2f} ms of server CPU per decision (16 clients), one server "
            "process",
            f"cannot exceed about {1000 / server_cpu_16:,.0f} decisions/s per core of Python time,",
            "whatever the load generator does.",
        ]
    lines += [
        "",
        "| figure | measured (median, min to max) | aim | verdict |",
        "|---|---:|---|---|",
        "| start-up (process start → first `/health` 200) | "
        f"{results.spread('startup_s', 's', 2)} | < 1 s | "
        f"{_verdict(startup < AIMS['startup_s'])} |",
        "| idle memory (VmRSS, org applied, before load) | "
        f"{results.spread('idle_mib', 'MiB', 1)} | < 100 MiB | "
        f"{_verdict(idle < AIMS['idle_mib'])} |",
        "| memory after the load (VmRSS, for reference) | "
        f"{results.spread('loaded_mib', 'MiB', 1)} | | |",
        "",
        "### Overspend check over HTTP",
        "",
    ]
    for i, r in enumerate(results.repeats, 1):
        o = r.overspend
        lines.append(
            f"- run {i}: {OVERSPEND['clients']} clients x {OVERSPEND['tries']} tries of "
            f"${OVERSPEND['amount']} against a ${o.limit_usd:,} org budget: {o.allowed} allowed "
            f"(${o.allowed_usd}), {o.denied} denied, ${o.reserved_usd} reserved: "
            f"{'no overspend' if o.ok else '**OVERSPEND or mismatch**'}."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    args = parser.parse_args()
    results = run(args.repeats, args.quick)
    print("\n".join(render(results, args.quick)))
    if not results.overspend_ok:
        sys.exit("overspend check failed")


if __name__ == "__main__":
    main()
