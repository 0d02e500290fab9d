"""What the sync and async clients share: calls, results and the retry policy.

A :class:`Call` describes one HTTP exchange as data (method, path, body, whether it is safe to
repeat, how to read the answer). The clients only send calls, so the paths, bodies and parsing
of every endpoint live once, in :mod:`treasurer.sdk_calls`, whichever client sends them. A
failed answer becomes the exception the embedded API would raise (:mod:`treasurer.sdk_errors`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx

from treasurer.domain.errors import InvalidRequest, OrgFileInvalid
from treasurer.sdk_errors import error_from_response
from treasurer.wire import AuthorizationOut, DecisionOut, PaymentOut, PaymentPreviewOut, ReasonOut

T = TypeVar("T")

#: Statuses worth another try of an idempotent call: overload, restarts, proxies in between.
#: 501 (not implemented) and other 5xx are permanent and are never retried.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Transport failures worth another try: the request did not get an answer at all.
RETRY_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.RemoteProtocolError,
)
USER_AGENT = "treasurer-sdk"
#: Pages a list call follows before giving up (x 500 items a page).
MAX_PAGES = 100
PAGE_SIZE = "500"


# -- results -----------------------------------------------------------------------------
class Decision(DecisionOut):
    """A decision as the embedded API returns it: ``allowed``, ``tier``, ``reasons``, ``codes``."""

    @property
    def codes(self) -> list[str]:
        return [reason.code for reason in self.reasons]


class AuthorizationResult(AuthorizationOut):
    """An authorization and the decision behind it, read like the embedded result:
    ``id``, ``state``, ``allowed``, ``codes``, ``reasons``, ``decision``, ``replayed``."""

    decision: Decision

    @property
    def allowed(self) -> bool:
        return self.state != "denied"

    @property
    def reasons(self) -> list[ReasonOut]:
        return self.decision.reasons

    @property
    def codes(self) -> list[str]:
        return self.decision.codes


class PaymentResult(PaymentOut):
    """A custodial payment read like the embedded result: ``id``, ``state`` (``broadcast``,
    ``confirmed``, ``queued``, ``denied``, ``failed`` ...), ``allowed``, ``codes``,
    ``reasons``, ``decision``, ``replayed``, ``tx_id`` and the fees."""

    decision: Decision | None = None

    @property
    def allowed(self) -> bool:
        return self.state != "denied"

    @property
    def done(self) -> bool:
        """Whether nothing more will happen to this payment (confirmed, failed or denied)."""
        return self.state in ("confirmed", "failed", "denied")

    @property
    def reasons(self) -> list[ReasonOut]:
        return [] if self.decision is None else self.decision.reasons

    @property
    def codes(self) -> list[str]:
        return [] if self.decision is None else self.decision.codes


class PaymentPreview(PaymentPreviewOut):
    """A dry run of a payment: ``decision`` (with ``allowed``/``codes``), ``fee`` and
    ``simulation``; nothing was reserved."""

    decision: Decision

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    @property
    def codes(self) -> list[str]:
        return self.decision.codes


# -- calls -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One HTTP exchange. ``idempotent`` says whether sending it twice is safe (only then is
    it retried); ``parse`` turns the JSON answer (None for an empty one) into the result."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    idempotent: bool = False

    def after(self, cursor: str) -> Call[T]:
        """The same call for the page after ``cursor``."""
        return replace(self, params={**self.params, "after": cursor})


def encode_json(body: object) -> bytes:
    """JSON of a request body; dates and decimals (as YAML or callers give them) become text."""

    def text(value: object) -> str:
        if isinstance(value, (date, Decimal)):
            return str(value)
        raise InvalidRequest(f"cannot send a {type(value).__name__} as JSON: {value!r}")

    return json.dumps(body, default=text, separators=(",", ":")).encode()


def request_headers(call: Call[Any], token: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, **call.headers}
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    return headers


def base_url(url: str) -> str:
    """The server URL without a trailing slash; anything but http(s) is refused early."""
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"url: {url!r} must start with http:// or https:// (e.g. http://127.0.0.1:8420)",
            field="url",
        )
    return url.rstrip("/")


def first_page(call: Call[T]) -> Call[T]:
    """A list call asking for the largest page, so few round trips cover a list."""
    return replace(call, params={**call.params, "limit": PAGE_SIZE})


def too_many_pages(call: Call[Any]) -> InvalidRequest:
    return InvalidRequest(
        f"{call.path} has more than {MAX_PAGES} pages; narrow the query (e.g. by scope)",
        code="too_many_items",
    )


def load_org_path(path: str | Path) -> dict[str, Any]:
    """Read a YAML org file for :meth:`apply`; errors name the file, line and column."""
    import yaml  # noqa: PLC0415 - only apply(path) needs it

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise OrgFileInvalid(f"{file}: cannot read the org file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        raise OrgFileInvalid(f"{file}{where}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise OrgFileInvalid(f"{file}: the top level must be a mapping with org, agents, ...")
    return data


def read(call: Call[T], response: httpx.Response) -> T:
    """The result of a successful answer, or the mapped exception of a failed one."""
    if response.status_code >= 400:
        raise error_from_response(response)
    return call.parse(response.json() if response.content else None)


# -- retries -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and jitter, for idempotent calls only.

    ``Retry-After`` is honoured up to ``max_retry_after_s``; a server asking for a longer wait
    gets no retry (the caller sees :class:`RateLimited` at once rather than a hung call).
    """

    retries: int = 2
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    max_retry_after_s: float = 10.0

    def wait_after_response(
        self, call: Call[Any], attempt: int, response: httpx.Response
    ) -> float | None:
        """Seconds to wait before trying ``call`` again, or None to give this answer."""
        if response.status_code not in RETRY_STATUSES or not self._may_retry(call, attempt):
            return None
        delay = self._backoff(attempt)
        hinted = retry_after_s(response)
        if hinted is not None:
            if hinted > self.max_retry_after_s:
                return None
            delay = max(delay, hinted)
        return delay

    def wait_after_error(self, call: Call[Any], attempt: int, error: Exception) -> float | None:
        """Seconds to wait after a transport failure, or None to raise it."""
        if not isinstance(error, RETRY_ERRORS) or not self._may_retry(call, attempt):
            return None
        return self._backoff(attempt)

    def _may_retry(self, call: Call[Any], attempt: int) -> bool:
        return call.idempotent and attempt < self.retries

    def _backoff(self, attempt: int) -> float:
        full = min(self.backoff_s * 2.0**attempt, self.max_backoff_s)
        return full * (0.5 + random.random() / 2)  # noqa: S311 - jitter, not a secret


def retry_after_s(response: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (delta-seconds or an HTTP date), if any."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    date = response.headers.get("date")
    now = parsedate_to_datetime(date) if date else None
    if now is None or moment.tzinfo is None or now.tzinfo is None:
        return None
    return max(0.0, (moment - now).total_seconds())
