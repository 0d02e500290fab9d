"""The synchronous remote client: :class:`Client`, what :func:`treasurer.connect` returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import httpx

from treasurer import sdk_calls as calls
from treasurer.domain.errors import InvalidRequest
from treasurer.sdk_calls import PageOf
from treasurer.sdk_common import (
    MAX_PAGES,
    AuthorizationResult,
    Call,
    Decision,
    PaymentPreview,
    PaymentResult,
    RetryPolicy,
    base_url,
    encode_json,
    first_page,
    load_org_path,
    read,
    request_headers,
    too_many_pages,
)
from treasurer.sdk_errors import transport_error
from treasurer.wire import (
    MAX_PAGE_LIMIT,
    AgentOut,
    ApprovalChallengeOut,
    ApprovalStatusOut,
    ApproverOut,
    AuthorizationOut,
    BacktestOut,
    DecommissionOut,
    FreezeOut,
    Health,
    PlanOut,
    PolicyOut,
    PolicyVersionOut,
    PriceOut,
    SessionCreated,
    SessionOut,
    ShadowReportOut,
    SpendRowOut,
    WalletBalanceOut,
    WalletOut,
    WebhookCreated,
    WebhookDeliveryOut,
    WebhookOut,
)
from treasurer.wire_audit import AuditPurgeOut, AuditVerificationOut

T = TypeVar("T")


class Client:
    """Treasurer over HTTP, with the method names of the embedded API.

    ``token`` is an admin key (``tsk_…``) or an agent session (``tss_…``); the server decides
    what it may do. Pass ``http`` (any ``httpx.Client``, e.g. a Starlette ``TestClient``) or
    ``transport`` to run without a network; a given ``http`` client is not closed by
    :meth:`close`. ``sleep`` waits between retries (tests pass a recorder).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        http: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = base_url(url)
        self._token = token
        self._timeout = httpx.Timeout(timeout_s)
        self._policy = RetryPolicy(retries=retries, backoff_s=backoff_s)
        self._owns_http = http is None
        self._http = http or httpx.Client(timeout=self._timeout, transport=transport)
        self._sleep = sleep

    # -- plumbing -------------------------------------------------------------------------
    def _send(self, call: Call[T]) -> T:
        content = None if call.body is None else encode_json(call.body)
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    call.method,
                    self.url + call.path,
                    params=dict(call.params),
                    content=content,
                    headers=request_headers(call, self._token),
                    timeout=self._timeout,
                )
            except httpx.TransportError as exc:
                wait = self._policy.wait_after_error(call, attempt, exc)
                if wait is None:
                    raise transport_error(exc, self.url) from exc
            else:
                wait = self._policy.wait_after_response(call, attempt, response)
                if wait is None:
                    return read(call, response)
            self._sleep(wait)
            attempt += 1

    def _all(self, call: Call[PageOf[T]]) -> list[T]:
        call = first_page(call)
        items: list[T] = []
        for _ in range(MAX_PAGES):
            page, cursor = self._send(call)
            items.extend(page)
            if cursor is None:
                return items
            call = call.after(cursor)
        raise too_many_pages(call)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self) -> Health:
        """``GET /health`` (public): the server answers."""
        return self._send(calls.health())

    # -- spends ---------------------------------------------------------------------------
    def check(
        self,
        *,
        wallet: object,
        amount: object = None,
        asset: str | None = None,
        agent: str | None = None,
        recipient: str | None = None,
        chain: str | None = None,
        kind: str = "transfer",
        **extra: object,
    ) -> Decision:
        """Dry run: the decision and every budget's headroom; nothing is reserved.
        ``agent`` is needed with an admin key; a session acts for its own agent."""
        body = calls.spend_body(agent, wallet, amount, asset, recipient, chain, kind, extra)
        return self._send(calls.check(body))

    def authorize(
        self,
        *,
        wallet: object,
        amount: object = None,
        asset: str | None = None,
        agent: str | None = None,
        recipient: str | None = None,
        chain: str | None = None,
        kind: str = "transfer",
        idempotency_key: str | None = None,
        **extra: object,
    ) -> AuthorizationResult:
        """Decide and reserve. A denial is a result (``allowed`` False), not an exception.
        Without ``idempotency_key`` one is generated, so a retry never reserves twice.

        What the wallet will sign may be given as a raw call instead of ``amount``/``asset``/
        ``recipient``: ``to`` (the contract), ``data`` (0x hex calldata) and ``value`` (native
        coin, a decimal string). The server decodes it (an ERC-20 ``transfer`` is decided on
        its real recipient and amount), and the calldata is part of what a retry compares."""
        body = calls.spend_body(agent, wallet, amount, asset, recipient, chain, kind, extra)
        return self._send(calls.authorize(body, idempotency_key))

    def capture(
        self, authorization_id: str, amount: object = None, *, tx_hash: str | None = None
    ) -> AuthorizationResult:
        """Post the final amount (default: all of it); a same-amount retry returns it."""
        return self._send(calls.capture(authorization_id, amount, tx_hash))

    def void(
        self, authorization_id: str, *, reason: str = "voided by caller"
    ) -> AuthorizationResult:
        """Release the reservation; voiding a voided authorization returns it."""
        return self._send(calls.void(authorization_id, reason))

    def get_authorization(self, authorization_id: str) -> AuthorizationResult:
        return self._send(calls.get_authorization(authorization_id))

    # -- custodial payments ---------------------------------------------------------------
    @overload
    def pay(
        self,
        *,
        wallet: object,
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
        wallet: object,
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

    @overload
    def pay(
        self,
        *,
        wallet: object,
        amount: object = None,
        asset: str | None = None,
        recipient: str | None = None,
        kind: str = "transfer",
        to: str | None = None,
        data: str | None = None,
        value: object = None,
        max_fee_usd: object = None,
        idempotency_key: str | None = None,
        dry_run: bool,
    ) -> PaymentResult | PaymentPreview: ...

    def pay(
        self,
        *,
        wallet: object,
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
        """Pay from one of the session's own custodial wallets; Treasurer signs and sends.

        ``kind`` ``transfer`` (default) or ``approve`` take ``recipient``, ``amount`` and
        ``asset``; ``call`` takes the contract ``to``, hex ``data`` and a native ``value``.
        A denial is a result (``state == "denied"``), not an exception. Without
        ``idempotency_key`` one is generated for this call (and reused by its retries); pass
        your own to retry safely across processes. ``dry_run`` returns a
        :class:`PaymentPreview` (decision, fee, simulation) and reserves nothing.
        """
        body = calls.payment_body(
            wallet, kind, recipient, amount, asset, to, data, value, max_fee_usd, dry_run
        )
        return self._send(calls.pay(body, idempotency_key))

    def payment(self, payment_id: str) -> PaymentResult:
        """One payment; a broadcast one is checked against the chain first (poll this)."""
        return self._send(calls.get_payment(payment_id))

    def payments(
        self, *, agent: str | None = None, wallet: str | None = None, state: str | None = None
    ) -> list[PaymentResult]:
        """Payments the caller may see, newest first (without decisions; see :meth:`payment`)."""
        return self._all(calls.list_payments(agent, wallet, state))

    def wallet_balance(self, wallet: object) -> WalletBalanceOut:
        """On-chain balances of a wallet (an id or an object with ``id``), per org asset."""
        return self._send(calls.wallet_balance(str(getattr(wallet, "id", wallet))))

    # -- org file, prices, freezes, reports -----------------------------------------------
    def apply(
        self,
        org_file: Mapping[str, Any] | str | Path,
        *,
        dry_run: bool = False,
        source: str | None = None,
    ) -> PlanOut:
        """Apply an org file (a mapping, or the path of a YAML file); ``dry_run`` only plans.
        ``source`` is accepted for parity with the embedded API (the server names it)."""
        data = load_org_path(org_file) if isinstance(org_file, (str, Path)) else org_file
        return self._send(calls.apply(data, dry_run))

    def plan(self, org_file: Mapping[str, Any] | str | Path) -> PlanOut:
        """What applying ``org_file`` would change (a dry run of :meth:`apply`)."""
        return self.apply(org_file, dry_run=True)

    def export(self) -> dict[str, Any]:
        """The current org in the org file format (applying it changes nothing)."""
        return self._send(calls.export())

    def spend(
        self,
        *,
        by: str = "agent",
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: str,
    ) -> list[SpendRowOut]:
        """Captured and reserved USD per group over authorizations created in [since, until)."""
        return self._send(calls.spend(by, since, until, filters))

    def spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = MAX_PAGE_LIMIT,
        after: str | None = None,
        **filters: str,
    ) -> PageOf[AuthorizationOut]:
        """One page of the authorizations :meth:`spend` sums, each with the decision that
        allowed it, and the cursor of the next page (None on the last); pass it as ``after``.
        Filters as for :meth:`spend` (``department``, ``agent``, ``wallet``, ...)."""
        return self._send(calls.spend_items(since, until, filters, limit, after))

    def iter_spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: str,
    ) -> Iterator[AuthorizationOut]:
        """Every spend item of the range, page after page as it is consumed (no cap: a
        quarter may hold more items than :meth:`spend_items` would collect in memory)."""
        after: str | None = None
        while True:
            page, after = self._send(
                calls.spend_items(since, until, filters, MAX_PAGE_LIMIT, after)
            )
            yield from page
            if after is None:
                return

    def backtest(
        self,
        org_file: Mapping[str, Any] | str | Path,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        quarter: str | None = None,
    ) -> BacktestOut:
        """Replay the decisions recorded in [since, until) (or ``quarter``, e.g. ``"2026Q2"``)
        against a draft org file (a mapping or a YAML path); lists what would change."""
        data = load_org_path(org_file) if isinstance(org_file, (str, Path)) else org_file
        return self._send(calls.backtest(data, since, until, quarter))

    def shadow_report(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        quarter: str | None = None,
    ) -> ShadowReportOut:
        """Per shadow policy, what it would have denied in the range."""
        return self._send(calls.shadow_report(since, until, quarter))

    def get_price(self, asset: str) -> PriceOut:
        return self._send(calls.get_price(asset))

    def set_price(self, asset: str, price_usd: object) -> PriceOut:
        """Set an asset's manual USD price (a decimal string, e.g. ``"3150.25"``)."""
        return self._send(calls.set_price(asset, price_usd))

    def freeze(self, scope: str, *, reason: str = "") -> FreezeOut:
        """Freeze ``org``, ``department:<id>``, ``agent:<id>`` or ``wallet:<id>``."""
        return self._send(calls.freeze(scope, reason))

    def unfreeze(self, scope: str) -> FreezeOut:
        return self._send(calls.unfreeze(scope))

    def list_freezes(self) -> list[str]:
        """The frozen scopes the caller may see."""
        return self._all(calls.list_freezes())

    # -- agents, sessions, wallets, policies, approvers -----------------------------------
    def list_agents(self) -> list[AgentOut]:
        return self._all(calls.list_agents())

    def get_agent(self, agent_id: str) -> AgentOut:
        return self._send(calls.get_agent(agent_id))

    def decommission(self, agent_id: str) -> DecommissionOut:
        """The agent can no longer spend; all its sessions are revoked. Idempotent."""
        return self._send(calls.decommission(agent_id))

    def create_session(
        self, agent_id: str, *, name: str = "default", ttl_s: int | None = None
    ) -> SessionCreated:
        """A session token for the agent (``.token``, shown once). Never retried."""
        return self._send(calls.create_session(agent_id, name, ttl_s))

    def list_sessions(self, agent_id: str) -> list[SessionOut]:
        return self._all(calls.list_sessions(agent_id))

    def rotate_session(
        self, agent_id: str, session_id: str, *, ttl_s: int | None = None
    ) -> SessionCreated:
        """A new token replacing ``session_id``; the old one fails from the next request."""
        return self._send(calls.rotate_session(agent_id, session_id, ttl_s))

    def revoke_session(self, agent_id: str, session_id: str) -> SessionOut:
        return self._send(calls.revoke_session(agent_id, session_id))

    def list_wallets(self) -> list[WalletOut]:
        return self._all(calls.list_wallets())

    def get_wallet(self, wallet_id: str) -> WalletOut:
        return self._send(calls.get_wallet(wallet_id))

    def create_wallet(
        self,
        wallet_id: str,
        *,
        agent: str,
        chain: str,
        address: str | None = None,
        custody: str = "external",
        vendor: str | None = None,
    ) -> WalletOut:
        """Register a wallet. ``custody="local"`` without ``address``: the server's vault
        creates the key and the answer carries its address. Never retried."""
        return self._send(calls.create_wallet(wallet_id, agent, chain, address, custody, vendor))

    def list_policies(self, *, scope: str | None = None) -> list[PolicyOut]:
        return self._all(calls.list_policies(scope))

    def get_policy(self, policy_id: str) -> PolicyOut:
        return self._send(calls.get_policy(policy_id))

    def policy_history(self, policy_id: str) -> list[PolicyVersionOut]:
        """Every version of a policy, oldest first."""
        return self._send(calls.policy_history(policy_id))

    def list_approvers(self) -> list[ApproverOut]:
        return self._all(calls.list_approvers())

    def add_approver(
        self,
        approver_id: str,
        *,
        name: str,
        kind: str,
        public_key: str,
        groups: list[str] | tuple[str, ...] = (),
    ) -> ApproverOut:
        """Register an approver (``kind`` ``ed25519`` or ``evm``). Never retried."""
        return self._send(calls.add_approver(approver_id, name, kind, public_key, list(groups)))

    # -- webhooks -------------------------------------------------------------------------
    def create_webhook(
        self,
        url: str,
        *,
        format: str = "json",
        events: list[str] | tuple[str, ...] = (),
        description: str = "",
    ) -> WebhookCreated:
        """Register a webhook endpoint (``format`` ``json`` or ``slack``; ``events`` empty:
        every type). The answer's ``secret`` signs every delivery and is shown once. Never
        retried."""
        return self._send(calls.create_webhook(url, format, list(events), description))

    def list_webhooks(self, *, include_removed: bool = False) -> list[WebhookOut]:
        """Webhook endpoints (URLs redacted, secrets never shown)."""
        return self._all(calls.list_webhooks(include_removed))

    def get_webhook(self, webhook_id: str) -> WebhookOut:
        return self._send(calls.get_webhook(webhook_id))

    def remove_webhook(self, webhook_id: str) -> WebhookOut:
        """Stop sending to an endpoint; its pending deliveries become dead. Idempotent."""
        return self._send(calls.remove_webhook(webhook_id))

    def webhook_deliveries(
        self,
        webhook_id: str,
        *,
        state: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[WebhookDeliveryOut]:
        """One page of an endpoint's deliveries, newest event first (``limit`` at most 500;
        ``after`` is the ``event_seq`` of the last one seen). ``state="dead"``: dead letters."""
        page, _next = self._send(calls.webhook_deliveries(webhook_id, state, limit, after))
        return page

    def retry_delivery(self, delivery_id: str) -> WebhookDeliveryOut:
        """Send a dead delivery again (pending, due now). Never retried."""
        return self._send(calls.retry_delivery(delivery_id))

    # -- audit retention -------------------------------------------------------------------
    def purge_audit(
        self, *, before: datetime | None = None, dry_run: bool = False
    ) -> AuditPurgeOut:
        """Purge sealed audit events older than the org's retention (only those before
        ``before``, when given); ``dry_run`` reports what would go. Admin keys only."""
        return self._send(calls.purge_audit(before, dry_run))

    def verify_audit(self, *, public_key: str | None = None) -> AuditVerificationOut:
        """Verify the live audit chain and its signed checkpoints (an org-wide key);
        ``public_key`` (64 hex digits) pins the key every checkpoint must be signed by.
        A broken chain is an answer (``ok`` false, ``first_broken`` names the event)."""
        return self._send(calls.verify_audit(public_key))

    # -- approvals and cancel --------------------------------------------------------------
    def approvals(self, subject_id: str) -> ApprovalStatusOut:
        """Where the votes on a payment (``pay_…``) or an authorization stand."""
        return self._send(calls.approval_status(subject_id))

    def approval_challenge(self, subject_id: str, approver: str) -> ApprovalChallengeOut:
        """A single-use nonce for registered ``approver``, and the message to sign per vote."""
        return self._send(calls.approval_challenge(subject_id, approver))

    def vote(
        self,
        subject_id: str,
        vote: str = "approve",
        *,
        approver: str | None = None,
        nonce: str | None = None,
        expires_at: datetime | None = None,
        signature: str | None = None,
    ) -> ApprovalStatusOut:
        """Vote ``approve`` or ``reject``. Without a signature it is the caller's own vote (a
        finance or admin key, or a second agent's session); with ``approver``, ``nonce``,
        ``expires_at`` (from :meth:`approval_challenge`) and ``signature``, the approver's.
        Never retried (see ``sdk_calls.vote``)."""
        call = calls.vote(subject_id, vote, approver, nonce, expires_at, signature)
        return self._send(call)

    def vote_signed(
        self,
        subject_id: str,
        *,
        approver: str,
        sign: Callable[[str], str],
        vote: str = "approve",
    ) -> ApprovalStatusOut:
        """Ask for a challenge, sign its message for ``vote`` with ``sign`` (the approver's
        key, held by the caller: message text in, hex or base64 signature out), send it."""
        if vote not in ("approve", "reject"):
            raise InvalidRequest(
                f"vote: {vote!r} must be 'approve' or 'reject'", field="vote", code="vote_invalid"
            )
        challenge = self.approval_challenge(subject_id, approver)
        return self.vote(
            subject_id,
            vote,
            approver=approver,
            nonce=challenge.nonce,
            expires_at=challenge.expires_at,
            signature=sign(challenge.messages[vote]),
        )

    def cancel(self, payment_id: str) -> PaymentResult:
        """Cancel a queued payment and release its reservation. Idempotent."""
        return self._send(calls.cancel_payment(payment_id))
