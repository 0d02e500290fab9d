"""The remote Python client: Treasurer over HTTP with the method names of the embedded API.

::

    import treasurer

    gov = treasurer.connect("http://127.0.0.1:8420", token)   # an admin key or agent session
    result = gov.authorize(wallet="w1", amount="999.00", asset="USDC")
    if result.allowed:
        gov.capture(result.id)
    else:
        print(result.codes, [r.message for r in result.reasons])

    paid = gov.pay(wallet="hot", recipient="0x…", amount="25.00", asset="USDC")  # custodial
    while not gov.payment(paid.id).done:  # broadcast → confirmed (or failed)
        time.sleep(1)

    async with treasurer.connect_async(url, token) as gov:
        decision = await gov.check(wallet="w2", amount="499.00", asset="USDC")

Errors are the classes of :mod:`treasurer.domain.errors`, chosen by the problem ``code``
(``code``, ``message`` and ``field`` as the server sent them)::

    TreasurerError
    ├── InvalidRequest ── AmountError (amount_*), PolicyInvalid, OrgFileInvalid
    ├── NotFound
    ├── Conflict ── IdempotencyConflict, InvalidState (authorization_not_pending, ...)
    ├── Unauthenticated / Forbidden
    ├── RateLimited                      (transient)
    └── StoreUnavailable                 (transient)
        └── ServerUnreachable            (connection refused, DNS, timeout; this module)

Every attempt has a timeout (``timeout_s``). Idempotent calls are retried up to ``retries``
times, with exponential backoff, on connection failures and 429/500/502/503/504 (honouring
``Retry-After`` up to 10 s); others are sent once. :mod:`treasurer.sdk_calls` lists which.

This module and the ``sdk_*`` modules import only :mod:`treasurer.wire`,
:mod:`treasurer.domain` and httpx, never server code (an import-linter contract says so).
"""

from __future__ import annotations

import httpx

from treasurer.sdk_async import AsyncClient
from treasurer.sdk_common import (
    AuthorizationResult,
    Decision,
    PaymentPreview,
    PaymentResult,
    RetryPolicy,
)
from treasurer.sdk_errors import ServerUnreachable
from treasurer.sdk_sync import Client

__all__ = [
    "AsyncClient",
    "AuthorizationResult",
    "Client",
    "Decision",
    "PaymentPreview",
    "PaymentResult",
    "RetryPolicy",
    "ServerUnreachable",
    "connect",
    "connect_async",
]


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
    """A synchronous client for the server at ``url`` acting with ``token``.

    No request is made until the first call. ``http``/``transport`` replace the network
    (tests pass a Starlette ``TestClient`` or an ``httpx.MockTransport``).
    """
    return Client(
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
    """An asynchronous client; use it as ``async with`` or ``await client.close()``."""
    return AsyncClient(
        url,
        token,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        http=http,
        transport=transport,
    )
