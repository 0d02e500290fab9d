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
    from collections.abc import Mapping

    from treasurer.bootstrap import EmbeddedGovernance
    from treasurer.sdk import connect, connect_async
    from treasurer.service.chain_ports import Chain, Vault
    from treasurer.service.ports import Clock

__version__ = "0.1.0"


def open(
    database_url: str,
    *,
    clock: Clock | None = None,
    migrate: bool = True,
    chains: Mapping[str, Chain] | None = None,
    vault: Vault | None = None,
) -> EmbeddedGovernance:
    """Open the embedded governance API on a ``sqlite:///`` or ``postgresql://`` URL.

    With ``chains`` (network name → chain adapter) and a ``vault``, ``pay`` works in-process
    too (custodial mode); without them it raises ``payments_not_configured``. Imported lazily
    so ``import treasurer`` stays light for code that only needs the errors.
    """
    from treasurer.bootstrap import open_governance  # noqa: PLC0415

    return open_governance(database_url, clock=clock, migrate=migrate, chains=chains, vault=vault)


def __getattr__(name: str) -> object:
    """``connect`` and ``connect_async`` load the remote client (and httpx) on first use, so
    ``import treasurer`` stays light for code that only needs the errors."""
    if name in ("connect", "connect_async"):
        from treasurer import sdk  # noqa: PLC0415

        return getattr(sdk, name)
    raise AttributeError(f"module 'treasurer' has no attribute {name!r}")


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
