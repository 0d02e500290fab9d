"""In-process ``authorize`` with four covering budgets (wallet, agent, department, org).

Reports p50/p99 latency at 1 client and authorizations/s at 1, 8 and 64 concurrent clients
(threads in one process), on SQLite and PostgreSQL, and checks that nothing overspends when the
org budget is the binding one.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from urllib.parse import quote

import psycopg

import treasurer
from benchmarks.common import Latency, bench_org, median_of, run_clients


def _authorize_load(url: str, clients: int, per_client: int) -> Latency:
    with treasurer.open(url, migrate=False) as gov:

        def call(client: int, _i: int) -> None:
            result = gov.authorize(
                agent=f"agent{client}", wallet=f"w{client}", amount="1.00", asset="USDC"
            )
            if not result.allowed:
                raise AssertionError(result.codes)

        return run_clients(clients, per_client, call)


def _overspend_check(url: str) -> tuple[int, int]:
    """64 clients race for a $1,000 org budget in $7 steps: returns (allowed, reserved $)."""
    with treasurer.open(url) as gov:
        gov.apply(bench_org(org_daily="1000.00"))
        allowed = 0

        def call(client: int, _i: int) -> None:
            nonlocal allowed
            result = gov.authorize(
                agent=f"agent{client}", wallet=f"w{client}", amount="7.00", asset="USDC"
            )
            allowed += int(result.allowed)

        run_clients(64, 4, call)
        reserved = sum(r.pending_usd_micros for r in gov.spend(by="org"))
        return allowed, reserved // 1_000_000


#: Makes every insert into ``audit_events`` a no-op (benchmark only: what the audit write
#: costs is the difference). PostgreSQL: a rewrite rule; SQLite: a trigger that ignores.
NO_AUDIT = {
    "postgresql": "CREATE RULE bench_no_audit AS ON INSERT TO audit_events DO INSTEAD NOTHING",
    "sqlite": "CREATE TRIGGER bench_no_audit BEFORE INSERT ON audit_events "
    "BEGIN SELECT RAISE(IGNORE); END",
}


def _without_audit(url: str) -> None:
    with treasurer.open(url, migrate=False) as gov:
        gov.sql.db.run(lambda tx: tx.execute(NO_AUDIT[gov.sql.dialect]))


def audit_overhead(
    url_factory: object, repeats: int, quick: bool
) -> dict[int, tuple[Latency, Latency]]:
    """Authorize with the audit write and without it (clients → (with, without)); each
    repeat runs both, on fresh databases, one after the other."""
    assert callable(url_factory)
    per = {1: 300 if quick else 1500, 8: 40 if quick else 200}
    out: dict[int, tuple[Latency, Latency]] = {}
    for clients, per_client in per.items():
        with_audit, without = [], []
        for _ in range(repeats):
            for runs, strip in ((with_audit, False), (without, True)):
                url = url_factory()
                with treasurer.open(url) as gov:
                    gov.apply(bench_org())
                if strip:
                    _without_audit(url)
                runs.append(_authorize_load(url, clients, per_client))
        out[clients] = (median_of(with_audit), median_of(without))
    return out


def fresh_pg(base: str) -> str:
    """A fresh schema on ``base`` for one benchmark run."""
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}"


def drop_pg_schemas(base: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_%'"
        ).fetchall()
        for (name,) in rows:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


def bench_backend(url_factory: object, repeats: int, quick: bool) -> dict[str, object]:
    assert callable(url_factory)
    results: dict[str, object] = {}
    per = {1: 300 if quick else 2000, 8: 60 if quick else 400, 64: 10 if quick else 60}
    for clients, per_client in per.items():
        runs = []
        for _ in range(repeats):
            url = url_factory()
            with treasurer.open(url) as gov:
                gov.apply(bench_org())
            runs.append(_authorize_load(url, clients, per_client))
        results[f"clients_{clients}"] = median_of(runs)
    allowed, reserved = _overspend_check(url_factory())
    results["overspend"] = (allowed, reserved)
    results["audit"] = audit_overhead(url_factory, repeats, quick)
    return results


def sqlite_factory(root: Path) -> object:
    counter = iter(range(10_000))

    def make() -> str:
        return f"sqlite:///{root / f'bench{next(counter)}.db'}"

    return make


def run(pg_base: str | None, repeats: int, quick: bool) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out["SQLite"] = bench_backend(sqlite_factory(Path(tmp)), repeats, quick)
    if pg_base:
        try:
            out["PostgreSQL"] = bench_backend(lambda: fresh_pg(pg_base), repeats, quick)
        finally:
            drop_pg_schemas(pg_base)
    return out
