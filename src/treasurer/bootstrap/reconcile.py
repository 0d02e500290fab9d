"""Composing the reconciliation watcher: governance, its SQL store and the chain adapters.

``treasurer serve`` runs one :class:`~treasurer.service.reconcile.Reconciler` over the chains
it connects to (custodial or not: external wallets need no keys to be watched), ticking every
:data:`~treasurer.service.reconcile.WATCH_INTERVAL_S`. Several nodes may all run it: each
network is watched by whichever node holds its lease (``docs/reconciliation.md``).
"""

from __future__ import annotations

from collections.abc import Mapping

from treasurer.adapters.sql.reconcile_store import SqlReconcileStore
from treasurer.bootstrap import EmbeddedGovernance
from treasurer.bootstrap.chains import build_chains
from treasurer.service.chain_ports import Chain
from treasurer.service.reconcile import (
    CAPTURE_GRACE_S,
    LEASE_S,
    MAX_BLOCKS_PER_TICK,
    Reconciler,
)
from treasurer.settings import Settings


def open_reconciler(
    governance: EmbeddedGovernance,
    chains: Mapping[str, Chain],
    *,
    owner: str | None = None,
    max_blocks: int = MAX_BLOCKS_PER_TICK,
    lease_s: float = LEASE_S,
    capture_grace_s: float = CAPTURE_GRACE_S,
) -> Reconciler:
    """The watcher of ``chains`` over ``governance``'s database (``owner`` names this node in
    the leases; a random name by default)."""
    return Reconciler(
        governance,
        SqlReconcileStore(governance.sql.db),
        chains,
        owner=owner,
        max_blocks=max_blocks,
        lease_s=lease_s,
        capture_grace_s=capture_grace_s,
    )


def open_watcher(
    settings: Settings, governance: EmbeddedGovernance, chains: Mapping[str, Chain] | None
) -> tuple[Reconciler | None, str]:
    """The watcher of ``treasurer serve`` and the line it prints at start.

    ``chains`` are the custodial pipeline's, when it runs: the watcher must read the very
    objects the pipeline sends with (an embedded chain lives in those objects only). A node
    without custodial payments (no vault passphrase) still watches its configured chains with
    adapters of its own: external wallets need no keys to be watched.
    """
    if chains is None:
        if not settings.chains:
            return None, "Reconciliation: off (no chains configured)."
        chains = build_chains(settings.chains).chains
    watcher = open_reconciler(governance, chains)
    names = ", ".join(sorted(chains))
    return watcher, f"Reconciliation: watching {names} for spends nobody authorized."
