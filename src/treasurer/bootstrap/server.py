"""``treasurer serve``: the HTTP API, the expiry sweeper, the payment confirmer, the payment
queue (delay and approval tiers: ``release_due`` then ``execute_ready`` every tick) and the
webhook notifier (which also seals the audit chain, since it dispatches sealed events only).

One worker (the default): this process builds the chains and unlocks the vault once, and the
HTTP app and the confirmation thread share those very objects. That is required, not just
cheaper, for the embedded chains, whose whole state is this process's memory.

``TREASURER_WORKERS`` > 1: uvicorn runs that many worker processes, each building its own app,
chains and vault (:func:`worker_app`), and this process sweeps expired authorizations,
confirms broadcast payments and executes the payment queue, with chains and an unlocked vault
of its own (the queue signs). Embedded chains cannot be shared between processes, so that
combination is refused with a message naming both settings. Several nodes on one PostgreSQL
database may all run the queue: each payment is claimed by exactly one
(``service/payments_queue.py``).

Custodial payments are on when ``TREASURER_CHAINS`` names at least one network and a vault
passphrase is configured; otherwise the node serves governance only and says so at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from treasurer.adapters.sql.audit_store import SqlAuditLog
from treasurer.adapters.sql.webhook_store import SqlWebhookStore
from treasurer.adapters.vault import FileVault
from treasurer.adapters.webhook_sender import HttpxWebhookSender
from treasurer.bootstrap import EmbeddedGovernance, build_app, open_governance, open_payments
from treasurer.bootstrap.chains import NodeChains, build_chains, fund_dev_wallets
from treasurer.bootstrap.custody import has_passphrase, open_vault
from treasurer.bootstrap.files import audit_signer
from treasurer.bootstrap.reconcile import open_watcher
from treasurer.bootstrap.vendors import install_vendor_hooks
from treasurer.service.audit import AuditTrail
from treasurer.service.notify import NOTIFY_INTERVAL_S, Notifier
from treasurer.service.notify_ports import WebhookSender
from treasurer.service.payments import PaymentService
from treasurer.service.reconcile import WATCH_INTERVAL_S, Reconciler
from treasurer.settings import CHAINS_ENV, Settings, SettingsInvalid

if TYPE_CHECKING:
    from fastapi import FastAPI

    from treasurer.adapters.chains.evm_nonces import NonceLedger

log = logging.getLogger("treasurer.serve")
#: How long shutdown waits for a background loop to finish its current tick.
STOP_TIMEOUT_S: Final = 10.0
#: A loop that keeps failing logs again at most this often (a dead RPC node, every 0.5 s).
FAILURE_LOG_INTERVAL_S: Final = 60.0
#: How often the audit chain is sealed (and, hourly when it moved, checkpointed).
AUDIT_SEAL_INTERVAL_S: Final = 1.0


@dataclass
class Custodial:
    """The payment pipeline of this process and what it was built from."""

    chains: NodeChains
    vault: FileVault
    payments: PaymentService

    def close(self) -> None:
        """Drop the unlocked keys (the chains need no closing)."""
        self.vault.close()


def nonce_ledger(governance: EmbeddedGovernance) -> NonceLedger | None:
    """The nonces nodes share on PostgreSQL, where several may send from one wallet; None on
    SQLite, whose one node counts nonces in memory."""
    if governance.sql.dialect != "postgresql":
        return None
    # psycopg is imported only by PostgreSQL deployments.
    from treasurer.adapters.sql.nonce_ledger import SqlNonceLedger  # noqa: PLC0415
    from treasurer.adapters.sql.pg_db import PostgresDatabase  # noqa: PLC0415

    db = governance.sql.db
    assert isinstance(db, PostgresDatabase)
    return SqlNonceLedger(db)


def open_custodial(
    settings: Settings, governance: EmbeddedGovernance, *, fund: bool
) -> tuple[Custodial | None, list[str]]:
    """Unlock the vault, build the chains and the pipeline over ``governance``.

    ``None`` (with the reason) when the node has no chains or no passphrase. A passphrase that
    does not open the vault raises ``VaultLocked``: starting without keys the operator meant
    to use would hide the mistake until the first payment. With ``fund``, custodial wallets on
    embedded chains get dev money (see :func:`fund_dev_wallets`).
    """
    if not settings.chains:
        return None, [f"Custodial payments: off ({CHAINS_ENV}=none); governance mode only."]
    if not has_passphrase(settings):
        return None, [
            "Custodial payments: off (no vault passphrase: run `treasurer init`, or set "
            "TREASURER_VAULT_PASSPHRASE); governance mode only."
        ]
    vault = open_vault(settings)
    try:
        chains = build_chains(settings.chains, nonce_ledger(governance))
        payments = open_payments(governance, chains.chains, vault)
        keys = len(vault.addresses())
        lines = [
            f"Custodial payments: on ({', '.join(chains.chains)}); vault "
            f"{settings.vault_dir.resolve()} unlocked ({keys} keys, held in memory)."
        ]
        if fund:
            lines.extend(fund_dev_wallets(chains, governance.cache.peek()))
    except BaseException:
        vault.close()
        raise
    return Custodial(chains, vault, payments), lines


def open_notifier(governance: EmbeddedGovernance, sender: WebhookSender | None = None) -> Notifier:
    """The webhook notifier over ``governance``'s database (``docs/webhooks.md``).

    It seals the audit chain before each dispatch, because only sealed events are dispatched
    (their ``seq`` is the crash-safe cursor); sealing is idempotent and takes a lock, so it
    may run beside any other sealer.
    """
    db = governance.sql.db
    trail = AuditTrail(SqlAuditLog(db), governance.clock)
    return Notifier(
        SqlWebhookStore(db), sender or HttpxWebhookSender(), governance.clock, seal=trail.seal
    )


def run_queue(payments: PaymentService) -> object:
    """One tick of the payment queue: release the delays that passed, then execute what is
    due (approved or released), each payment claimed by exactly one node."""
    payments.governance.release_due()
    return payments.execute_ready()


def run_every(
    interval_s: float, stop: threading.Event, action: Callable[[], object], what: str
) -> threading.Thread:
    """Run ``action`` every ``interval_s`` until ``stop``; a failure is logged and the action
    retried on the next tick (a repeating failure is logged once a minute, not every tick)."""

    def loop() -> None:
        logged_at: float | None = None
        while not stop.wait(interval_s):
            try:
                action()
            except Exception:
                now = time.monotonic()
                if logged_at is None or now - logged_at >= FAILURE_LOG_INTERVAL_S:
                    log.exception("%s failed; retrying every %gs", what, interval_s)
                    logged_at = now
            else:
                if logged_at is not None:
                    log.warning("%s works again", what)
                    logged_at = None

    thread = threading.Thread(target=loop, name=f"treasurer-{what}", daemon=True)
    thread.start()
    return thread


def serve(settings: Settings) -> None:
    """Run the HTTP API on ``settings.host:settings.port`` until interrupted."""
    import uvicorn  # noqa: PLC0415 - only the server needs it

    embedded = settings.embedded_chains
    if settings.workers > 1 and embedded:
        raise SettingsInvalid(
            f"TREASURER_WORKERS={settings.workers} cannot run with the embedded chains "
            f"({', '.join(embedded)}): each lives in one process's memory, so every worker "
            f"would see a different chain. Set TREASURER_WORKERS=1, or set {CHAINS_ENV} to RPC "
            f"networks only (e.g. {CHAINS_ENV}=anvil=http://127.0.0.1:8545), or to 'none'.",
            field="TREASURER_WORKERS",
        )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("treasurer").setLevel(logging.INFO)
    signer = audit_signer(settings.data_dir)
    # Migrates once, here; the app, the workers and the audit sealer share this governance.
    governance = open_governance(settings.effective_database_url, audit_signer=signer)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    custodial: Custodial | None = None
    watcher: Reconciler | None = None
    notifier = open_notifier(governance)
    try:
        custodial, lines = open_custodial(settings, governance, fund=True)
        for line in lines:
            print(line, flush=True)
        watcher, watching = open_watcher(
            settings, governance, None if custodial is None else custodial.chains.chains
        )
        print(watching, flush=True)
        if watcher is not None:
            threads.append(run_every(WATCH_INTERVAL_S, stop, watcher.run_once, "reconciliation"))
        threads.append(
            run_every(
                settings.expiry_sweep_interval_s, stop, governance.expire_stale, "expiry-sweep"
            )
        )
        trail = governance.audit
        assert trail is not None
        threads.append(run_every(AUDIT_SEAL_INTERVAL_S, stop, trail.tick, "audit-seal"))
        if custodial is not None:
            pipeline, interval = custodial.payments, settings.confirm_interval_s
            threads.append(run_every(interval, stop, pipeline.confirm_pending, "confirmation"))
            threads.append(run_every(interval, stop, lambda: run_queue(pipeline), "payment-queue"))
        threads.append(
            run_every(
                NOTIFY_INTERVAL_S,
                stop,
                lambda: notifier.run_once(should_stop=stop.is_set),
                "notifications",
            )
        )
        workers = f" ({settings.workers} workers)" if settings.workers > 1 else ""
        print(f"Treasurer listening on http://{settings.host}:{settings.port}{workers}", flush=True)
        options: dict[str, object] = {
            "host": settings.host,
            "port": settings.port,
            "log_level": "warning",
            "access_log": False,
        }
        if settings.workers > 1:
            uvicorn.run(
                "treasurer.bootstrap.server:worker_app",
                factory=True,
                workers=settings.workers,
                **options,  # type: ignore[arg-type]
            )
        else:
            payments = None if custodial is None else custodial.payments
            app = build_app(
                settings.effective_database_url, payments=payments, governance=governance
            )
            install_vendor_hooks(app, settings.data_dir)
            uvicorn.run(app, **options)  # type: ignore[arg-type]
    finally:
        stop.set()
        for thread in threads:
            thread.join(STOP_TIMEOUT_S)
        notifier.close()
        if watcher is not None:
            watcher.close()
        if custodial is not None:
            custodial.close()
        governance.close()


def worker_app() -> FastAPI:
    """The app of one worker process (settings from the environment, like the parent's).

    Each worker unlocks the vault and connects to the RPC chains itself; the parent refused
    embedded chains before starting any worker, and it runs the only confirmer.
    """
    settings = Settings.from_env()
    governance = open_governance(settings.effective_database_url)
    custodial, _lines = open_custodial(settings, governance, fund=False)
    payments = None if custodial is None else custodial.payments
    app = build_app(settings.effective_database_url, payments=payments, governance=governance)
    install_vendor_hooks(app, settings.data_dir)
    return app
