"""The decision lane: ``POST /v1/authorizations`` answered without the framework around it.

An authorization is the request agents send most, and on a busy node most of its time went
to the layers around the decision rather than to the decision: Starlette's routing and
middleware stack, FastAPI's dependency solving and response re-validation, and two hops to a
worker thread (one to check the credential, one to run the route). This ASGI layer, outermost
in the app, answers a well-formed authorization itself with one worker-thread hop that
authenticates, checks permissions and decides through the same functions the route uses
(:func:`~treasurer.interfaces.http.routes_authorizations.authorize_out`).

Anything it is not sure to answer exactly as the routed app would goes to that app
untouched, so every error keeps one implementation: a body that is not JSON or does not
validate, another content type, a body over the limit, a duplicated or over-long
``Idempotency-Key``. Authentication still comes first for what the lane answers: an
anonymous caller learns nothing about the body it sent.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import anyio.to_thread
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import TreasurerError
from treasurer.interfaces.http.deps import HttpContext
from treasurer.interfaces.http.middleware import client_source, replay
from treasurer.interfaces.http.problems import error_problem, internal_problem
from treasurer.interfaces.http.routes_authorizations import IDEMPOTENCY_KEY_MAX, authorize_out
from treasurer.service.auth_access import Permission, require, require_method
from treasurer.service.config_cache import request_scope
from treasurer.wire import SpendBody

PATH = "/v1/authorizations"
JSON = "application/json"


class DecisionLane:
    """Answer well-formed ``POST /v1/authorizations`` requests; pass everything else on."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        context: HttpContext,
        authenticate: Callable[[str | None, str], Principal],
        max_body_bytes: int,
        threads: int = 8,
        source: Callable[[Scope], str] = client_source,
    ) -> None:
        self.app = app
        self._ctx = context
        self._authenticate = authenticate
        self._max = max_body_bytes
        self._source = source
        # Decisions wait on the database most of the time, but each also needs the GIL for
        # about two milliseconds: past a few threads, more of them add lock hand-offs, not
        # throughput. Requests beyond ``threads`` wait their turn on the event loop.
        self._threads = anyio.CapacityLimiter(threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        keys = headers.getlist("idempotency-key")
        if (
            not _json_body(headers)
            or len(keys) > 1
            or any(len(k) > IDEMPOTENCY_KEY_MAX for k in keys)
        ):
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive, self._max)
        spend = None if more or len(body) > self._max else _parse(body)
        if spend is None:
            await self.app(scope, replay(body, receive, more=more), send)
            return
        response = await anyio.to_thread.run_sync(
            self._decide,
            headers.get("authorization"),
            self._source(scope),
            spend,
            keys,
            limiter=self._threads,
        )
        await response(scope, receive, send)

    def _decide(
        self, header: str | None, source: str, body: SpendBody, keys: list[str]
    ) -> Response:
        """Authenticate, check the permission and decide: the route's steps, in one thread."""
        try:
            who = self._authenticate(header, source)
            require_method(who, "POST")
            require(who, Permission.SPEND)
            with request_scope():
                out, replayed = authorize_out(self._ctx, who, body, keys[0] if keys else None)
        except TreasurerError as exc:
            return error_problem(exc)
        except Exception as exc:  # the routed app's last resort answers the same
            return internal_problem("POST", PATH, exc)
        extra = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(out.model_dump_json(), 201, headers=extra, media_type=JSON)


def _json_body(headers: Headers) -> bool:
    """A body FastAPI would parse as JSON: no content type, or ``application/json``."""
    content_type = headers.get("content-type")
    return content_type is None or content_type.split(";")[0].strip().lower() == JSON


async def _read(receive: Receive, max_bytes: int) -> tuple[bytes, bool]:
    """The body, read until its end or past ``max_bytes``, and whether ``receive`` still has
    more to give (the rest of the body, or the message that the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True  # the client left: downstream hears it again
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
        if size > max_bytes or not more:
            return b"".join(chunks), more


def _parse(body: bytes) -> SpendBody | None:
    """The body as FastAPI reads it (``json.loads``, then the model), or None if it fails."""
    try:
        return SpendBody.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
        return None
