"""``make bench``: run the benchmarks and write ``docs/benchmarks.md``.

Each figure is the median (by throughput) of ``--repeats`` runs; the machine is shared and
noisy, so compare figures within one report, as ratios where possible.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import http, inprocess, vault
from benchmarks.common import Latency, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"


def _row(label: str, result: Latency, aim: str = "") -> str:
    return f"| {label} | {result.per_s:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} | {aim} |"


def header(command: str, took_s: float) -> list[str]:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        "# Benchmarks",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` in {took_s:.0f} s.",
        "",
        f"Machine: {machine()}; load average at the end of the run: {load}.",
        "",
        "Figures are the median run (by throughput) of repeated runs on a shared, noisy",
        "machine; the load generator runs on the same cores as the code under test.",
        "",
    ]


def render(results: dict[str, dict[str, object]], command: str, took_s: float) -> str:
    return "\n".join(header(command, took_s) + render_inprocess(results)) + "\n"


def render_inprocess(results: dict[str, dict[str, object]]) -> list[str]:
    lines = [
        "## In-process `authorize`, four covering budgets (wallet, agent, department, org)",
        "",
        "Each client is a thread calling `gov.authorize(...)` for its own agent and wallet;",
        "all spends share the department and org budget rows.",
        "",
        "| backend / clients | authorizations/s | p50 ms | p99 ms | aim |",
        "|---|---:|---:|---:|---|",
    ]
    for backend, figures in results.items():
        for clients in (1, 8, 64):
            result = figures[f"clients_{clients}"]
            assert isinstance(result, Latency)
            aim = ""
            if backend == "SQLite" and clients == 1:
                aim = "p50 < 1 ms, ≥ 2,000/s"
            lines.append(_row(f"{backend}, {clients}", result, aim))
    lines += ["", "## Overspend check", ""]
    for backend, figures in results.items():
        allowed, reserved = figures["overspend"]  # type: ignore[misc]
        lines.append(
            f"- {backend}: 64 clients x 4 tries of $7 against a $1,000 org budget: "
            f"{allowed} allowed, ${reserved} reserved (exactly 142 fit: $994)."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--suite",
        choices=("all", "inprocess", "http", "vault"),
        default="all",
        help="in-process authorize, HTTP against `treasurer serve`, the key vault, or all",
    )
    args = parser.parse_args()
    pg = os.environ.get("TREASURER_BENCH_POSTGRES_URL", DEFAULT_PG)
    started = time.perf_counter()
    lines: list[str] = []
    if args.suite in ("all", "inprocess"):
        lines += render_inprocess(inprocess.run(pg or None, args.repeats, args.quick))
    http_results = None
    if args.suite in ("all", "http"):
        http_results = http.run(args.repeats, args.quick)
        section = http.render(http_results, args.quick)
        lines += ["", *section] if lines else section
    if args.suite in ("all", "vault"):
        section = vault.render(vault.run(quick=args.quick))
        lines += ["", *section] if lines else section
    command = "make bench" if not args.quick else "python -m benchmarks.run --quick"
    if args.suite != "all":
        command += f" --suite {args.suite}"
    text = "\n".join(header(command, time.perf_counter() - started) + lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    if http_results is not None and not http_results.overspend_ok:
        sys.exit("HTTP overspend check failed: see the report")


if __name__ == "__main__":
    main()
