"""The custodial payment pipeline (SPEC section 4): decide, reserve, sign, broadcast, confirm.

One entry point, :meth:`PaymentService.submit`, takes a :class:`PaymentInput` of any kind: a
``transfer`` (native coin or token), an ``approve`` (a token allowance) or a ``call`` (raw
calldata to a contract, decoded so the decision sees the spend it amounts to; see
:mod:`.payment_calls`). :meth:`PaymentService.pay` is the shorthand for transfers.

Payments reuse governance for everything budget-shaped: the decision, the reservation, the
idempotency of the authorization and its audit trail all come from
:meth:`GovernanceCore.authorize_spend` (its key namespaced ``pay:<key>``), so an agent's
custodial payments and its governance-mode spends share one set of budgets. What this module
adds is the chain side, in an order chosen so that a crash never loses track of money:

1. validate and resolve (:mod:`.payments_resolve`: the wallet must be custodial), quote the
   fee and value it in USD;
2. record the payment (``created``) under its idempotency key — a retry finds it here;
3. authorize (decide + reserve); denied → ``denied``; delay/approval → ``queued``, executed
   later by :mod:`.payments_queue` (which decides again first) unless cancelled
   (:mod:`.payments_cancel`);
4. look the signer up, then re-read the config: an agent or wallet frozen since the decision
   is not signed for (``failed``/``frozen_before_signing``, reservation voided);
5. sign and broadcast, then record the transaction id and the raw signed transaction
   (``broadcast``; a notify-tier payment writes its outbox row in that same transaction).

Confirmation (:mod:`.payments_confirm`) captures or voids the authorization from the receipt:
a call that reverts on chain voids its authorization like a failed transfer.

Why the raw transaction is recorded right after the broadcast and not before: the ``Chain``
port signs and broadcasts in one call and computes the transaction id itself, so the earliest
point the service knows both is when ``send`` returns. The signer is wrapped to capture the
signed bytes on their way out.

Every kind may wait in the delay and approval tiers: the payment row keeps the request as
asked (kind, contract, calldata, native value) beside the decided asset, amount and
counterparty, so the queue executes later exactly what was decided.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Literal, overload

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    TreasurerError,
)
from treasurer.domain.money import parse_usd, usd_decimal_text
from treasurer.domain.outcome import Tier
from treasurer.domain.payment import Notification, Payment, PaymentState, can_move
from treasurer.service.chain_ports import FeeQuote, Vault
from treasurer.service.chain_registry import ChainRegistry, fee_usd_micros
from treasurer.service.governance import AuthorizationResult, GovernanceCore, new_id
from treasurer.service.payments_cancel import cancel_payment
from treasurer.service.payments_confirm import PaymentConfirmer
from treasurer.service.payments_input import PaymentInput, PaymentKind
from treasurer.service.payments_queue import PaymentQueue, QueueRun
from treasurer.service.payments_resolve import ResolvedPayment, resolve_payment
from treasurer.service.payments_results import PaymentPreview, PaymentResult, notice_payload
from treasurer.service.payments_signing import RecordingSigner, frozen_reason
from treasurer.service.ports import PaymentStore
from treasurer.service.queue_ports import PaymentQueueStore

__all__ = [
    "PaymentInput",
    "PaymentKind",
    "PaymentPreview",
    "PaymentResult",
    "PaymentService",
    "QueueRun",
]

_QUEUED_TIERS = frozenset({Tier.DELAY.value, Tier.APPROVAL.value})

#: How long a broadcast payment keeps its reservation while waiting for its receipt.
BROADCAST_HOLD_S = 7 * 86_400


class PaymentService:
    """Custodial payments over governance, a payment store, the chains and the vault."""

    def __init__(
        self,
        governance: GovernanceCore,
        payments: PaymentStore,
        chains: ChainRegistry,
        vault: Vault,
        *,
        queue: PaymentQueueStore,
    ) -> None:
        self.governance = governance
        self.payments = payments
        self.chains = chains
        self.vault = vault
        self.confirmer = PaymentConfirmer(governance, payments, chains)
        self.queue = PaymentQueue(self, queue)

    def quote(self, config: OrgConfig, request: ResolvedPayment) -> tuple[FeeQuote, int | None]:
        """The chain's fee quote and its USD value (None when the native price is unknown)."""
        fee = request.chain.quote_fee(request.transfer)
        gov = self.governance
        usd = fee_usd_micros(config, gov.store, request.wallet.chain, fee.max_fee, gov.clock.now())
        return fee, usd

    # -- submit ---------------------------------------------------------------------------
    @overload
    def submit(
        self, request: PaymentInput, *, idempotency_key: str, dry_run: Literal[False] = False
    ) -> PaymentResult: ...

    @overload
    def submit(
        self, request: PaymentInput, *, idempotency_key: str, dry_run: Literal[True]
    ) -> PaymentPreview: ...

    @overload
    def submit(
        self, request: PaymentInput, *, idempotency_key: str, dry_run: bool = False
    ) -> PaymentResult | PaymentPreview: ...

    def submit(
        self, request: PaymentInput, *, idempotency_key: str, dry_run: bool = False
    ) -> PaymentResult | PaymentPreview:
        """Carry out one payment of any kind (see :class:`PaymentInput` for the fields).

        A retry with the same ``idempotency_key`` returns the first payment; with a different
        request (another kind, amount, counterparty, contract, calldata or value) it raises
        :class:`IdempotencyConflict`. ``request.max_fee_usd`` caps the network fee: a quote
        above it fails the payment with ``fee_above_cap``. ``dry_run`` decides, quotes and
        simulates, and records nothing.
        """
        if not idempotency_key:
            raise InvalidRequest("idempotency_key is required", field="idempotency_key")
        fee_cap = request.max_fee_usd
        cap = None if fee_cap is None else parse_usd(fee_cap, field="max_fee_usd")
        config = self.governance.cache.get()
        resolved = resolve_payment(config, self.chains, request)
        if dry_run:
            return self._preview(config, resolved)
        first = self.payments.find_by_idempotency_key(resolved.agent_id, idempotency_key)
        if first is not None:
            return self._replay(first, resolved)
        fee, fee_usd = self.quote(config, resolved)
        now = self.governance.clock.now()
        payment, fresh = self.payments.insert(
            _with_request(
                Payment(
                    id=new_id("pay"),
                    agent_id=resolved.agent_id,
                    wallet_id=resolved.wallet.id,
                    chain=resolved.wallet.chain,
                    asset_id=resolved.asset.id,
                    recipient=resolved.counterparty,
                    amount=resolved.amount,
                    state=PaymentState.CREATED,
                    request_hash=resolved.fingerprint,
                    created_at=now,
                    updated_at=now,
                    idempotency_key=idempotency_key,
                    fee_quote=fee.max_fee,
                    fee_quote_usd_micros=fee_usd,
                ),
                resolved,
            )
        )
        if not fresh:
            return self._replay(payment, resolved)
        try:
            result = self.governance.authorize_spend(
                resolved.spend_with_fee(fee, fee_usd),
                idempotency_key=f"pay:{idempotency_key}",
                actor=f"agent:{resolved.agent_id}",
            )
        except TreasurerError as exc:
            self._fail(payment, f"{exc.code}: {exc.message}")
            raise
        return self._route(payment, result, resolved, fee, cap)

    # -- pay ------------------------------------------------------------------------------
    @overload
    def pay(
        self,
        agent: str,
        wallet: str,
        recipient: str,
        amount: object,
        asset: str,
        *,
        idempotency_key: str,
        dry_run: Literal[False] = False,
        max_fee_usd: object = None,
    ) -> PaymentResult: ...

    @overload
    def pay(
        self,
        agent: str,
        wallet: str,
        recipient: str,
        amount: object,
        asset: str,
        *,
        idempotency_key: str,
        dry_run: Literal[True],
        max_fee_usd: object = None,
    ) -> PaymentPreview: ...

    def pay(
        self,
        agent: str,
        wallet: str,
        recipient: str,
        amount: object,
        asset: str,
        *,
        idempotency_key: str,
        dry_run: bool = False,
        max_fee_usd: object = None,
    ) -> PaymentResult | PaymentPreview:
        """Pay ``amount`` (a decimal string in token units) of ``asset`` to ``recipient``.

        The shorthand for :meth:`submit` of a ``transfer``; the same idempotency and fee cap.
        """
        request = PaymentInput(
            agent,
            wallet,
            kind=PaymentKind.TRANSFER.value,
            recipient=recipient,
            amount=amount,
            asset=asset,
            max_fee_usd=max_fee_usd,
        )
        if dry_run:
            return self.submit(request, idempotency_key=idempotency_key, dry_run=True)
        return self.submit(request, idempotency_key=idempotency_key)

    def _preview(self, config: OrgConfig, request: ResolvedPayment) -> PaymentPreview:
        """Decide with the fee quote, and say whether the chain would accept it; a payment
        that would revert cannot be quoted, which the simulation then explains."""
        fee: FeeQuote | None = None
        fee_usd = None
        with contextlib.suppress(Conflict):  # the adapters' CallReverted is a Conflict
            fee, fee_usd = self.quote(config, request)
        decision = self.governance.check_spend(request.spend_with_fee(fee, fee_usd))
        return PaymentPreview(decision, fee, fee_usd, request.chain.simulate(request.transfer))

    def _replay(self, first: Payment, request: ResolvedPayment) -> PaymentResult:
        if first.request_hash != request.fingerprint:
            raise IdempotencyConflict(
                f"idempotency key {first.idempotency_key!r} was already used for a different "
                f"payment ({first.id}); use a new key for a new payment",
                field="idempotency_key",
            )
        decision: dict[str, object] = {}
        if first.authorization_id is not None:
            auth = self.governance.store.get_authorization(first.authorization_id)
            decision = auth.decision if auth is not None else {}
        return PaymentResult(first, decision, replayed=True)

    # -- routing --------------------------------------------------------------------------
    def _route(
        self,
        payment: Payment,
        result: AuthorizationResult,
        request: ResolvedPayment,
        fee: FeeQuote,
        cap: int | None,
    ) -> PaymentResult:
        auth = result.authorization
        now = self.governance.clock.now()
        decided = replace(payment, authorization_id=auth.id, tier=auth.tier, updated_at=now)
        if not result.allowed:
            denied = replace(decided, state=PaymentState.DENIED, finalized_at=now)
            return PaymentResult(self._move(denied, PaymentState.CREATED), result.decision)
        quoted = payment.fee_quote_usd_micros
        if cap is not None and (quoted is None or quoted > cap):
            error = (
                "fee_above_cap: the fee quote "
                + ("is unknown" if quoted is None else f"of {usd_decimal_text(quoted)} USD")
                + f" is above the {usd_decimal_text(cap)} USD cap"
            )
            return PaymentResult(self.abort(decided, error), result.decision)
        if auth.tier in _QUEUED_TIERS:
            queued = replace(decided, state=PaymentState.QUEUED)
            return PaymentResult(self._move(queued, PaymentState.CREATED), result.decision)
        return PaymentResult(self.execute_decided(decided, request, fee), result.decision)

    def execute_decided(self, payment: Payment, request: ResolvedPayment, fee: FeeQuote) -> Payment:
        """Sign and broadcast a ``created`` payment whose decision allows it now (an instant
        or notify one from :meth:`submit`, or a queued one the executor claimed and decided
        again), unless frozen since the decision."""
        assert payment.authorization_id is not None
        try:
            signer = RecordingSigner(self.vault.signer(request.wallet.address))
        except TreasurerError as exc:  # the vault lacks the key: release, don't hold till expiry
            return self.abort(payment, f"signer_unavailable: {exc.code}: {exc.message}")
        frozen = frozen_reason(self.governance.cache.get(), payment.agent_id, payment.wallet_id)
        if frozen is not None:
            return self.abort(payment, f"frozen_before_signing: {frozen}")
        try:  # keep the reservation until the chain decides, however slow confirmation is
            self.governance.hold(
                payment.authorization_id, seconds=BROADCAST_HOLD_S, actor="system:payments"
            )
        except TreasurerError as exc:
            return self.abort(payment, f"{exc.code}: {exc.message}")
        try:
            tx_id = request.chain.send(request.transfer, signer, fee)
        except TreasurerError as exc:  # refused or never sent: nothing can land
            return self.abort(payment, f"{exc.code}: {exc.message}")
        now = self.governance.clock.now()
        sent = replace(
            payment,
            state=PaymentState.BROADCAST,
            tx_id=tx_id,
            raw_tx=signer.raw_hex,
            broadcast_at=now,
            updated_at=now,
        )
        notification = None
        if payment.tier == Tier.NOTIFY.value:
            notification = Notification("payment.notify", notice_payload(sent, request.kind.value))
        return self._move(sent, PaymentState.CREATED, notification)

    def abort(self, payment: Payment, error: str) -> Payment:
        """Fail a ``created`` payment that will not be sent, releasing its reservation."""
        assert payment.authorization_id is not None
        with contextlib.suppress(InvalidState):  # released already (expired, decommissioned)
            self.governance.void(payment.authorization_id, reason=error, actor="system:payments")
        now = self.governance.clock.now()
        failed = replace(
            payment, state=PaymentState.FAILED, error=error, finalized_at=now, updated_at=now
        )
        return self._move(failed, PaymentState.CREATED)

    def _fail(self, payment: Payment, error: str) -> None:
        now = self.governance.clock.now()
        failed = replace(
            payment, state=PaymentState.FAILED, error=error, finalized_at=now, updated_at=now
        )
        self.payments.update(failed, PaymentState.CREATED)

    def _move(
        self, payment: Payment, expected: PaymentState, notification: Notification | None = None
    ) -> Payment:
        """Write a transition; if another writer moved the payment first, return its state."""
        if not can_move(expected, payment.state):
            raise AssertionError(f"payment {payment.id}: {expected} → {payment.state} is no move")
        if self.payments.update(payment, expected, notification):
            return payment
        current = self.payments.get(payment.id)
        assert current is not None
        return current

    # -- the queue ------------------------------------------------------------------------
    def execute_ready(self, limit: int = 100) -> QueueRun:
        """Execute the queued payments that are due (approved, or their delay served), after
        deciding each again on the facts of now; see :mod:`.payments_queue`."""
        return self.queue.execute_ready(limit)

    def cancel(self, payment_id: str, *, actor: str) -> Payment:
        """Cancel a queued payment and release its reservation; idempotent. Anything but a
        queued (or cancelled) payment is ``payment_not_cancellable``."""
        return cancel_payment(self.governance, self.payments, payment_id, actor=actor)

    # -- confirmation ---------------------------------------------------------------------
    def confirm(self, payment_id: str) -> Payment:
        """Finish one broadcast payment from its receipt (see :class:`PaymentConfirmer`)."""
        return self.confirmer.confirm(payment_id)

    def confirm_pending(self, limit: int = 100) -> int:
        """Finish up to ``limit`` unfinished payments; returns how many reached a final state."""
        return self.confirmer.confirm_pending(limit)

    def get(self, payment_id: str) -> Payment:
        found = self.payments.get(payment_id)
        if found is None:
            raise NotFound(f"payment {payment_id!r} does not exist")
        return found


def _with_request(payment: Payment, request: ResolvedPayment) -> Payment:
    """``payment`` with what the row keeps of the request beyond the decided asset, amount
    and counterparty, so a queued payment executes exactly as asked (see the module
    docstring): the kind, and for a call its contract, calldata and native value."""
    if request.kind is not PaymentKind.CALL:
        return replace(payment, kind=request.kind.value)
    transfer = request.transfer
    return replace(
        payment,
        kind=request.kind.value,
        to=transfer.recipient,
        data="0x" + transfer.data.hex(),
        value=transfer.amount,
    )
