"""The port reconciliation needs from storage, and the records it keeps.

One :class:`ReconcileStore` holds what the watcher saw on chain (:class:`TransferRecord`, one
per value movement out of a registered wallet), how far it has read each network, and the
lease that makes one node at a time watch a network. Its writes are short transactions; the
one that records an unauthorized spend writes the record, the authorization that counts it,
its budget postings and its audit events together, or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from treasurer.domain.authorization import Authorization
from treasurer.domain.budgets import BudgetClaim
from treasurer.domain.org import Scope
from treasurer.service.chain_ports import ObservedTransfer
from treasurer.service.ports import AuditRecord


@dataclass(frozen=True, slots=True)
class FreezeOrder:
    """A scope to freeze in the same transaction as an unauthorized spend's record
    (``on_breach: freeze_agent``), with the ``freeze.set`` audit event it writes if it
    changed anything."""

    scope: Scope
    reason: str
    actor: str
    audit: AuditRecord


class TransferStatus(StrEnum):
    """How an outgoing transfer was reconciled (see ``docs/reconciliation.md``)."""

    MATCHED = "matched"  # a governance authorization captured for it (by tx hash or amount)
    PAYMENT = "payment"  # a custodial payment Treasurer itself sent
    ALLOWANCE = "allowance"  # a spender pulled it under an approval that was authorized
    AWAITING_CAPTURE = "awaiting_capture"  # an open authorization may still claim it
    UNAUTHORIZED = "unauthorized"  # nothing authorized it: counted, audited, notified
    MISMATCH = "mismatch"  # captured for an authorization it does not match


#: Statuses that settle a transfer for good.
FINAL_STATUSES = frozenset(TransferStatus) - {TransferStatus.AWAITING_CAPTURE}


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One observed transfer as stored, with what reconciliation made of it."""

    network: str
    transfer: ObservedTransfer
    wallet_id: str
    agent_id: str
    status: TransferStatus
    observed_at: datetime
    authorization_id: str | None = None
    detail: dict[str, object] = field(default_factory=dict)
    resolved_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.network, self.transfer.tx_id, self.transfer.index)


@dataclass(frozen=True, slots=True)
class WatchClaim:
    """A network this node may watch now, and the last block (slot) read (None: never)."""

    network: str
    cursor: int | None


@dataclass(frozen=True, slots=True)
class PaymentLink:
    """The custodial payment that sent a transaction, and its authorization."""

    payment_id: str
    authorization_id: str | None


class ReconcileStore(Protocol):
    """Persistence of observed transfers, watch progress and leases."""

    # -- watching a network ---------------------------------------------------------------
    def claim(self, network: str, owner: str, now: datetime, lease_s: float) -> WatchClaim | None:
        """Take or renew the lease on ``network`` until ``now + lease_s``; None while another
        owner holds an unexpired lease."""
        ...

    def advance(self, network: str, owner: str, cursor: int, now: datetime) -> bool:
        """Record that blocks up to ``cursor`` are read; False if ``owner`` lost the lease."""
        ...

    def release(self, network: str, owner: str) -> None:
        """Give the lease up (shutdown), so another node takes over at once."""
        ...

    # -- transfers ------------------------------------------------------------------------
    def recorded(
        self, network: str, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], TransferStatus]:
        """The status of those ``(tx_id, index)`` already recorded on ``network``."""
        ...

    def settle(
        self,
        record: TransferRecord,
        expected: TransferStatus | None,
        audits: Sequence[AuditRecord] = (),
        freeze: FreezeOrder | None = None,
    ) -> bool:
        """Insert ``record`` (``expected`` None) or move a stored one from ``expected`` to
        ``record.status``, with ``audits`` and ``freeze``, in one transaction; False when it
        was already recorded (or no longer in ``expected``): another pass got there first."""
        ...

    def record_unauthorized(
        self,
        record: TransferRecord,
        expected: TransferStatus | None,
        authorization: Authorization,
        claims: Sequence[BudgetClaim],
        audits: Sequence[AuditRecord],
        now: datetime,
        freeze: FreezeOrder | None = None,
    ) -> bool:
        """:meth:`settle` plus, in the same transaction, ``authorization`` (captured) and its
        posting on every claim's balance row, past the limit if need be (the excess is kept
        as the row's overdraft), and ``freeze``. False, writing nothing, when the record was
        already settled."""
        ...

    def awaiting(self, network: str, limit: int) -> list[TransferRecord]:
        """Transfers still waiting for an authorization to claim them, oldest first."""
        ...

    def transfers(
        self, network: str | None, status: TransferStatus | None, limit: int
    ) -> list[TransferRecord]:
        """Recorded transfers, oldest first (for reports and tests)."""
        ...

    # -- what a transfer may match --------------------------------------------------------
    def payment_for_tx(self, network: str, tx_id: str) -> PaymentLink | None:
        """The custodial payment whose transaction is ``tx_id``, if Treasurer sent it."""
        ...

    def captured_with_tx(self, wallet_id: str, tx_id: str) -> list[Authorization]:
        """Authorizations of ``wallet_id`` captured with transaction ``tx_id``."""
        ...

    def candidates(self, wallet_id: str, since: datetime, limit: int) -> list[Authorization]:
        """``wallet_id``'s authorizations created since ``since`` that a transfer could still
        belong to: reserving ones, and captured ones (oldest first)."""
        ...

    def linked(self, authorization_ids: Sequence[str]) -> set[str]:
        """Those of ``authorization_ids`` already matched to an observed transfer."""
        ...
