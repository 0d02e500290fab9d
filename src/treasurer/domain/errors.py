"""The one exception tree of Treasurer.

Decisions are values, errors are exceptions: a denied spend is a successful call that returns a
``Decision``; these classes are for requests that cannot be carried out at all. Every class has a
stable snake_case ``code`` (the contract with HTTP, CLI and SDK, each of which maps codes in one
table) and a ``transient`` flag saying whether retrying the same call may succeed.

::

    TreasurerError
    ├── InvalidRequest              (bad input; names the field)
    │   ├── AmountError             (amount_*: float, negative, zero, decimals, exponent, ...)
    │   ├── PolicyInvalid           (a policy failed its schema)
    │   └── OrgFileInvalid          (an org file failed validation; names file and path)
    ├── NotFound
    ├── Conflict
    │   ├── IdempotencyConflict     (same key, different request)
    │   └── InvalidState            (capture of a voided authorization, ...)
    ├── Unauthenticated / Forbidden
    ├── RateLimited                 (transient)
    └── StoreUnavailable            (transient)
"""

from __future__ import annotations


class TreasurerError(Exception):
    """Base of every error Treasurer raises on purpose."""

    code: str = "internal_error"
    transient: bool = False

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InvalidRequest(TreasurerError):
    """The request is malformed; ``field`` names the offending input when there is one."""

    code = "invalid_request"


class AmountError(InvalidRequest):
    """An amount string that is not an exact, positive decimal fitting its asset."""

    code = "amount_invalid"


class PolicyInvalid(InvalidRequest):
    """A policy (or its parameters) does not match the schema of its type."""

    code = "policy_invalid"


class OrgFileInvalid(InvalidRequest):
    """An org file is not valid; the message names the file, the path inside it and the fix."""

    code = "org_file_invalid"


class NotFound(TreasurerError):
    """The named object does not exist (or is not visible to the caller)."""

    code = "not_found"


class Conflict(TreasurerError):
    """The request contradicts the current state."""

    code = "conflict"


class IdempotencyConflict(Conflict):
    """An idempotency key was reused with a different request."""

    code = "idempotency_key_reused"


class InvalidState(Conflict):
    """An object is not in a state that allows the operation (e.g. capture after void)."""

    code = "invalid_state"


class Unauthenticated(TreasurerError):
    """No credential, or one that is wrong, expired or revoked."""

    code = "unauthenticated"


class Forbidden(TreasurerError):
    """The credential is valid but may not do this."""

    code = "forbidden"


class RateLimited(TreasurerError):
    """Too many requests (or failed authentications) from one source; retry later."""

    code = "rate_limited"
    transient = True


class StoreUnavailable(TreasurerError):
    """The database could not be reached or kept failing with retryable errors."""

    code = "store_unavailable"
    transient = True


def all_error_classes() -> list[type[TreasurerError]]:
    """Every class of the tree, so interfaces can build their code tables from one place."""
    seen: list[type[TreasurerError]] = []
    stack: list[type[TreasurerError]] = [TreasurerError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
