"""Finishing broadcast payments from their receipts: capture or void, exactly once.

The confirmer holds no state of its own: everything it needs (the transaction id, the
authorization) is on the stored payment, so a fresh process finishes what a crashed one left in
``broadcast``. The order of each step is what makes repeating it safe:

- confirmed: capture the authorization first (a repeated capture of the same amount returns
  the captured authorization), then move the payment ``broadcast → confirmed``;
- reverted or dropped: void first (a repeated void returns the voided authorization), then
  ``broadcast → failed``.

The kind of payment does not matter here: a contract call that reverts voids its authorization
exactly like a transfer that does, and an approval is captured at its full allowance.

A crash between the two steps leaves the payment in ``broadcast``; the next run redoes the
first step harmlessly and makes the move. The move is guarded on ``broadcast``, so racing
confirmers make it once.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import replace

from treasurer.domain.errors import InvalidState, NotFound, TreasurerError
from treasurer.domain.payment import Payment, PaymentState
from treasurer.service.chain_ports import Receipt, ReceiptStatus
from treasurer.service.chain_registry import ChainRegistry, fee_usd_micros
from treasurer.service.governance import GovernanceCore
from treasurer.service.ports import PaymentStore

log = logging.getLogger(__name__)

#: Most payments one ``confirm_pending`` call looks at (bounded work per tick).
MAX_CONFIRM_BATCH = 1000
_ACTOR = "system:confirmer"


class PaymentConfirmer:
    """Reads receipts and finishes payments over governance and a payment store."""

    def __init__(
        self, governance: GovernanceCore, payments: PaymentStore, chains: ChainRegistry
    ) -> None:
        self.governance = governance
        self.payments = payments
        self.chains = chains

    def confirm(self, payment_id: str) -> Payment:
        """Finish ``payment_id`` if its transaction has an outcome; return it as it stands."""
        payment = self.payments.get(payment_id)
        if payment is None:
            raise NotFound(f"payment {payment_id!r} does not exist")
        if payment.state is not PaymentState.BROADCAST or payment.tx_id is None:
            return payment
        receipt = self.chains.get(payment.chain).receipt(payment.tx_id)
        if receipt.status is ReceiptStatus.PENDING:
            return payment
        finished = self._finish(payment, receipt)
        if self.payments.update(finished, PaymentState.BROADCAST):
            return finished
        current = self.payments.get(payment_id)
        assert current is not None
        return current

    def _finish(self, payment: Payment, receipt: Receipt) -> Payment:
        assert payment.authorization_id is not None
        gov = self.governance
        now = gov.clock.now()
        fee_usd = fee_usd_micros(gov.cache.get(), gov.store, payment.chain, receipt.fee_paid, now)
        done = replace(
            payment,
            fee_paid=receipt.fee_paid,
            fee_paid_usd_micros=fee_usd,
            finalized_at=now,
            updated_at=now,
        )
        if receipt.status is ReceiptStatus.CONFIRMED:
            error = None
            try:
                gov.capture(payment.authorization_id, tx_hash=payment.tx_id, actor=_ACTOR)
            except InvalidState as exc:
                # The transfer landed but the reservation was already released (it expired
                # before the receipt came): keep the truth visible rather than hide it.
                error = f"capture_failed: {exc.code}: {exc.message}"
            return replace(done, state=PaymentState.CONFIRMED, error=error)
        # An InvalidState here means it was already released (expired): nothing is reserved.
        with contextlib.suppress(InvalidState):
            gov.void(
                payment.authorization_id,
                reason=f"transaction {payment.tx_id} {receipt.status.value}",
                actor=_ACTOR,
            )
        return replace(done, state=PaymentState.FAILED, error=f"transaction_{receipt.status.value}")

    def confirm_pending(self, limit: int = 100) -> int:
        """Finish up to ``limit`` unfinished payments, oldest first; returns how many finished.

        Payments still in ``created`` are left alone: without a transaction id there is no
        receipt to read (they are being signed, or their process died mid-send). A chain that
        does not answer (a transient error) skips its payments until the next call.
        """
        finished = 0
        batch = min(limit, MAX_CONFIRM_BATCH)
        for payment in self.payments.unfinished(batch, frozenset({PaymentState.BROADCAST})):
            try:
                done = self.confirm(payment.id).done
            except TreasurerError as exc:
                if not exc.transient:
                    raise
                # One unreachable node must not hold up the payments of the other chains.
                log.warning("cannot read the receipt of %s yet: %s", payment.id, exc.message)
                continue
            finished += int(done)
        return finished
