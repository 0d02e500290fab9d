"""``make bench``: run the benchmarks and write ``docs/benchmarks.md``.

Each figure is the median (by throughput) of ``--repeats`` runs; the machine is shared and
noisy, so compare figures within one report, as ratios where possible.

Suites: ``inprocess`` (``authorize`` in-process, SQLite and PostgreSQL, with and without the
audit write), ``hot`` (reservations on one hot org budget, batched and one by one), ``http``
(real ``treasurer serve`` nodes: one on SQLite, one and two on PostgreSQL), ``profile`` (py-spy
on a loaded node: where its time goes), ``vault`` (unlock against signing) and ``payments``
(custodial payments on anvil). ``--suite all`` (what ``make bench`` runs) rewrites the whole
report. ``--suite NAME`` re-measures one suite and
replaces only its section of the existing report, keeping the others as they were: each
section starts with its own heading and carries a line saying when and by which command it was
measured, so a report assembled from several runs still says where every figure comes from.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import hotbudget, http, inprocess, payments, profile, vault
from benchmarks.common import Latency, machine

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
SUITES = ("inprocess", "hot", "http", "profile", "vault", "payments")
#: The heading each suite's section starts with (and nothing else's does).
HEADINGS = {
    "inprocess": "## In-process `authorize`",
    "hot": "## The hot org budget on PostgreSQL",
    "http": "## HTTP `POST /v1/authorizations`",
    "profile": "## Where a node's time goes",
    "vault": "## Key vault",
    "payments": "## Custodial payments",
}
_PROVENANCE = "_Measured "
_LEGACY_GENERATED = re.compile(
    r"^Generated (?P<when>.+? UTC) by `(?P<command>[^`]+)` in (?P<took>\d+) s\.$"
)
_LEGACY_LOAD = re.compile(r"load average at the end of the run: (?P<load>[\d., ]+?)\.$")


def _row(label: str, result: Latency, aim: str = "") -> str:
    return f"| {label} | {result.per_s:,.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} | {aim} |"


def header() -> list[str]:
    return [
        "# Benchmarks",
        "",
        "`make bench` measures every section below and rewrites this file;",
        "`python -m benchmarks.run --suite NAME` re-measures one section and keeps the others.",
        "Each section says when, and by which command, its figures were measured.",
        "",
        f"Machine: {machine()}.",
        "",
        "Figures are the median run (by throughput) of repeated runs on a shared, noisy",
        "machine; the load generator runs on the same cores as the code under test.",
        "",
    ]


def provenance(command: str, took_s: float) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{_PROVENANCE}{datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `{command}` in {took_s:.0f} s; "
        f"load average at the end: {load}._"
    )


def render_inprocess(results: dict[str, dict[str, object]]) -> list[str]:
    lines = [
        f"{HEADINGS['inprocess']}, four covering budgets (wallet, agent, department, org)",
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
    lines += [
        "",
        "### What the audit write costs",
        "",
        "`authorize` as above, and again on a database where every insert into `audit_events`",
        "is made a no-op (a rewrite rule on PostgreSQL, an ignoring trigger on SQLite; benchmark",
        "only). The audit event is written in the reservation's own transaction, so this is its",
        "whole cost on the request path. Sealing it into the hash chain happens later, in each",
        "node's background loop: its share of a node's time is in \"Where a node's time goes\".",
        "",
        "| backend / clients | with audit: authorizations/s, p50 ms | without | with / without |",
        "|---|---:|---:|---:|",
    ]
    for backend, figures in results.items():
        audit = figures["audit"]
        assert isinstance(audit, dict)
        for clients, (with_audit, without) in audit.items():
            ratio = with_audit.per_s / without.per_s if without.per_s else 0.0
            lines.append(
                f"| {backend}, {clients} | {with_audit.per_s:,.0f}, {with_audit.p50_ms:.2f} | "
                f"{without.per_s:,.0f}, {without.p50_ms:.2f} | {ratio:.2f}x |"
            )
    lines += ["", "## Overspend check", ""]
    for backend, figures in results.items():
        overspend = figures["overspend"]
        assert isinstance(overspend, tuple)
        allowed, reserved = overspend
        lines.append(
            f"- {backend}: 64 clients x 4 tries of $7 against a $1,000 org budget: "
            f"{allowed} allowed, ${reserved} reserved (exactly 142 fit: $994)."
        )
    return lines


# -- assembling the report ------------------------------------------------------------------


def split_report(text: str) -> dict[str, list[str]]:
    """The existing report's sections by suite (each from its heading to the next suite's).

    A report written before sections carried their own provenance line gets one here, made
    from its old ``Generated … by `make bench` …`` header line, so kept figures stay dated.
    """
    sections: dict[str, list[str]] = {}
    legacy: str | None = None
    current: str | None = None
    for line in text.splitlines():
        generated = _LEGACY_GENERATED.match(line)
        if current is None and generated:
            legacy = f"{_PROVENANCE}{generated['when']} by `{generated['command']}` (all suites"
            legacy += f" in {generated['took']} s)"
        load = _LEGACY_LOAD.search(line)
        if current is None and load and legacy is not None:
            legacy += f"; load average at the end: {load['load']}"
        owner = next((s for s, h in HEADINGS.items() if line.startswith(h)), None)
        if owner is not None:
            current = owner
            sections[current] = []
        if current is not None:
            sections[current].append(line)
    if legacy is not None:
        for lines in sections.values():
            if not any(line.startswith(_PROVENANCE) for line in lines):
                lines[1:1] = ["", legacy + "._"]
    for lines in sections.values():
        while lines and not lines[-1].strip():
            lines.pop()
    return sections


def stamped(section: list[str], command: str, took_s: float) -> list[str]:
    """``section`` with its provenance line under its heading."""
    return [section[0], "", provenance(command, took_s), *section[1:]]


def assemble(sections: dict[str, list[str]]) -> str:
    body: list[str] = []
    for suite in SUITES:
        if suite in sections:
            body += [*([""] if body else []), *sections[suite]]
    return "\n".join(header() + body) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument(
        "--suite",
        choices=("all", *SUITES),
        default="all",
        help="in-process authorize, the hot org budget, HTTP against `treasurer serve` nodes, "
        "the key vault, custodial "
        "payments on anvil, or all (rewrites the report; one suite replaces its section only)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a src directory of the code before a change: the HTTP suite runs it too, "
        "interleaved, and reports before and after (e.g. `git archive HEAD src | tar -x -C DIR`)",
    )
    args = parser.parse_args()
    pg = os.environ.get("TREASURER_BENCH_POSTGRES_URL", DEFAULT_PG)
    if args.suite == "all" and not args.quick and args.baseline is None:
        command = "make bench"
    else:
        command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
        command += "" if args.suite == "all" else f" --suite {args.suite}"
        command += "" if args.baseline is None else " --baseline BEFORE/src"
    failures: list[str] = []

    def measure_http() -> list[str]:
        results = http.run(args.repeats, args.quick, pg or None, args.baseline)
        if not results.overspend_ok:
            failures.append("HTTP overspend check failed: see the report")
        return http.render(results, args.quick)

    def measure_profile() -> list[str]:
        if not pg or profile.py_spy() is None:
            return [HEADINGS["profile"], "", "Not measured: needs PostgreSQL and py-spy."]
        return profile.render(*profile.profile(pg))

    def measure_payments() -> list[str]:
        results = payments.run(args.repeats, args.quick)
        if not payments.ok(results):
            failures.append("payments: a payment was not confirmed, or the ledger disagreed")
        return payments.render(results)

    def measure_hot() -> list[str]:
        if not pg:
            return [HEADINGS["hot"], "", "Not measured: no PostgreSQL URL."]
        results = hotbudget.run(pg, args.repeats, args.quick)
        if not results.ok:
            failures.append("hot budget: a reservation count at the limit was not exact")
        print(hotbudget.summary(results), file=sys.stderr)
        return hotbudget.render(results)

    measures: dict[str, Callable[[], list[str]]] = {
        "hot": measure_hot,
        "profile": measure_profile,
        "inprocess": lambda: render_inprocess(inprocess.run(pg or None, args.repeats, args.quick)),
        "http": measure_http,
        "vault": lambda: vault.render(vault.run(quick=args.quick)),
        "payments": measure_payments,
    }
    selected = SUITES if args.suite == "all" else (args.suite,)
    if "payments" in selected and not payments.ANVIL.exists():  # fail before, not after, the rest
        sys.exit(f"the payments suite needs anvil ({payments.ANVIL}): run `npm install` first")
    keep = args.suite != "all" and args.out.exists()
    sections = split_report(args.out.read_text(encoding="utf-8")) if keep else {}
    for suite in selected:
        started = time.perf_counter()
        section = measures[suite]()
        sections[suite] = stamped(section, command, time.perf_counter() - started)
    text = assemble(sections)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    if failures:
        sys.exit("; ".join(failures))


if __name__ == "__main__":
    main()
