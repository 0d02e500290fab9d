"""Errors as RFC 9457 ``application/problem+json``: the one table from error codes to status.

Every error response has ``type``, ``title``, ``status``, ``detail``, a stable snake_case
``code`` (the same codes the Python API raises) and ``field`` when one input is at fault.
Lookup order: a specific code first (:data:`STATUS_BY_CODE`), then the error class along its
MRO (:data:`STATUS_BY_CLASS`). Nothing internal (tracebacks, SQL) ever reaches a response.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from treasurer.domain.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    StoreUnavailable,
    TreasurerError,
    Unauthenticated,
)
from treasurer.wire import Problem

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:treasurer:problem:"
log = logging.getLogger("treasurer.http")

STATUS_BY_CODE: dict[str, int] = {
    "malformed_json": 400,
    "body_too_large": 413,
    "validation_failed": 422,
    "unknown_field": 422,
    "missing_field": 422,
    "method_not_allowed": 405,
    "not_implemented": 501,
    "internal_error": 500,
    # Custodial payments. Chain errors are mapped by code, not class: their classes live in
    # the chain adapters, which this layer may not import (adapters/chains/evm_errors.py).
    "idempotency_key_required": 400,
    "payments_not_configured": 503,  # this server was started without chains and a vault
    "webhooks_not_configured": 503,  # an app built without webhook notifications
    "chain_not_configured": 400,  # the wallet's network has no connection on this node
    "chain_unavailable": 503,  # the node did not answer in time: transient, retry
    # The RPC URL serves another chain id: an operator must fix the server, retrying the same
    # request cannot help and the caller did nothing wrong, so neither 400 nor a transient 503.
    "chain_misconfigured": 502,
    "chain_rejected": 409,  # refused by the node as things stand (gas funds, nonce, fee)
    "chain_call_reverted": 409,  # executing it now would revert (e.g. token balance too low)
    "fee_above_cap": 409,  # the fee right now is above the caller's max_fee_usd
    "fee_above_quote": 409,
    "call_not_supported": 400,  # a kind this chain cannot execute (a raw call on Solana)
    "wallet_not_custodial": 400,  # an external wallet: authorize and capture instead
    "unknown_asset": 400,
    "key_not_in_vault": 409,  # a local wallet's address must be a key the vault holds
    # The audit trail (treasurer.service.audit, audit_purge).
    "audit_signing_key_missing": 503,  # the server was started without its audit key
    "audit_chain_broken": 409,  # it will not sign (or purge) a chain that does not verify
}
STATUS_BY_CLASS: dict[type[TreasurerError], int] = {
    InvalidRequest: 400,  # also every amount_* code, policy_invalid, org_file_invalid
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,  # also idempotency_key_reused, invalid_state and its codes
    RateLimited: 429,
    StoreUnavailable: 503,
    TreasurerError: 500,
}


class NotImplementedYet(TreasurerError):
    """A route whose use case arrives with a later part of the product (HTTP 501)."""

    code = "not_implemented"


def status_for(error: TreasurerError) -> int:
    if error.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[error.code]
    for cls, status in STATUS_BY_CLASS.items():  # most specific first
        if isinstance(error, cls):
            return status
    return 500


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = Problem(
        type=TYPE_PREFIX + code,
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        code=code,
        field=field,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status, headers=headers, media_type=PROBLEM_JSON
    )


def error_problem(error: TreasurerError) -> JSONResponse:
    """The response for a Treasurer error (``Retry-After`` when the error knows it)."""
    headers: dict[str, str] = {}
    retry_after = getattr(error, "retry_after_s", None)
    if isinstance(retry_after, int):
        headers["Retry-After"] = str(retry_after)
    if isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="treasurer"'  # RFC 9110, section 11.6.1
    return problem(status_for(error), error.code, error.message, field=error.field, headers=headers)


def _field(loc: Sequence[int | str]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path") else []
    return ".".join(parts) or str(loc[0] if loc else "body")


def validation_problem(errors: Sequence[Any]) -> JSONResponse:
    """Pydantic errors: amount codes first (a stable contract), then the first error."""
    if errors and errors[0]["type"] == "json_invalid":
        reason = errors[0].get("ctx", {}).get("error", "not JSON")
        detail = f"the request body is not valid JSON: {reason} (character {errors[0]['loc'][-1]})"
        return problem(400, "malformed_json", detail)
    cleaned = [{"type": e["type"], "field": _field(e["loc"]), "message": e["msg"]} for e in errors]
    first = next((e for e in cleaned if e["type"].startswith("amount_")), cleaned[0])
    field, kind = first["field"], first["type"]
    if kind.startswith("amount_"):
        return problem(400, kind, f"{field}: {first['message']}", field=field, errors=cleaned)
    if kind == "extra_forbidden":
        detail = f"{field}: unknown field; check the spelling against the API schema"
        return problem(422, "unknown_field", detail, field=field, errors=cleaned)
    if kind == "missing":
        return problem(422, "missing_field", f"{field}: is required", field=field, errors=cleaned)
    detail = f"{field}: {first['message']}"
    return problem(422, "validation_failed", detail, field=field, errors=cleaned)


async def _treasurer_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TreasurerError)
    return error_problem(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return validation_problem(exc.errors())


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return problem(404, "not_found", "no such route; see /docs for the API")
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        # FastAPI's own message for a body it cannot decode (e.g. not UTF-8).
        return problem(400, "malformed_json", "the request body is not valid UTF-8 JSON")
    if exc.status_code == 405:
        return problem(405, "method_not_allowed", "this route does not accept that method")
    code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    return problem(exc.status_code, code, str(exc.detail), headers=exc.headers)


def internal_problem(method: str, path: str, exc: Exception) -> JSONResponse:
    """Log an unexpected exception in full; answer 500 ``internal_error`` without its text."""
    log.exception("unhandled error on %s %s", method, path, exc_info=exc)
    return problem(500, "internal_error", "an internal error occurred; it has been logged")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return internal_problem(request.method, request.url.path, exc)


def install(app: FastAPI) -> None:
    """Register every handler; the app answers errors only with problem+json."""
    app.add_exception_handler(TreasurerError, _treasurer_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the problem responses a route may give."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


#: Every authenticated route may answer these (400 for a malformed body or query, 404 for an
#: id that does not exist or is not visible to the caller).
COMMON = responses(400, 401, 403, 404, 422, 429, 500, 503)
