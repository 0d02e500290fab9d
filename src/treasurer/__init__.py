"""Treasurer: governance for the money AI agents spend.

::

    import treasurer

    gov = treasurer.open("sqlite:///.treasurer/treasurer.db")
    gov.apply("org.yaml")
    decision = gov.check(agent="procurement_bot", wallet="pb-base", amount="499.00", asset="USDC")

    remote = treasurer.connect("http://127.0.0.1:8420", token)   # same method names over HTTP

Errors are one tree rooted at :class:`TreasurerError`; each class has a stable ``code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from treasurer.domain.errors import (
    AmountError,
    Conflict,
    Forbidden,
    IdempotencyConflict,
    InvalidRequest,
    InvalidState,
    NotFound,
    OrgFileInvalid,
    PolicyInvalid,
    RateLimited,
    StoreUnavailable,
    TreasurerError,
    Unauthenticated,
)

if TYPE_CHECKING:
    import httpx

    from treasurer.bootstrap import EmbeddedGovernance
    from treasurer.sdk import AsyncClient, Client
    from treasurer.service.ports import Clock

__version__ = "0.1.0"


def open(
    database_url: str, *, clock: Clock | None = None, migrate: bool = True
) -> EmbeddedGovernance:
    """Open the embedded governance API on a ``sqlite:///`` or ``postgresql://`` URL.

    Imported lazily so ``import treasurer`` stays light for code that only needs the errors.
    """
    from treasurer.bootstrap import open_governance  # noqa: PLC0415

    return open_governance(database_url, clock=clock, migrate=migrate)


def connect(
    url: str,
    token: str,
    *,
    timeout_s: float = 10.0,
    retries: int = 2,
    backoff_s: float = 0.25,
    http: httpx.Client | None = None,
    transport: httpx.BaseTransport | None = None,
) -> Client:
    """The remote client for the server at ``url`` (see :mod:`treasurer.sdk`). Lazy, like
    :func:`open`, so ``import treasurer`` does not load httpx."""
    from treasurer.sdk import connect as connect_  # noqa: PLC0415

    return connect_(
        url,
        token,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        http=http,
        transport=transport,
    )


def connect_async(
    url: str,
    token: str,
    *,
    timeout_s: float = 10.0,
    retries: int = 2,
    backoff_s: float = 0.25,
    http: httpx.AsyncClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncClient:
    """The asynchronous remote client (see :mod:`treasurer.sdk`)."""
    from treasurer.sdk import connect_async as connect_async_  # noqa: PLC0415

    return connect_async_(
        url,
        token,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        http=http,
        transport=transport,
    )


__all__ = [
    "AmountError",
    "Conflict",
    "Forbidden",
    "IdempotencyConflict",
    "InvalidRequest",
    "InvalidState",
    "NotFound",
    "OrgFileInvalid",
    "PolicyInvalid",
    "RateLimited",
    "StoreUnavailable",
    "TreasurerError",
    "Unauthenticated",
    "connect",
    "connect_async",
    "open",
]
