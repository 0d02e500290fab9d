"""The local database as a :class:`~treasurer.interfaces.cli.wiring.Backend`.

Domain values are converted with the server's own converters
(:mod:`treasurer.interfaces.http.views`), so there is one mapping from domain to JSON and a
local command prints exactly what the same command against a server prints. Imported only when
a command runs locally: it loads the HTTP package (FastAPI), which remote and ``--help`` runs
do not need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from treasurer.interfaces.cli.wiring import Embedded
from treasurer.interfaces.http.views import (
    authorization_out,
    decision_out,
    plan_out,
    price_out,
    spend_row_out,
)
from treasurer.interfaces.http.views_simulation import backtest_out
from treasurer.wire import (
    AuthorizationOut,
    BacktestOut,
    DecisionOut,
    PlanOut,
    PriceOut,
    SpendRowOut,
)


class EmbeddedBackend:
    """:class:`Backend` over the local database: the embedded API, answered in wire shapes."""

    def __init__(self, embedded: Embedded) -> None:
        self._embedded = embedded

    def apply(
        self, org_file: dict[str, Any], *, dry_run: bool = False, source: str | None = None
    ) -> PlanOut:
        result = self._embedded.apply(org_file, source=source, dry_run=dry_run)
        return plan_out(result, dry_run=dry_run)

    def export(self) -> dict[str, Any]:
        return dict(self._embedded.export())

    def check(
        self,
        *,
        wallet: str,
        amount: str,
        asset: str | None = None,
        agent: str | None = None,
        recipient: str | None = None,
    ) -> DecisionOut:
        decision = self._embedded.check(
            agent=agent or "", wallet=wallet, amount=amount, asset=asset, recipient=recipient
        )
        return decision_out(decision)

    def spend(
        self, *, by: str = "agent", since: datetime | None = None, until: datetime | None = None
    ) -> list[SpendRowOut]:
        return [spend_row_out(r) for r in self._embedded.spend(by=by, since=since, until=until)]

    def spend_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 500,
        after: str | None = None,
    ) -> tuple[list[AuthorizationOut], str | None]:
        page = self._embedded.spend_items(since=since, until=until, limit=limit, after=after)
        return [authorization_out(auth) for auth in page.items], page.next

    def set_price(self, asset: str, price_usd: str) -> PriceOut:
        return price_out(asset, self._embedded.set_price(asset, price_usd))

    def backtest(
        self, org_file: dict[str, Any], *, since: datetime, until: datetime
    ) -> BacktestOut:
        report = self._embedded.backtest(org_file, since=since, until=until, source="org")
        return backtest_out(report)

    def close(self) -> None:
        self._embedded.close()
