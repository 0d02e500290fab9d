"""Cancelling a queued payment: by its agent, a finance key, an admin, or a decommission.

Only a ``queued`` payment can be cancelled: one the executor has claimed is on its way to the
chain (``payment_not_cancellable``, 409), and one already broadcast cannot be recalled.

Two steps, in this order, each exactly once:

1. ``queued → cancelled``, guarded on ``queued``. This is the step that decides the race with
   the queue executor, whose claim is the same guarded move out of ``queued``: exactly one of
   them wins, so a cancelled payment is never sent and a claimed one is never "cancelled".
2. void the authorization, releasing the reservation (budget headroom comes back at once).

A crash between the two leaves a cancelled payment whose authorization still reserves; the
next queue run (:mod:`.payments_queue`) or a repeated cancel finishes it. Cancelling a
cancelled payment returns it (and finishes step 2 if needed): the call is idempotent.
"""

from __future__ import annotations

from dataclasses import replace

from treasurer.domain.authorization import RESERVING_STATES
from treasurer.domain.errors import InvalidState, NotFound
from treasurer.domain.payment import Payment, PaymentState
from treasurer.service.governance import GovernanceCore
from treasurer.service.ports import PaymentStore


def cancel_payment(
    governance: GovernanceCore, payments: PaymentStore, payment_id: str, *, actor: str
) -> Payment:
    """Cancel ``payment_id`` on behalf of ``actor`` (see the module docstring)."""
    payment = payments.get(payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id!r} does not exist")
    if payment.state is PaymentState.QUEUED:
        now = governance.clock.now()
        cancelled = replace(
            payment,
            state=PaymentState.CANCELLED,
            error=f"cancelled by {actor}",
            finalized_at=now,
            updated_at=now,
        )
        if payments.update(cancelled, PaymentState.QUEUED):
            release_cancelled(governance, cancelled, actor)
            return cancelled
        current = payments.get(payment_id)
        assert current is not None
        payment = current
    if payment.state is PaymentState.CANCELLED:
        release_cancelled(governance, payment, actor)
        return payment
    raise InvalidState(
        f"payment {payment.id} is {payment.state.value}; only a queued payment can be "
        "cancelled (one already claimed for execution or sent cannot be recalled)",
        code="payment_not_cancellable",
    )


def release_cancelled(governance: GovernanceCore, payment: Payment, actor: str) -> bool:
    """Void the authorization of a cancelled payment; True when this call released it."""
    if payment.authorization_id is None:
        return False
    auth = governance.store.get_authorization(payment.authorization_id)
    if auth is None or auth.state not in RESERVING_STATES:
        return False  # already released (voided, rejected, expired)
    try:
        governance.void(
            payment.authorization_id, reason=f"payment {payment.id} cancelled", actor=actor
        )
    except InvalidState:
        return False  # released meanwhile by someone else
    return True
