"""Route dependencies: the app context, the caller and its permissions, pagination.

Each route states what it needs as a type (``Manager``, ``Reader``, ``AgentCaller`` ...), so
the permission of every route is visible in its signature and checked before its body runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request

from treasurer.domain.config import OrgConfig
from treasurer.domain.credentials import Principal
from treasurer.domain.errors import NotFound, TreasurerError, Unauthenticated
from treasurer.interfaces.http.middleware import PRINCIPAL_KEY
from treasurer.service.admin import Governance
from treasurer.service.approvals import Approvals
from treasurer.service.auth_access import Permission, View, require, require_method
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.notify_admin import Webhooks
from treasurer.service.payments import PaymentService
from treasurer.wire import DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT

T = TypeVar("T")
P = Permission


class PaymentsNotConfigured(TreasurerError):
    """The server runs without chains and a vault: governance mode only (HTTP 503)."""

    code = "payments_not_configured"


@dataclass(frozen=True, slots=True)
class HttpContext:
    """What the routes work with: governance use cases, credential management and, when the
    server holds keys and reaches chains, the custodial payment pipeline."""

    governance: Governance
    credentials: CredentialAdmin
    payments: PaymentService | None = None
    webhooks: Webhooks | None = None
    approvals: Approvals | None = None

    def view(self, principal: Principal) -> View:
        return View(principal, self.governance.cache.get())

    @property
    def config(self) -> OrgConfig:
        return self.governance.cache.get()

    def require_payments(self) -> PaymentService:
        """The payment pipeline, or ``payments_not_configured`` naming what is missing."""
        if self.payments is None:
            raise PaymentsNotConfigured(
                "this server makes no custodial payments: it was started without chain "
                "connections and a key vault; use governance mode (POST /v1/authorizations), "
                "or ask the operator to configure chains and the vault"
            )
        return self.payments

    def require_approvals(self) -> Approvals:
        """Approval votes, or ``approvals_not_configured`` (HTTP 500: the app was composed
        without them, which ``build_app`` never does)."""
        if self.approvals is None:
            raise TreasurerError(
                "this server was built without approval voting", code="approvals_not_configured"
            )
        return self.approvals

    def require_webhooks(self) -> Webhooks:
        """Webhook management, or ``webhooks_not_configured`` (HTTP 500: the app was composed
        without it, which ``build_app`` never does)."""
        if self.webhooks is None:
            raise TreasurerError(
                "this server was built without webhook notifications",
                code="webhooks_not_configured",
            )
        return self.webhooks


async def context(request: Request) -> HttpContext:
    ctx = request.app.state.treasurer
    assert isinstance(ctx, HttpContext)
    return ctx


async def caller(request: Request) -> Principal:
    """The principal the authentication middleware attached; auditors stay read-only."""
    principal = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise Unauthenticated("authentication failed: send Authorization: Bearer <token>")
    require_method(principal, request.method)
    return principal


def needs(*permissions: Permission) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency passing callers that hold any of ``permissions``."""

    async def check(principal: Annotated[Principal, Depends(caller)]) -> Principal:
        require(principal, *permissions)
        return principal

    return check


Ctx = Annotated[HttpContext, Depends(context)]
Reader = Annotated[Principal, Depends(needs(P.READ))]
ReaderOrAgent = Annotated[Principal, Depends(needs(P.READ, P.SPEND))]
Reporter = Annotated[Principal, Depends(needs(P.REPORT))]
Freezer = Annotated[Principal, Depends(needs(P.FREEZE))]
Manager = Annotated[Principal, Depends(needs(P.MANAGE))]
AgentCaller = Annotated[Principal, Depends(needs(P.SPEND))]
AgentOrManager = Annotated[Principal, Depends(needs(P.SPEND, P.MANAGE))]
AgentOrReporter = Annotated[Principal, Depends(needs(P.SPEND, P.REPORT))]


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    after: str | None


async def paging(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT)] = DEFAULT_PAGE_LIMIT,
    after: Annotated[
        str | None, Query(max_length=200, description="the previous page's next")
    ] = None,
) -> Paging:
    return Paging(limit, after)


Pages = Annotated[Paging, Depends(paging)]


def page_of(
    items: Iterable[T], key: Callable[[T], str], paging: Paging
) -> tuple[list[T], str | None]:
    """One page of an in-memory list, ordered by ``key`` and resumed after ``paging.after``;
    returns the items and the ``next`` cursor (None on the last page)."""
    ordered = sorted(items, key=key)
    if paging.after is not None:
        ordered = [item for item in ordered if key(item) > paging.after]
    return stored_page(ordered, key, paging.limit)


def stored_page(items: list[T], key: Callable[[T], str], limit: int) -> tuple[list[T], str | None]:
    """A page from ``limit + 1`` rows (the extra one only says that there is more)."""
    chunk = items[:limit]
    more = len(items) > limit
    return chunk, key(chunk[-1]) if more and chunk else None


def visible_or_404(visible: bool, what: str) -> None:
    """Hide what the caller may not see: the same answer as for a missing object."""
    if not visible:
        raise NotFound(f"{what} does not exist")
