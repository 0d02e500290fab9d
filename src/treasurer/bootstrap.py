"""The composition root: the only module that builds concrete adapters.

``open_governance(url)`` wires the SQL store, the system clock and the use cases together;
``treasurer.open`` is a thin alias of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from treasurer.adapters.clock import SystemClock
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.sql.store import SqlStore
from treasurer.adapters.yaml_files import dump_org_file, load_org_file, load_org_text
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.service.admin import ApplyResult, Governance
from treasurer.service.ports import Clock
from treasurer.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from treasurer.interfaces.http import HttpSettings


class EmbeddedGovernance(Governance):
    """Governance in-process; ``apply`` also accepts a path to a YAML org file."""

    def apply(
        self,
        org_file: Mapping[str, object] | str | Path,
        *,
        source: str | None = None,
        actor: str = "admin",
        dry_run: bool = False,
    ) -> ApplyResult:
        if isinstance(org_file, (str, Path)):
            data = load_org_file(org_file)
            return super().apply(data, source=source or str(org_file), actor=actor, dry_run=dry_run)
        return super().apply(org_file, source=source or "org.yaml", actor=actor, dry_run=dry_run)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> EmbeddedGovernance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_governance(
    database_url: str, *, clock: Clock | None = None, migrate: bool = True
) -> EmbeddedGovernance:
    """Open (and migrate) the store at ``database_url`` and return the embedded interface."""
    store = SqlStore(database_url)
    if migrate:
        store.migrate()
    return EmbeddedGovernance(store, clock or SystemClock())


def _embedded_backend(settings: Settings) -> EmbeddedGovernance:
    return open_governance(settings.effective_database_url, migrate=False)


def demo_org_file() -> dict[str, object]:
    """The packaged example org (``treasurer/examples/org.yaml``)."""
    text = resources.files("treasurer").joinpath("examples/org.yaml").read_text("utf-8")
    return load_org_text(text, source="examples/org.yaml")


def initialize(settings: Settings, *, demo: bool) -> list[str]:
    """Create the data directory (owner-only), migrate, and apply the demo org on first run."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    lines = [f"Data directory: {settings.data_dir.resolve()}"]
    with open_governance(settings.effective_database_url) as gov:
        lines.append(f"Database: {settings.effective_database_url}")
        if demo and gov.cache.peek() is None:
            result = gov.apply(demo_org_file(), source="demo org", actor="init")
            lines.append(f"Demo organization applied ({len(result.plan.changes)} objects).")
    return lines


def main() -> None:
    """Console entry point: the CLI wired to the real adapters."""
    settings = Settings.from_env()
    wiring = Wiring(
        open_backend=lambda: _embedded_backend(settings),
        load_org_file=load_org_file,
        dump_org_file=dump_org_file,
        init=lambda demo: initialize(settings, demo=demo),
        serve=lambda: _serve(settings),
    )
    build_cli(wiring)()


def _serve(settings: Settings) -> None:
    raise SystemExit("treasurer serve: the HTTP API is not wired yet")


def build_app(
    database_url: str, clock: Clock | None = None, *, settings: HttpSettings | None = None
) -> FastAPI:
    """The HTTP API over the (migrated) database at ``database_url``.

    Governance and credentials share one database (one connection pool, one SQLite writer),
    so the audit events of both land in one table. FastAPI is imported here, not at module
    import, so the CLI and ``treasurer.open`` do not pay for it.
    """
    from treasurer.interfaces.http import create_app  # noqa: PLC0415

    store = SqlStore(database_url)
    store.migrate()
    governance = EmbeddedGovernance(store, clock or SystemClock())
    return create_app(governance, SqlCredentialStore(store.db), settings=settings)
