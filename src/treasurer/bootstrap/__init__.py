"""The composition root: the only module that builds concrete adapters.

``open_governance(url)`` wires the SQL store, the system clock and the use cases together;
``treasurer.open`` is a thin alias of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from treasurer.adapters.clock import SystemClock
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.sql.payment_store import SqlPaymentStore
from treasurer.adapters.sql.store import SqlStore
from treasurer.adapters.yaml_files import load_org_file
from treasurer.service.admin import ApplyResult, Governance
from treasurer.service.chain_ports import Chain, Vault
from treasurer.service.chain_registry import ChainRegistry
from treasurer.service.payments import PaymentService
from treasurer.service.ports import Clock

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

    @property
    def sql(self) -> SqlStore:
        """The concrete store (for composing other SQL adapters on the same database)."""
        assert isinstance(self.store, SqlStore)
        return self.store

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


def open_payments(
    governance: EmbeddedGovernance, chains: Mapping[str, Chain], vault: Vault
) -> PaymentService:
    """The custodial payment pipeline over ``governance``'s database.

    ``chains`` maps network names to chain adapters the caller built (``{"evm-local":
    LocalEvm().chain}``); payments share the governance store's database, so budgets, payments
    and the notification outbox live side by side.
    """
    payments = SqlPaymentStore(governance.sql.db)
    return PaymentService(governance, payments, ChainRegistry(chains), vault)


def build_app(
    database_url: str, clock: Clock | None = None, *, settings: HttpSettings | None = None
) -> FastAPI:
    """The HTTP API over the (migrated) database at ``database_url``.

    Governance and credentials share one database (one connection pool, one SQLite writer),
    so the audit events of both land in one table. FastAPI is imported here, not at module
    import, so the CLI and ``treasurer.open`` do not pay for it.
    """
    from treasurer.interfaces.http import HttpSettings, create_app  # noqa: PLC0415

    store = SqlStore(database_url)
    store.migrate()
    governance = EmbeddedGovernance(store, clock or SystemClock())
    if settings is None:
        settings = HttpSettings(inline_auth=store.dialect == "sqlite")
    return create_app(governance, SqlCredentialStore(store.db), settings=settings)
