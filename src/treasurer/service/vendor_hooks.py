"""Pre-sign hooks: a wallet vendor asks Treasurer before its signer signs.

Some custody vendors call out before signing (Fireblocks' API co-signer callback, BitGo's
policy webhooks, ...). Such a call is an authorization in the vendor's own wire format, so the
work splits in two:

- a **vendor adapter** (``treasurer.adapters.vendors``) speaks the wire format: it
  authenticates the call, maps it to a :class:`PreSignRequest`, and answers the
  :class:`PreSignVerdict` in the vendor's format. It implements :class:`VendorHook`, the
  whole interface an HTTP route needs: raw body in, raw answer out.
- the :class:`PreSignGate` (here) is vendor-neutral: it authorizes the spend like any
  ``POST /v1/authorizations``, for the wallet's own agent, with the idempotency key
  ``<vendor>:<reference>``. A vendor that asks twice about one transaction (its retries, or
  an approval stage and a signing stage) gets one authorization, and a transaction whose
  content changed between two asks is refused (``idempotency_key_reused``).

Verdicts: an authorization that may be captured (``pending``, or already ``captured``) is
``APPROVE``; one that waits (delay tier, approvals) is ``RETRY``, and a later ask returns
``APPROVE`` once it is released or approved; a denial, a rejection, an expiry and any request
Treasurer cannot map are ``REJECT`` (fail closed), except errors marked transient (the
database briefly unreachable), which are ``RETRY``. The capture happens later, from the chain:
the reconciliation watcher matches the vendor's transaction to the open authorization by asset,
recipient and amount and captures it with the transaction hash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from treasurer.domain.authorization import Authorization, AuthState
from treasurer.domain.errors import IdempotencyConflict, InvalidState, TreasurerError
from treasurer.service.admin import Governance
from treasurer.service.requests import SpendInput


class PreSignAction(StrEnum):
    APPROVE = "APPROVE"
    REJECT = "REJECT"
    RETRY = "RETRY"


@dataclass(frozen=True, slots=True)
class PreSignRequest:
    """What a vendor's signer is about to sign, in Treasurer's terms.

    ``reference`` is the vendor's id of the transaction (stable across its retries); ``wallet``
    a Treasurer wallet id or ``chain:address``. Either ``amount``/``asset``/``recipient`` or a
    raw call (``to``, ``data``, ``value``) describes the spend.
    """

    vendor: str
    reference: str
    wallet: str
    amount: str | None = None
    asset: str | None = None
    recipient: str | None = None
    to: str | None = None
    data: str | None = None
    value: str | None = None


@dataclass(frozen=True, slots=True)
class PreSignVerdict:
    """The answer: an action, why (for a refusal or a wait), and the authorization behind it."""

    action: PreSignAction
    reason: str | None = None
    authorization_id: str | None = None

    @classmethod
    def reject(cls, reason: str, authorization_id: str | None = None) -> PreSignVerdict:
        return cls(PreSignAction.REJECT, reason, authorization_id)


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """A raw HTTP answer of a vendor hook."""

    status: int
    body: bytes
    media_type: str = "text/plain"


class VendorHook(Protocol):
    """One vendor's pre-sign endpoint(s): the vendor's raw request in, its raw answer out.

    ``operation`` names the endpoint the vendor called (Fireblocks: ``tx_sign_request``). The
    hook authenticates the request itself (with the vendor's keys, not a Treasurer
    credential) and never raises for a request it cannot accept: it answers it.
    """

    @property
    def vendor(self) -> str: ...

    def handle(self, operation: str, body: bytes) -> HookAnswer: ...


#: Vendor name → hook, as the composition root installs them.
VendorHooks = Mapping[str, VendorHook]


class PreSignGate:
    """Turns pre-sign requests into authorizations and verdicts."""

    def __init__(self, governance: Governance) -> None:
        self.gov = governance

    def review(self, request: PreSignRequest) -> PreSignVerdict:
        config = self.gov.cache.get()
        wallet = config.find_wallet(request.wallet)
        if wallet is None:
            return PreSignVerdict.reject(f"wallet {request.wallet} is not registered in Treasurer")
        spend = SpendInput(
            agent=wallet.agent_id,
            wallet=wallet.id,
            amount=request.amount,
            asset=request.asset,
            recipient=request.recipient,
            to=request.to,
            data=request.data,
            value=request.value,
        )
        try:
            result = self.gov.authorize_spend(
                spend,
                idempotency_key=f"{request.vendor}:{request.reference}",
                actor=f"vendor:{request.vendor}",
            )
        except IdempotencyConflict:
            return PreSignVerdict.reject(
                f"transaction {request.reference} changed since Treasurer first reviewed it"
            )
        except TreasurerError as exc:
            if exc.transient:
                return PreSignVerdict(PreSignAction.RETRY, f"{exc.code}: {exc.message}")
            return PreSignVerdict.reject(f"{exc.code}: {exc.message}")
        auth = result.authorization
        if result.replayed:
            auth = self.gov.store.get_authorization(auth.id) or auth
        return self._verdict(auth, result.codes)

    def _verdict(self, auth: Authorization, codes: list[str]) -> PreSignVerdict:
        now = self.gov.clock.now()
        state = auth.state
        if state is AuthState.DELAYED and auth.release_after and auth.release_after <= now:
            try:
                auth = self.gov.release_delayed(auth.id, actor="system")
            except InvalidState:
                auth = self.gov.store.get_authorization(auth.id) or auth
            state = auth.state
        if state is AuthState.PENDING:
            if auth.expires_at is not None and auth.expires_at <= now:
                return PreSignVerdict.reject(f"authorization {auth.id} expired", auth.id)
            return PreSignVerdict(PreSignAction.APPROVE, None, auth.id)
        if state is AuthState.CAPTURED:
            return PreSignVerdict(PreSignAction.APPROVE, None, auth.id)
        if state is AuthState.DELAYED:
            until = auth.release_after.isoformat() if auth.release_after else "later"
            return PreSignVerdict(PreSignAction.RETRY, f"delayed until {until}", auth.id)
        if state is AuthState.PENDING_APPROVAL:
            return PreSignVerdict(PreSignAction.RETRY, "waiting for approvals", auth.id)
        if state is AuthState.DENIED:
            why = ", ".join(codes) or "denied"
            return PreSignVerdict.reject(f"denied by Treasurer: {why}", auth.id)
        return PreSignVerdict.reject(f"authorization {auth.id} is {state.value}", auth.id)
