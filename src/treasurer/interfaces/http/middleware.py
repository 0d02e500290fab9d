"""ASGI middleware that runs before any route: authentication and the request body limit.

Authentication is middleware rather than a route dependency on purpose: FastAPI parses the
body before it resolves dependencies, so a dependency would let an anonymous caller learn
about body validation (422) and route shapes. Here a request without a valid credential is
refused with 401 before anything else looks at it, on every path except the public ones,
including paths that do not exist.

The body limit buffers at most ``max_bytes`` and answers 413 ``body_too_large`` beyond that,
whether or not a ``Content-Length`` was sent.

A decision request (``POST /v1/authorizations`` when the decision lane passes it on, and the
dry run) runs inside the config cache's
:func:`~treasurer.service.config_cache.request_scope`, so the config version is read from the
database once per request instead of at each look at the config (see there).
"""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import TreasurerError
from treasurer.interfaces.http.problems import error_problem, problem
from treasurer.service.config_cache import request_scope

PRINCIPAL_KEY = "treasurer.principal"
#: Requests that decide and write no configuration: one config version check each.
DECISION_PATHS = frozenset({"/v1/authorizations", "/v1/authorizations/check"})


def client_source(scope: Scope) -> str:
    """The client address the failure limiter counts by (the socket peer)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Authenticate:
    """Resolve the ``Authorization`` header to a :class:`Principal` for every private path."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Callable[[str | None, str], Principal],
        public_paths: frozenset[str],
        source: Callable[[Scope], str] = client_source,
        inline: bool = False,
    ) -> None:
        self.app = app
        self._authenticate = authenticate
        self._public = public_paths
        self._source = source
        self._inline = inline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        try:
            if self._inline:
                # A local SQLite read of one row (microseconds): cheaper than a thread hop.
                principal = self._authenticate(header, self._source(scope))
            else:
                # A network round trip (PostgreSQL): keep it off the event loop.
                principal = await anyio.to_thread.run_sync(
                    self._authenticate, header, self._source(scope)
                )
        except TreasurerError as exc:
            await error_problem(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        if scope["method"] == "POST" and scope["path"] in DECISION_PATHS:
            with request_scope():
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app reads them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is larger than {self.max_bytes} bytes"
        await problem(413, "body_too_large", detail)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; let the app see a short body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, replay(b"".join(chunks), receive), send)


def replay(body: bytes, receive: Receive, *, more: bool = False) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one.

    ``more``: the buffered part is not the whole body; the rest still comes from ``receive``.
    """
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed
