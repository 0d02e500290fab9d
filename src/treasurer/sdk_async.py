"""The asynchronous remote client: :class:`AsyncClient`, what :func:`treasurer.connect_async`
returns. The same methods as :class:`~treasurer.sdk_sync.Client`, awaited."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

import anyio
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


class AsyncClient:
    """Treasurer over HTTP for asyncio (or trio) code; see :class:`~treasurer.sdk_sync.Client`.

    Pass ``http`` (an ``httpx.AsyncClient``) or ``transport`` (e.g. ``httpx.ASGITransport``
    over the app) to run without a network; a given ``http`` client is not closed.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.url = base_url(url)
        self._token = token
        self._timeout = httpx.Timeout(timeout_s)
        self._policy = RetryPolicy(retries=retries, backoff_s=backoff_s)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=self._timeout, transport=transport)
        self._sleep = sleep

    # -- plumbing -------------------------------------------------------------------------
    async def _send(self, call: Call[T]) -> T:
        content = None if call.body is None else encode_json(call.body)
        attempt = 0
        while True:
            try:
                response = await self._http.request(
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
            await self._sleep(wait)
            attempt += 1

    async def _all(self, call: Call[PageOf[T]]) -> list[T]:
        call = first_page(call)
        items: list[T] = []
        for _ in range(MAX_PAGES):
            page, cursor = await self._send(call)
            items.extend(page)
            if cursor is None:
                return items
            call = call.after(cursor)
        raise too_many_pages(call)

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def health(self) -> Health:
        """``GET /health`` (public): the server answers."""
        return await self._send(calls.health())

    # -- spends ---------------------------------------------------------------------------
    async def check(
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
        return await self._send(calls.check(body))

    async def authorize(
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
        return await self._send(calls.authorize(body, idempotency_key))

    async def capture(
        self, authorization_id: str, amount: object = None, *, tx_hash: str | None = None
    ) -> AuthorizationResult:
        """Post the final amount (default: all of it); a same-amount retry returns it."""
        return await self._send(calls.capture(authorization_id, amount, tx_hash))

    async def void(
        self, authorization_id: str, *, reason: str = "voided by caller"
    ) -> AuthorizationResult:
        """Release the reservation; voiding a voided authorization returns it."""
        return await self._send(calls.void(authorization_id, reason))

    async def get_authorization(self, authorization_id: str) -> AuthorizationResult:
        return await self._send(calls.get_authorization(authorization_id))

    # -- custodial payments ---------------------------------------------------------------
    @overload
    async def pay(
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
    async def pay(
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
    async def pay(
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

    async def pay(
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
        return await self._send(calls.pay(body, idempotency_key))

    async def payment(self, payment_id: str) -> PaymentResult:
        """One payment; a broadcast one is checked against the chain first (poll this)."""
        return await self._send(calls.get_payment(payment_id))

    async def payments(
        self, *, agent: str | None = None, wallet: str | None = None, state: str | None = None
    ) -> list[PaymentResult]:
        """Payments the caller may see, newest first (without decisions; see :meth:`payment`)."""
        return await self._all(calls.list_payments(agent, wallet, state))

    async def wallet_balance(self, wallet: object) -> WalletBalanceOut:
        """On-chain balances of a wallet (an id or an object with ``id``), per org asset."""
        return await self._send(calls.wallet_balance(str(getattr(wallet, "id", wallet))))

    # -- org file, prices, freezes, reports -----------------------------------------------
    async def apply(
        self,
        org_file: Mapping[str, Any] | str | Path,
        *,
        dry_run: bool = False,
        source: str | None = None,
    ) -> PlanOut:
        """Apply an org file (a mapping, or the path of a YAML file); ``dry_run`` only plans.
        ``source`` is accepted for parity with the embedded API (the server names it)."""
        data = load_org_path(org_file) if isinstance(org_file, (str, Path)) else org_file
        return await self._send(calls.apply(data, dry_run))

    async def plan(self, org_file: Mapping[str, Any] | str | Path) -> PlanOut:
        """What applying ``org_file`` would change (a dry run of :meth:`apply`)."""
        return await self.apply(org_file, dry_run=True)

    async def export(self) -> dict[str, Any]:
        """The current org in the org file format (applying it changes nothing)."""
        return await self._send(calls.export())

    async def spend(
        self,
        *,
        by: str = "agent",
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: str,
    ) -> list[SpendRowOut]:
        """Captured and reserved USD per group over authorizations created in [since, until)."""
        return await self._send(calls.spend(by, since, until, filters))

    async def spend_items(
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
        return await self._send(calls.spend_items(since, until, filters, limit, after))

    async def iter_spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        **filters: str,
    ) -> AsyncIterator[AuthorizationOut]:
        """Every spend item of the range, page after page as it is consumed."""
        after: str | None = None
        while True:
            page, after = await self._send(
                calls.spend_items(since, until, filters, MAX_PAGE_LIMIT, after)
            )
            for item in page:
                yield item
            if after is None:
                return

    async def backtest(
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
        return await self._send(calls.backtest(data, since, until, quarter))

    async def shadow_report(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        quarter: str | None = None,
    ) -> ShadowReportOut:
        """Per shadow policy, what it would have denied in the range."""
        return await self._send(calls.shadow_report(since, until, quarter))

    async def get_price(self, asset: str) -> PriceOut:
        return await self._send(calls.get_price(asset))

    async def set_price(self, asset: str, price_usd: object) -> PriceOut:
        """Set an asset's manual USD price (a decimal string, e.g. ``"3150.25"``)."""
        return await self._send(calls.set_price(asset, price_usd))

    async def freeze(self, scope: str, *, reason: str = "") -> FreezeOut:
        """Freeze ``org``, ``department:<id>``, ``agent:<id>`` or ``wallet:<id>``."""
        return await self._send(calls.freeze(scope, reason))

    async def unfreeze(self, scope: str) -> FreezeOut:
        return await self._send(calls.unfreeze(scope))

    async def list_freezes(self) -> list[str]:
        """The frozen scopes the caller may see."""
        return await self._all(calls.list_freezes())

    # -- agents, sessions, wallets, policies, approvers -----------------------------------
    async def list_agents(self) -> list[AgentOut]:
        return await self._all(calls.list_agents())

    async def get_agent(self, agent_id: str) -> AgentOut:
        return await self._send(calls.get_agent(agent_id))

    async def decommission(self, agent_id: str) -> DecommissionOut:
        """The agent can no longer spend; all its sessions are revoked. Idempotent."""
        return await self._send(calls.decommission(agent_id))

    async def create_session(
        self, agent_id: str, *, name: str = "default", ttl_s: int | None = None
    ) -> SessionCreated:
        """A session token for the agent (``.token``, shown once). Never retried."""
        return await self._send(calls.create_session(agent_id, name, ttl_s))

    async def list_sessions(self, agent_id: str) -> list[SessionOut]:
        return await self._all(calls.list_sessions(agent_id))

    async def rotate_session(
        self, agent_id: str, session_id: str, *, ttl_s: int | None = None
    ) -> SessionCreated:
        """A new token replacing ``session_id``; the old one fails from the next request."""
        return await self._send(calls.rotate_session(agent_id, session_id, ttl_s))

    async def revoke_session(self, agent_id: str, session_id: str) -> SessionOut:
        return await self._send(calls.revoke_session(agent_id, session_id))

    async def list_wallets(self) -> list[WalletOut]:
        return await self._all(calls.list_wallets())

    async def get_wallet(self, wallet_id: str) -> WalletOut:
        return await self._send(calls.get_wallet(wallet_id))

    async def create_wallet(
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
        return await self._send(
            calls.create_wallet(wallet_id, agent, chain, address, custody, vendor)
        )

    async def list_policies(self, *, scope: str | None = None) -> list[PolicyOut]:
        return await self._all(calls.list_policies(scope))

    async def get_policy(self, policy_id: str) -> PolicyOut:
        return await self._send(calls.get_policy(policy_id))

    async def policy_history(self, policy_id: str) -> list[PolicyVersionOut]:
        """Every version of a policy, oldest first."""
        return await self._send(calls.policy_history(policy_id))

    async def list_approvers(self) -> list[ApproverOut]:
        return await self._all(calls.list_approvers())

    async def add_approver(
        self,
        approver_id: str,
        *,
        name: str,
        kind: str,
        public_key: str,
        groups: list[str] | tuple[str, ...] = (),
    ) -> ApproverOut:
        """Register an approver (``kind`` ``ed25519`` or ``evm``). Never retried."""
        return await self._send(
            calls.add_approver(approver_id, name, kind, public_key, list(groups))
        )

    # -- webhooks -------------------------------------------------------------------------
    async def create_webhook(
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
        return await self._send(calls.create_webhook(url, format, list(events), description))

    async def list_webhooks(self, *, include_removed: bool = False) -> list[WebhookOut]:
        """Webhook endpoints (URLs redacted, secrets never shown)."""
        return await self._all(calls.list_webhooks(include_removed))

    async def get_webhook(self, webhook_id: str) -> WebhookOut:
        return await self._send(calls.get_webhook(webhook_id))

    async def remove_webhook(self, webhook_id: str) -> WebhookOut:
        """Stop sending to an endpoint; its pending deliveries become dead. Idempotent."""
        return await self._send(calls.remove_webhook(webhook_id))

    async def webhook_deliveries(
        self,
        webhook_id: str,
        *,
        state: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[WebhookDeliveryOut]:
        """One page of an endpoint's deliveries, newest event first (``limit`` at most 500;
        ``after`` is the ``event_seq`` of the last one seen). ``state="dead"``: dead letters."""
        page, _next = await self._send(calls.webhook_deliveries(webhook_id, state, limit, after))
        return page

    async def retry_delivery(self, delivery_id: str) -> WebhookDeliveryOut:
        """Send a dead delivery again (pending, due now). Never retried."""
        return await self._send(calls.retry_delivery(delivery_id))

    # -- audit retention -------------------------------------------------------------------
    async def purge_audit(
        self, *, before: datetime | None = None, dry_run: bool = False
    ) -> AuditPurgeOut:
        """Purge sealed audit events older than the org's retention (only those before
        ``before``, when given); ``dry_run`` reports what would go. Admin keys only."""
        return await self._send(calls.purge_audit(before, dry_run))

    async def verify_audit(self, *, public_key: str | None = None) -> AuditVerificationOut:
        """Verify the live audit chain and its signed checkpoints (an org-wide key);
        ``public_key`` (64 hex digits) pins the key every checkpoint must be signed by.
        A broken chain is an answer (``ok`` false, ``first_broken`` names the event)."""
        return await self._send(calls.verify_audit(public_key))

    # -- approvals and cancel --------------------------------------------------------------
    async def approvals(self, subject_id: str) -> ApprovalStatusOut:
        """Where the votes on a payment (``pay_…``) or an authorization stand."""
        return await self._send(calls.approval_status(subject_id))

    async def approval_challenge(self, subject_id: str, approver: str) -> ApprovalChallengeOut:
        """A single-use nonce for registered ``approver``, and the message to sign per vote."""
        return await self._send(calls.approval_challenge(subject_id, approver))

    async def vote(
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
        return await self._send(call)

    async def vote_signed(
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
        challenge = await self.approval_challenge(subject_id, approver)
        return await self.vote(
            subject_id,
            vote,
            approver=approver,
            nonce=challenge.nonce,
            expires_at=challenge.expires_at,
            signature=sign(challenge.messages[vote]),
        )

    async def cancel(self, payment_id: str) -> PaymentResult:
        """Cancel a queued payment and release its reservation. Idempotent."""
        return await self._send(calls.cancel_payment(payment_id))
