"""The custodial payment pipeline (SPEC section 4): decide, reserve, sign, broadcast, confirm.

``pay`` reuses governance for everything budget-shaped: the decision, the reservation, the
idempotency of the authorization and its audit trail all come from
:meth:`GovernanceCore.authorize_spend` (its key namespaced ``pay:<key>``), so an agent's
custodial payments and its governance-mode spends share one set of budgets. What this module
adds is the chain side, in an order chosen so that a crash never loses track of money:

1. validate and resolve (the wallet must be custodial), quote the fee and value it in USD;
2. record the payment (``created``) under its idempotency key — a retry finds it here;
3. authorize (decide + reserve); denied → ``denied``; delay/approval → ``queued``;
4. look the signer up, then re-read the config: an agent or wallet frozen since the decision
   is not signed for (``failed``/``frozen_before_signing``, reservation voided);
5. sign and broadcast, then record the transaction id and the raw signed transaction
   (``broadcast``; a notify-tier payment writes its outbox row in that same transaction).

Confirmation (:mod:`.payments_confirm`) captures or voids the authorization from the receipt.

Why the raw transaction is recorded right after the broadcast and not before: the ``Chain``
port signs and broadcasts in one call and computes the transaction id itself, so the earliest
point the service knows both is when ``send`` returns. The signer is wrapped to capture the
signed bytes on their way out.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Literal, overload

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    TreasurerError,
)
from treasurer.domain.money import Asset, format_amount, parse_amount, parse_usd, usd_decimal_text
from treasurer.domain.org import Custody, Wallet
from treasurer.domain.outcome import Tier
from treasurer.domain.payment import Notification, Payment, PaymentState, can_move
from treasurer.service.chain_ports import Chain, FeeQuote, Transfer, Vault
from treasurer.service.chain_registry import ChainRegistry, fee_usd_micros
from treasurer.service.governance import AuthorizationResult, GovernanceCore, new_id
from treasurer.service.payments_confirm import PaymentConfirmer
from treasurer.service.payments_results import (
    PaymentPreview,
    PaymentResult,
    fingerprint,
    notice_payload,
)
from treasurer.service.payments_signing import RecordingSigner, frozen_reason
from treasurer.service.ports import PaymentStore
from treasurer.service.requests import SpendInput

__all__ = ["PaymentPreview", "PaymentResult", "PaymentService"]

_QUEUED_TIERS = frozenset({Tier.DELAY.value, Tier.APPROVAL.value})
_GWEI = 10**9


@dataclass(frozen=True, slots=True)
class _Request:
    agent_id: str
    wallet: Wallet
    asset: Asset
    chain: Chain
    transfer: Transfer
    fingerprint: str


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
    ) -> None:
        self.governance = governance
        self.payments = payments
        self.chains = chains
        self.vault = vault
        self.confirmer = PaymentConfirmer(governance, payments, chains)

    # -- resolution -----------------------------------------------------------------------
    def _resolve(
        self,
        config: OrgConfig,
        agent: str,
        wallet_ref: str,
        recipient: str,
        amount: object,
        asset_ref: str,
    ) -> _Request:
        """Everything checkable before anything is recorded: names, custody, asset, amount.

        Refusals here are errors, not decisions: a payment Treasurer cannot even build (an
        external wallet, an unknown asset) has nothing to decide.
        """
        if agent not in config.agents:
            raise NotFound(f"agent {agent!r} does not exist", field="agent")
        wallet = config.find_wallet(wallet_ref)
        if wallet is None:
            raise NotFound(f"wallet {wallet_ref!r} does not exist", field="wallet")
        if wallet.custody is not Custody.LOCAL:
            raise InvalidRequest(
                f"wallet {wallet.handle} is held by {wallet.vendor}, not by Treasurer; authorize "
                "and capture its spends instead (governance mode)",
                field="wallet",
                code="wallet_not_custodial",
            )
        asset = config.find_asset(asset_ref, wallet.chain)
        if asset is None or asset.chain != wallet.chain:
            raise InvalidRequest(
                f"asset {asset_ref!r} is not registered on {wallet.chain}",
                field="asset",
                code="unknown_asset",
            )
        if not recipient:
            raise InvalidRequest("recipient is required for a payment", field="recipient")
        base = parse_amount(amount, asset.decimals)
        chain = self.chains.get(wallet.chain)
        transfer = Transfer(wallet.address, recipient, base, asset.address)
        hashed = fingerprint(agent, wallet, asset, base, recipient)
        return _Request(agent, wallet, asset, chain, transfer, hashed)

    def _spend(self, request: _Request, fee: FeeQuote | None, fee_usd: int | None) -> SpendInput:
        """The governance request: the transfer plus its fee, so ``fee_limit`` policies see it."""
        gwei = None
        if fee is not None and fee.max_fee_per_gas is not None:
            gwei = -(-fee.max_fee_per_gas // _GWEI)  # rounded up: a limit may only deny early
        return SpendInput(
            agent=request.agent_id,
            wallet=request.wallet.id,
            amount=format_amount(request.transfer.amount, request.asset.decimals),
            asset=request.asset.id,
            recipient=request.transfer.recipient,
            fee_usd=None if fee_usd is None else usd_decimal_text(fee_usd),
            gas_price_gwei=gwei,
        )

    def _quote(self, config: OrgConfig, request: _Request) -> tuple[FeeQuote, int | None]:
        """The chain's fee quote and its USD value (None when the native price is unknown)."""
        fee = request.chain.quote_fee(request.transfer)
        gov = self.governance
        usd = fee_usd_micros(config, gov.store, request.wallet.chain, fee.max_fee, gov.clock.now())
        return fee, usd

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

        A retry with the same ``idempotency_key`` returns the first payment; with a different
        request it raises :class:`IdempotencyConflict`. ``max_fee_usd`` (decimal string) caps
        the network fee: a quote above it fails the payment with ``fee_above_cap``.
        """
        if not idempotency_key:
            raise InvalidRequest("idempotency_key is required", field="idempotency_key")
        cap = None if max_fee_usd is None else parse_usd(max_fee_usd, field="max_fee_usd")
        config = self.governance.cache.get()
        request = self._resolve(config, agent, wallet, recipient, amount, asset)
        if dry_run:
            return self._preview(config, request)
        first = self.payments.find_by_idempotency_key(request.agent_id, idempotency_key)
        if first is not None:
            return self._replay(first, request)
        fee, fee_usd = self._quote(config, request)
        now = self.governance.clock.now()
        payment, fresh = self.payments.insert(
            Payment(
                id=new_id("pay"),
                agent_id=request.agent_id,
                wallet_id=request.wallet.id,
                chain=request.wallet.chain,
                asset_id=request.asset.id,
                recipient=request.transfer.recipient,
                amount=request.transfer.amount,
                state=PaymentState.CREATED,
                request_hash=request.fingerprint,
                created_at=now,
                updated_at=now,
                idempotency_key=idempotency_key,
                fee_quote=fee.max_fee,
                fee_quote_usd_micros=fee_usd,
            )
        )
        if not fresh:
            return self._replay(payment, request)
        try:
            result = self.governance.authorize_spend(
                self._spend(request, fee, fee_usd),
                idempotency_key=f"pay:{idempotency_key}",
                actor=f"agent:{request.agent_id}",
            )
        except TreasurerError as exc:
            self._fail(payment, f"{exc.code}: {exc.message}")
            raise
        return self._route(payment, result, request, fee, cap)

    def _preview(self, config: OrgConfig, request: _Request) -> PaymentPreview:
        """Decide with the fee quote, and say whether the chain would accept it; a transfer
        that would revert cannot be quoted, which the simulation then explains."""
        fee: FeeQuote | None = None
        fee_usd = None
        with contextlib.suppress(Conflict):  # the adapters' CallReverted is a Conflict
            fee, fee_usd = self._quote(config, request)
        decision = self.governance.check_spend(self._spend(request, fee, fee_usd))
        return PaymentPreview(decision, fee, fee_usd, request.chain.simulate(request.transfer))

    def _replay(self, first: Payment, request: _Request) -> PaymentResult:
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
        request: _Request,
        fee: FeeQuote,
        cap: int | None,
    ) -> PaymentResult:
        auth = result.authorization
        now = self.governance.clock.now()
        decided = replace(payment, authorization_id=auth.id, tier=auth.tier, updated_at=now)
        if not result.allowed:
            denied = replace(decided, state=PaymentState.DENIED, finalized_at=now)
            return PaymentResult(self._move(denied, PaymentState.CREATED), result.decision)
        if cap is not None and (
            payment.fee_quote_usd_micros is None or payment.fee_quote_usd_micros > cap
        ):
            self.governance.void(auth.id, reason="fee_above_cap", actor="system:payments")
            quoted = payment.fee_quote_usd_micros
            failed = replace(
                decided,
                state=PaymentState.FAILED,
                finalized_at=now,
                error="fee_above_cap: the fee quote "
                + ("is unknown" if quoted is None else f"of {usd_decimal_text(quoted)} USD")
                + f" is above the {usd_decimal_text(cap)} USD cap",
            )
            return PaymentResult(self._move(failed, PaymentState.CREATED), result.decision)
        if auth.tier in _QUEUED_TIERS:
            queued = replace(decided, state=PaymentState.QUEUED)
            return PaymentResult(self._move(queued, PaymentState.CREATED), result.decision)
        return PaymentResult(self._execute(decided, request, fee), result.decision)

    def _execute(self, payment: Payment, request: _Request, fee: FeeQuote) -> Payment:
        """Sign and broadcast an instant or notify payment, unless frozen since the decision."""
        assert payment.authorization_id is not None
        try:
            signer = RecordingSigner(self.vault.signer(request.wallet.address))
        except TreasurerError as exc:  # the vault lacks the key: release, don't hold till expiry
            return self._abort(payment, f"signer_unavailable: {exc.code}: {exc.message}")
        frozen = frozen_reason(self.governance.cache.get(), payment.agent_id, payment.wallet_id)
        if frozen is not None:
            return self._abort(payment, f"frozen_before_signing: {frozen}")
        try:  # keep the reservation until the chain decides, however slow confirmation is
            self.governance.hold(
                payment.authorization_id, seconds=BROADCAST_HOLD_S, actor="system:payments"
            )
        except TreasurerError as exc:
            return self._abort(payment, f"{exc.code}: {exc.message}")
        try:
            tx_id = request.chain.send(request.transfer, signer, fee)
        except TreasurerError as exc:  # refused or never sent: nothing can land
            return self._abort(payment, f"{exc.code}: {exc.message}")
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
            notification = Notification("payment.notify", notice_payload(sent))
        return self._move(sent, PaymentState.CREATED, notification)

    def _abort(self, payment: Payment, error: str) -> Payment:
        assert payment.authorization_id is not None
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
