"""Problem+json answers and transport failures as the exceptions of the embedded API.

The problem ``code`` picks the class: first the codes of the tree's own classes, then the
specific codes the server raises as :class:`InvalidState` (HTTP only says 409), then every
``amount_*`` code as :class:`AmountError`, then the HTTP status. ``code``, ``message`` and
``field`` are kept exactly as the server sent them, so callers can match on ``code`` too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from treasurer.domain import errors
from treasurer.domain.errors import (
    AmountError,
    Conflict,
    Forbidden,
    InvalidRequest,
    InvalidState,
    NotFound,
    RateLimited,
    StoreUnavailable,
    TreasurerError,
    Unauthenticated,
)


class ServerUnreachable(StoreUnavailable):
    """Treasurer did not answer (refused connection, DNS failure, timeout).

    A :class:`StoreUnavailable` on purpose: to the caller, a server that cannot be reached and
    a server whose database cannot be reached are the same transient failure.
    """

    code = "server_unreachable"


#: Codes of the tree's own classes (only those of the domain module, never subclasses that
#: server modules add, so the table does not depend on what happens to be imported).
_CLASS_BY_CODE: dict[str, type[TreasurerError]] = {
    cls.code: cls for cls in errors.all_error_classes() if cls.__module__ == errors.__name__
}
#: Specific codes the server raises as :class:`InvalidState` (HTTP only says 409 Conflict).
INVALID_STATE_CODES = frozenset(
    {
        "authorization_not_pending",
        "authorization_expired",
        "authorization_not_released",
        "agent_decommissioned",
        "session_not_active",
        "approver_removed",
    }
)
_CLASS_BY_STATUS: dict[int, type[TreasurerError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    502: StoreUnavailable,  # a proxy in front of a server that is down
    503: StoreUnavailable,
    504: StoreUnavailable,
}


def error_class(code: str, status: int) -> type[TreasurerError]:
    """The exception class for a problem ``code`` (then the HTTP ``status`` as a fallback)."""
    if code in _CLASS_BY_CODE:
        return _CLASS_BY_CODE[code]
    if code in INVALID_STATE_CODES:
        return InvalidState
    if code.startswith("amount_"):
        return AmountError
    return _CLASS_BY_STATUS.get(status, TreasurerError)


def error_from_response(response: httpx.Response) -> TreasurerError:
    """The exception for an error answer; a non-problem body (a proxy's page) still maps."""
    status = response.status_code
    problem: Mapping[str, Any] = {}
    if "json" in response.headers.get("content-type", ""):
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            problem = parsed
    code = str(problem.get("code") or f"http_{status}")
    message = str(
        problem.get("detail")
        or f"HTTP {status} from {response.request.url}: {response.text[:200].strip()}"
    )
    field_name = problem.get("field")
    cls = error_class(code, status)
    return cls(message, field=str(field_name) if field_name else None, code=code)


def transport_error(error: httpx.TransportError, url: str) -> ServerUnreachable:
    """A transport failure as a Treasurer error that names the server and what happened."""
    if isinstance(error, httpx.TimeoutException):
        return ServerUnreachable(
            f"Treasurer at {url} did not answer in time ({type(error).__name__})",
            code="server_timeout",
        )
    reason = str(error) or type(error).__name__
    return ServerUnreachable(f"cannot reach Treasurer at {url}: {reason}")
