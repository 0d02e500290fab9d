"""Executing the delay and approval queue, exactly once, across nodes and crashes.

A payment in the delay or approval tier is stored ``queued`` with its authorization holding the
reservation (``delayed`` or ``pending_approval``). It becomes executable when that
authorization turns ``pending``: :meth:`GovernanceCore.release_due` once the delay has passed,
or the approvals (:mod:`.approvals`) once the votes are in. Each run of
:meth:`PaymentQueue.execute_ready` (``treasurer serve`` calls it every tick, after
``release_due``) then:

1. **fails what can no longer run**: queued payments whose authorization was rejected, expired
   or voided while they waited (``queued → failed``, the reason in ``error``; nothing is
   reserved any more);
2. **finishes interrupted cancels**: a cancelled payment whose authorization still reserves is
   voided (see :mod:`.payments_cancel`);
3. **claims** executable payments: ``queued → created`` under a fresh claim token, in one
   transaction per batch (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the guarded update
   everywhere), so each payment is claimed by exactly one node; claims a dead node left
   behind (older than :data:`CLAIM_LEASE_S`, nothing sent) are taken over;
4. **decides again** on the facts of now (:meth:`GovernanceCore.recheck_spend`: freezes,
   agent status, policies, prices, and the budgets without this payment's own reservation,
   which is already in them) with a fresh fee quote. A spend denied now is voided and
   ``failed`` with the reasons (``denied_on_execution: …``);
5. **commits to send**: the claim token is swapped for ``sending``
   (:data:`~treasurer.service.queue_ports.SENDING`); a node whose claim was taken over while
   it stalled loses this swap and stops without touching anything;
6. **signs and broadcasts** through the pipeline's own path (:meth:`PaymentService._execute`:
   freeze re-check just before signing, hold the reservation, send, ``created → broadcast``),
   after which the confirmer captures it like any other payment.

**Crash safety.** Every step is a guarded write, so a crash leaves one of these states and the
next run (on any node, after a restart) finishes it:

- ``queued``, authorization approved or released: claimed by the next run (nothing was done).
- ``queued``, authorization settled: step 1 fails it.
- ``cancelled``, authorization still reserving: step 2 releases it.
- ``created`` with a claim token, no transaction: taken over after the lease and executed
  (nothing can have been sent: sending happens only after step 5).
- ``created`` with an authorization voided but the payment not yet ``failed`` (a crash inside
  an abort): taken over; the hold then fails and it is failed with that reason.
- ``broadcast``: the confirmer finishes it.

The one state no run can finish on its own is ``created`` with the ``sending`` token and no
transaction id: the process died between committing to send and recording the transaction,
so the transaction may or may not be on the chain (the chain port signs and broadcasts in one
call; the instant tier has the same window). It is never sent again. Its reservation stays
held (for up to :data:`~treasurer.service.payments.BROADCAST_HOLD_S` once held, else until the
authorization expires), so the budgets stay on the safe side, and an operator resolves it from
the chain. It is logged on every run that sees it.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import TreasurerError
from treasurer.domain.money import format_amount
from treasurer.domain.outcome import Decision
from treasurer.domain.payment import Payment, PaymentState
from treasurer.service.chain_registry import native_asset
from treasurer.service.payments_cancel import release_cancelled
from treasurer.service.payments_input import PaymentInput, PaymentKind
from treasurer.service.payments_resolve import resolve_payment
from treasurer.service.queue_ports import PaymentQueueStore

if TYPE_CHECKING:
    from treasurer.service.payments import PaymentService

log = logging.getLogger(__name__)

#: Most payments one run looks at in each step (bounded work per tick).
MAX_QUEUE_BATCH: Final = 100
#: A claim older than this, with nothing sent, belongs to a node that died or stalled.
CLAIM_LEASE_S: Final = 120
_SETTLED_REASONS: Final = {
    "rejected": "approval_rejected: the approvers rejected this payment",
    "expired": "authorization_expired: it was not approved, or not executed, in time",
    "voided": "authorization_voided: its reservation was released while it waited",
}


@dataclass(frozen=True, slots=True)
class QueueRun:
    """What one :meth:`PaymentQueue.execute_ready` did."""

    broadcast: int = 0  # signed and sent
    failed: int = 0  # denied on execution, refused, or settled while waiting
    released: int = 0  # cancelled payments whose reservation was released by this run
    claimed: int = 0  # claimed (or taken over) by this run

    @property
    def changed(self) -> int:
        return self.broadcast + self.failed + self.released


class PaymentQueue:
    """The executor of queued payments, over the pipeline and the queue store."""

    def __init__(
        self,
        service: PaymentService,
        store: PaymentQueueStore,
        *,
        lease_s: int = CLAIM_LEASE_S,
    ) -> None:
        self.service = service
        self.store = store
        self.lease_s = lease_s

    def execute_ready(self, limit: int = MAX_QUEUE_BATCH) -> QueueRun:
        """One pass over the queue (see the module docstring); returns what it did."""
        batch = max(1, min(limit, MAX_QUEUE_BATCH))
        failed = self._fail_settled(batch)
        released = self._finish_cancels(batch)
        clock = self.service.governance.clock
        now = clock.now()
        token = secrets.token_hex(12)
        stale_before = now - timedelta(seconds=self.lease_s)
        claimed = self.store.reclaim_stale(batch, now, stale_before, token)
        claimed += self.store.claim_ready(batch, now, token)
        broadcast = 0
        for payment in claimed:
            done = self._execute(payment, token)
            broadcast += done.state is PaymentState.BROADCAST
            failed += done.state is PaymentState.FAILED
        return QueueRun(broadcast, failed, released, len(claimed))

    # -- steps ----------------------------------------------------------------------------
    def _fail_settled(self, batch: int) -> int:
        failed = 0
        now = self.service.governance.clock.now()
        for payment, auth_state in self.store.settled_queued(batch):
            error = _SETTLED_REASONS.get(
                auth_state, f"authorization_{auth_state}: it can no longer be executed"
            )
            done = replace(
                payment, state=PaymentState.FAILED, error=error, finalized_at=now, updated_at=now
            )
            failed += self.service.payments.update(done, PaymentState.QUEUED)
        return failed

    def _finish_cancels(self, batch: int) -> int:
        released = 0
        for payment in self.store.unreleased_cancelled(batch):
            released += release_cancelled(self.service.governance, payment, "system:payments")
        return released

    def _execute(self, payment: Payment, token: str) -> Payment:
        """Decide again and, if still allowed, send; see the module docstring."""
        service = self.service
        assert payment.authorization_id is not None
        try:
            config = service.governance.cache.get()
            resolved = resolve_payment(config, service.chains, request_of(payment, config))
            if resolved.fingerprint != payment.request_hash:
                raise TreasurerError(
                    "the payment no longer resolves to what was decided (its asset or wallet "
                    "changed while it waited)",
                    code="request_changed",
                )
            fee, fee_usd = service.quote(config, resolved)
            spend = resolved.spend_with_fee(fee, fee_usd)
            decision = service.governance.recheck_spend(spend, payment.authorization_id)
        except TreasurerError as exc:
            if exc.transient:  # a node that did not answer: the claim is retaken later
                log.warning("queued payment %s not executed yet: %s", payment.id, exc.message)
                return payment
            return self._finish(payment, token, f"{exc.code}: {exc.message}")
        if not decision.allowed:
            return self._finish(payment, token, denial_text(decision))
        if not self.store.mark_sending(payment.id, token, service.governance.clock.now()):
            return service.get(payment.id)  # another node took it over: its to finish
        quoted = replace(payment, fee_quote=fee.max_fee, fee_quote_usd_micros=fee_usd)
        return service.execute_decided(quoted, resolved, fee)

    def _finish(self, payment: Payment, token: str, error: str) -> Payment:
        """Fail a claimed payment (voiding its authorization), if the claim is still ours."""
        if not self.store.mark_sending(payment.id, token, self.service.governance.clock.now()):
            return self.service.get(payment.id)
        return self.service.abort(payment, error)


def request_of(payment: Payment, config: OrgConfig) -> PaymentInput:
    """The request a stored payment was made with, for the pipeline to resolve again.

    Amounts go back to decimal text in token units, exactly (they were parsed from such
    text); a call's native ``value`` needs the native coin's decimals. An asset or native coin
    no longer registered resolves to ``unknown_asset``, which fails the payment.
    """
    kind = PaymentKind(payment.kind)
    if kind is PaymentKind.CALL:
        value = None
        if payment.value:
            native = native_asset(config, payment.chain)
            value = format_amount(payment.value, 0 if native is None else native.decimals)
        return PaymentInput(
            payment.agent_id,
            payment.wallet_id,
            kind.value,
            to=payment.to,
            data=payment.data,
            value=value,
        )
    asset = config.assets.get(payment.asset_id)
    return PaymentInput(
        payment.agent_id,
        payment.wallet_id,
        kind.value,
        recipient=payment.recipient,
        amount=format_amount(payment.amount, 0 if asset is None else asset.decimals),
        asset=payment.asset_id,
    )


def denial_text(decision: Decision) -> str:
    """``denied_on_execution: agent_frozen: agent a is frozen; …``: every reason, in order."""
    reasons = "; ".join(f"{r.code}: {r.message}" for r in decision.reasons)
    return f"denied_on_execution: {reasons or 'denied'}"
