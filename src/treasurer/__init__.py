"""Treasurer: governance for the money AI agents spend.

::

    import treasurer

    gov = treasurer.open("sqlite:///.treasurer/treasurer.db")
    gov.apply("org.yaml")
    decision = gov.check(agent="procurement_bot", wallet="pb-base", amount="499.00", asset="USDC")

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
    from treasurer.bootstrap import EmbeddedGovernance
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
    "open",
]
