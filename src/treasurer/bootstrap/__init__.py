"""The composition root: the only package that builds concrete adapters.

``open_governance(url)`` wires the SQL store, the system clock and the use cases together;
``treasurer.open`` is a thin alias of it. Given chains and a vault it also attaches the
custodial payment pipeline, so ``gov.pay(...)`` works in-process as it does over HTTP.

The rest of the package: :mod:`.chains` (``TREASURER_CHAINS`` → chain adapters, the dev
faucet), :mod:`.custody` (the vault and its passphrase), :mod:`.demo` (the demo org),
:mod:`.server` (``treasurer serve``), :mod:`.cli` (the console entry point and ``init``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from treasurer.adapters.clock import SystemClock
from treasurer.adapters.sql.approval_store import SqlApprovalStore
from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.sql.payment_queue import SqlPaymentQueue
from treasurer.adapters.sql.payment_store import SqlPaymentStore
from treasurer.adapters.sql.store import SqlStore
from treasurer.adapters.sql.webhook_store import SqlWebhookStore
from treasurer.adapters.yaml_files import load_org_file
from treasurer.domain.errors import TreasurerError
from treasurer.domain.payment import Payment
from treasurer.service.admin import ApplyResult, Governance
from treasurer.service.approvals import Approvals
from treasurer.service.audit import AuditTrail
from treasurer.service.audit_ports import CheckpointSigner
from treasurer.service.chain_ports import Chain, Vault
from treasurer.service.chain_registry import ChainRegistry
from treasurer.service.notify_admin import Webhooks
from treasurer.service.payments import PaymentPreview, PaymentResult, PaymentService
from treasurer.service.payments_input import PaymentInput
from treasurer.service.ports import Clock

if TYPE_CHECKING:
    from fastapi import FastAPI

    from treasurer.interfaces.http import HttpSettings


class EmbeddedGovernance(Governance):
    """Governance in-process; ``apply`` also accepts a path to a YAML org file.

    ``pay`` (and ``submit``, ``payment``, ``confirm_payments``) need the payment pipeline,
    attached by ``open_governance(url, chains=..., vault=...)``; without it they raise
    ``payments_not_configured``. Embedded use runs no background confirmer: call
    :meth:`confirm_payments` yourself, as with ``expire_stale``.
    """

    #: The custodial pipeline, when chains and a vault were given (see :meth:`attach_payments`).
    payment_service: PaymentService | None = None
    #: The hash-chained audit trail (sealing, checkpoints, export, verify); always attached
    #: by :func:`open_governance`, with a checkpoint signer when one was given.
    audit: AuditTrail | None = None

    def attach_payments(self, payments: PaymentService) -> None:
        """Route ``pay`` through ``payments`` (a pipeline built over this governance)."""
        self.payment_service = payments

    @overload
    def pay(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object = None,
        asset: str | None = None,
        recipient: str | None = None,
        kind: str = "transfer",
        to: str | None = None,
        data: str | None = None,
        value: object = None,
        max_fee_usd: object = None,
        idempotency_key: str | None = None,
        dry_run: Literal[False] = False,
    ) -> PaymentResult: ...

    @overload
    def pay(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object = None,
        asset: str | None = None,
        recipient: str | None = None,
        kind: str = "transfer",
        to: str | None = None,
        data: str | None = None,
        value: object = None,
        max_fee_usd: object = None,
        idempotency_key: str | None = None,
        dry_run: Literal[True],
    ) -> PaymentPreview: ...

    def pay(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object = None,
        asset: str | None = None,
        recipient: str | None = None,
        kind: str = "transfer",
        to: str | None = None,
        data: str | None = None,
        value: object = None,
        max_fee_usd: object = None,
        idempotency_key: str | None = None,
        dry_run: bool = False,
    ) -> PaymentResult | PaymentPreview:
        """Pay from a custodial wallet: decide, reserve, sign, broadcast (the remote client's
        ``pay`` with the agent named, since no session says who is paying).

        ``gov.pay(agent="procurement_bot", wallet="pb-evm-local", amount="25.00",
        asset="DUSD", recipient="0x…")``. ``kind`` ``transfer`` (default) or ``approve`` take
        ``recipient``, ``amount`` and ``asset``; ``call`` takes ``to``, ``data`` and ``value``.
        A denial is a result, not an exception. Without an ``idempotency_key`` a random one is
        used, as the remote client does; pass your own to make retries safe.
        """
        request = PaymentInput(
            agent=agent,
            wallet=wallet,
            kind=kind,
            recipient=recipient,
            amount=amount,
            asset=asset,
            to=to,
            data=data,
            value=value,
            max_fee_usd=max_fee_usd,
        )
        return self.submit(request, idempotency_key=idempotency_key, dry_run=dry_run)

    def submit(
        self, request: PaymentInput, *, idempotency_key: str | None = None, dry_run: bool = False
    ) -> PaymentResult | PaymentPreview:
        """One payment in the shape every interface builds (:class:`PaymentInput`)."""
        service = self._require_payments()
        key = idempotency_key or f"embedded-{secrets.token_hex(12)}"
        return service.submit(request, idempotency_key=key, dry_run=dry_run)

    def payment(self, payment_id: str) -> Payment:
        """One payment as it stands now (``confirm_payments`` moves broadcast ones on)."""
        return self._require_payments().get(payment_id)

    def confirm_payments(self, limit: int = 100) -> int:
        """Read the receipts of broadcast payments and finish them (capture or void);
        returns how many reached a final state. ``treasurer serve`` does this continuously."""
        return self._require_payments().confirm_pending(limit)

    def _require_payments(self) -> PaymentService:
        if self.payment_service is None:
            raise TreasurerError(
                "custodial payments are not configured: open the database with chains and a "
                "vault (treasurer.bootstrap.open_governance(url, chains=..., vault=...)), or "
                "pay through a `treasurer serve` node",
                code="payments_not_configured",
            )
        return self.payment_service

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
    database_url: str,
    *,
    clock: Clock | None = None,
    migrate: bool = True,
    chains: Mapping[str, Chain] | None = None,
    vault: Vault | None = None,
    audit_signer: CheckpointSigner | None = None,
) -> EmbeddedGovernance:
    """Open (and migrate) the store at ``database_url`` and return the embedded interface.

    With ``chains`` (network name → adapter) and an open ``vault``, custodial payments work
    too (``gov.pay``). The caller built them and keeps them: closing the governance closes the
    database only. Giving one without the other is refused: payments need both.
    ``audit_signer`` signs audit checkpoints (the deployment's key; see :mod:`.server`).
    """
    if (chains is None) != (vault is None):
        raise ValueError("custodial payments need both chains and a vault (or neither)")
    store = SqlStore(database_url)
    if migrate:
        store.migrate()
    governance = EmbeddedGovernance(store, clock or SystemClock())
    governance.audit = AuditTrail(SqlAuditLog(store.db), governance.clock, audit_signer)
    if chains is not None and vault is not None:
        governance.attach_payments(open_payments(governance, chains, vault))
    return governance


def open_payments(
    governance: EmbeddedGovernance, chains: Mapping[str, Chain], vault: Vault
) -> PaymentService:
    """The custodial payment pipeline over ``governance``'s database.

    ``chains`` maps network names to chain adapters the caller built (``{"evm-local":
    LocalEvm().chain}``); payments share the governance store's database, so budgets, payments
    and the notification outbox live side by side.
    """
    db = governance.sql.db
    return PaymentService(
        governance, SqlPaymentStore(db), ChainRegistry(chains), vault, queue=SqlPaymentQueue(db)
    )


def build_app(
    database_url: str,
    clock: Clock | None = None,
    *,
    settings: HttpSettings | None = None,
    payments: PaymentService | None = None,
    governance: EmbeddedGovernance | None = None,
) -> FastAPI:
    """The HTTP API over the (migrated) database at ``database_url``.

    Governance and credentials share one database (one connection pool, one SQLite writer),
    so the audit events of both land in one table. ``payments`` is the custodial pipeline
    (``open_payments``); without it the payment routes answer ``payments_not_configured``.
    ``governance``: serve it instead of opening a new one, so the app and the node's workers
    (confirmer, queue, notifier) share one store, one config cache and one SQLite writer;
    ``payments`` must then be built over it. FastAPI is imported here, not at module import,
    so the CLI and ``treasurer.open`` do not pay for it.
    """
    from treasurer.interfaces.http import HttpSettings, create_app  # noqa: PLC0415

    if governance is None:
        governance = open_governance(database_url, clock=clock)
    store = governance.sql
    if settings is None:
        settings = HttpSettings(inline_auth=store.dialect == "sqlite")
    credentials = SqlCredentialStore(store.db)
    webhooks = Webhooks(SqlWebhookStore(store.db), governance.clock)
    approvals = Approvals(governance, SqlApprovalStore(store.db), credentials)
    return create_app(
        governance,
        credentials,
        settings=settings,
        payments=payments,
        webhooks=webhooks,
        approvals=approvals,
    )
