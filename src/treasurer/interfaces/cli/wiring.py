"""What the composition root injects into the CLI, and the one shape commands talk to.

Commands work on :class:`Backend`, whose results are the wire models of the HTTP API, so a
command prints the same thing whether it runs against the local database or a server:

- remote: the SDK client (``treasurer.connect``) *is* a :class:`Backend`;
- embedded: :class:`~treasurer.interfaces.cli.embedded.EmbeddedBackend` wraps the in-process
  governance (:class:`Embedded`) and converts its domain values to wire models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from treasurer.domain.facts import PriceQuote
from treasurer.domain.outcome import Decision
from treasurer.service.admin import ApplyResult
from treasurer.service.backtest import BacktestReport
from treasurer.service.ports import SpendRow
from treasurer.service.spend_items import SpendPage
from treasurer.wire import (
    AuthorizationOut,
    BacktestOut,
    DecisionOut,
    PlanOut,
    PriceOut,
    SpendRowOut,
)

if TYPE_CHECKING:
    from treasurer.sdk import Client


class Embedded(Protocol):
    """The in-process governance API, as ``treasurer.open`` returns it (domain values)."""

    def apply(
        self,
        org_file: Any,
        *,
        source: str | None = None,
        actor: str = "admin",
        dry_run: bool = False,
    ) -> ApplyResult: ...

    def export(self) -> dict[str, object]: ...

    def check(
        self,
        *,
        agent: str,
        wallet: str,
        amount: object,
        asset: str | None,
        recipient: str | None = None,
    ) -> Decision: ...

    def spend(
        self, *, by: str = "agent", since: datetime | None = None, until: datetime | None = None
    ) -> list[SpendRow]: ...

    def spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        after: str | None = None,
    ) -> SpendPage: ...

    def set_price(self, asset: str, price_usd: object, *, actor: str = "admin") -> PriceQuote: ...

    def backtest(
        self, draft: Any, *, since: datetime, until: datetime, source: str = "draft"
    ) -> BacktestReport: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """What the org, check, report and price commands need, in wire shapes."""

    def apply(
        self, org_file: dict[str, Any], *, dry_run: bool = False, source: str | None = None
    ) -> PlanOut: ...

    def export(self) -> dict[str, Any]: ...

    def check(
        self,
        *,
        wallet: str,
        amount: str,
        asset: str | None = None,
        agent: str | None = None,
        recipient: str | None = None,
    ) -> DecisionOut: ...

    def spend(
        self, *, by: str = "agent", since: datetime | None = None, until: datetime | None = None
    ) -> list[SpendRowOut]: ...

    def spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        after: str | None = None,
    ) -> tuple[list[AuthorizationOut], str | None]:
        """One page of the itemized spend report and the cursor of the next."""
        ...

    def set_price(self, asset: str, price_usd: str) -> PriceOut: ...

    def backtest(
        self, org_file: dict[str, Any], *, since: datetime, until: datetime
    ) -> BacktestOut: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Wiring:
    """Injected by bootstrap: the local database, org file I/O, init, serve and the remote
    client factory (``connect(url, key)``), plus where a local server and its key live.

    ``export_key(address)`` returns a custodial key in plain text from the local vault (for
    ``treasurer vault export``); None where this installation has no vault to read.
    """

    open_backend: Callable[[], Embedded]
    load_org_file: Callable[[Path], dict[str, Any]]
    dump_org_file: Callable[[dict[str, Any]], str]
    init: Callable[[bool], list[str]]
    serve: Callable[[], None]
    connect: Callable[[str, str], Client] | None = None
    default_url: str = "http://127.0.0.1:8420"
    default_key_file: Path | None = None
    export_key: Callable[[str], str] | None = None
