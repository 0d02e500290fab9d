"""Where a ``treasurer serve`` node's time goes under load: py-spy, stacks sorted into buckets.

One node on PostgreSQL is driven at 64 clients (as in the HTTP suite) while ``py-spy record
--gil`` samples it: with ``--gil`` only the thread holding the GIL is sampled, so the samples
are the node's Python CPU time (C code that releases the GIL, such as libpq waiting on a
socket, is not in them). Each sampled stack is put in the first bucket whose rule matches, and
a bucket's share times the node's CPU per decision gives milliseconds per decision.

py-spy comes with the dev dependencies (``pip install -e '.[dev]'``); without it the section
says so and nothing else is lost.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import bench_org

SAMPLE_RATE_HZ = 250
SECONDS = 8
#: Bucket rules, checked in order against a whole stack (root to leaf, one string).
Rule = tuple[str, Callable[[str], bool]]


def _has(*needles: str) -> Callable[[str], bool]:
    return lambda stack: any(needle in stack for needle in needles)


_DB = _has("psycopg", "pg_db.py")
RULES: list[Rule] = [
    ("background loops: audit sealing", lambda s: "run_every" in s and "audit" in s),
    ("background loops: webhook notifier", lambda s: "run_every" in s and "notify" in s),
    ("background loops: others (expiry, payments, queue)", _has("run_every")),
    ("authentication: session lookup (database)", lambda s: "Authenticator" in s and _DB(s)),
    ("authentication: the rest", _has("Authenticator", "credentials.py")),
    ("database: config version check", lambda s: "config_cache.py" in s and _DB(s)),
    ("database: balance snapshot", lambda s: "balances" in s and _DB(s)),
    ("database: reservation (batched call)", lambda s: "reserve" in s and _DB(s)),
    ("database: other", _DB),
    ("reservation: building the batch (JSON)", _has("reserve_batch.py", "batch_item")),
    ("decision: domain and use case", _has("treasurer/domain/", "governance.py", "requests.py")),
    (
        "pydantic and JSON (request body, response model)",
        _has("serialize_response", "views.py", "pydantic"),
    ),
    ("request thread: FastAPI dependencies, body validation", _has("_run_sync_endpoint")),
    ("thread hand-off (anyio worker threads)", _has("to_thread", "worker_thread", "queue.py")),
    ("decision lane: reading the request, writing the answer", _has("decision_lane.py")),
    ("ASGI stack (Starlette/FastAPI routing, middleware)", _has("starlette", "fastapi")),
    ("HTTP server (uvicorn event loop, parsing)", lambda s: True),
]


def classify(collapsed: str) -> Counter[str]:
    """Samples per bucket from py-spy's raw (collapsed) output: ``frame;frame;... count``."""
    buckets: Counter[str] = Counter()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        name = next(name for name, rule in RULES if rule(stack))
        buckets[name] += int(count)
    return buckets


def py_spy() -> str | None:
    found = Path(sys.executable).parent / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float) -> str:
    """py-spy's collapsed stacks of ``pid`` (GIL holder only) over ``seconds``."""
    tool = py_spy()
    if tool is None:
        raise RuntimeError("py-spy is not installed")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        subprocess.run(
            [
                *(tool, "record", "--pid", str(pid), "--duration", str(int(seconds))),
                *("--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--gil", "--nonblocking"),
                *("--output", str(out)),
            ],
            capture_output=True,
            timeout=seconds + 60,
            check=True,
        )
        return out.read_text()


def profile(pg_base: str) -> tuple[Counter[str], float, float]:
    """Profile one PostgreSQL node at 64 clients: (samples per bucket, node CPU ms per
    decision, decisions/s while profiled)."""
    from benchmarks import http  # noqa: PLC0415 - http imports this module's caller

    with http.deployment("PostgreSQL, 1 node", pg_base, None) as cluster:
        tokens = http.prepare(cluster, bench_org(), 64)
        bodies = http.own_bodies(64)
        http.drive(cluster, tokens, bodies, 10)  # warm up
        level: list[http.Level] = []
        load = threading.Thread(
            target=lambda: level.append(http.drive(cluster, tokens, bodies, 400)), daemon=True
        )
        load.start()
        time.sleep(1.0)
        stacks = record(cluster.nodes[0].pid, SECONDS)
        load.join(http.LEVEL_CAP_S + 60)
        measured = level[0] if level else None
    cpu = measured.server_cpu_ms if measured else 0.0
    rate = measured.latency.per_s if measured else 0.0
    return classify(stacks), cpu, rate


def render(buckets: Counter[str], cpu_ms: float, per_s: float) -> list[str]:
    total = sum(buckets.values())
    lines = [
        "## Where a node's time goes",
        "",
        f"One PostgreSQL node at 64 clients ({per_s:,.0f} decisions/s while profiled, "
        f"{cpu_ms:.2f} ms of node CPU per decision), sampled by `py-spy record --gil` at "
        f"{SAMPLE_RATE_HZ} Hz for {SECONDS} s ({total:,} samples of the thread holding the GIL:",
        "the node's Python time). Each stack counts in the first bucket that matches it",
        "(`benchmarks/profile.py`); ms per decision = share x node CPU per decision.",
        "",
        "| where | share of Python time | ms per decision |",
        "|---|---:|---:|",
    ]
    for name, _rule in RULES:
        if buckets[name]:
            share = buckets[name] / total
            lines.append(f"| {name} | {share:.1%} | {share * cpu_ms:.2f} |")
    return lines
