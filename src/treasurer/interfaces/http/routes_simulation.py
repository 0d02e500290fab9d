"""Simulation: ``POST /v1/backtests`` and ``GET /v1/shadow-report``.

Both only read recorded decisions, so admin, finance *and auditor* keys may run them. A
backtest is a POST because its input is a whole draft org file, not because it writes: it
writes nothing (no balance, no authorization, no audit event), which is why the auditor's
read-only rule is waived for this one route and no other. Both read the traffic of the whole
org, so a key scoped to a department is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from treasurer.domain.credentials import Principal
from treasurer.domain.errors import InvalidRequest, Unauthenticated
from treasurer.domain.windows import quarter_range
from treasurer.interfaces.http.deps import Ctx, P, Reporter
from treasurer.interfaces.http.middleware import PRINCIPAL_KEY
from treasurer.interfaces.http.problems import COMMON, responses
from treasurer.interfaces.http.views_simulation import backtest_out, shadow_report_out
from treasurer.service.auth_access import require, require_org_wide
from treasurer.wire import BacktestIn, BacktestOut, Quarter, ShadowReportOut

router = APIRouter(tags=["simulation"], responses=COMMON)


async def _simulator(request: Request) -> Principal:
    """A key with the report permission, auditors included (see the module docstring)."""
    principal = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise Unauthenticated("authentication failed: send Authorization: Bearer <token>")
    require(principal, P.REPORT)
    require_org_wide(principal, "backtests")
    return principal


Simulator = Annotated[Principal, Depends(_simulator)]


@router.post("/v1/backtests", responses=responses(400, 422))
def run_backtest(ctx: Ctx, who: Simulator, body: BacktestIn) -> BacktestOut:
    """Replay the decisions recorded in the range against the draft org file ``org`` and
    list every one that would come out differently. Writes nothing."""
    since, until = time_range(body.since, body.until, body.quarter)
    report = ctx.governance.backtest(body.org, since=since, until=until, source="org")
    return backtest_out(report)


@router.get("/v1/shadow-report", responses=responses(400))
def shadow_report(
    ctx: Ctx,
    who: Reporter,
    since: datetime | None = None,
    until: datetime | None = None,
    quarter: Annotated[Quarter | None, Query(examples=["2026Q2"])] = None,
) -> ShadowReportOut:
    """Per shadow policy: what it would have denied among the decisions of the range."""
    require_org_wide(who, "the shadow report")
    since, until = time_range(since, until, quarter)
    return shadow_report_out(since, until, ctx.governance.shadow_report(since=since, until=until))


def time_range(
    since: datetime | None, until: datetime | None, quarter: str | None
) -> tuple[datetime, datetime]:
    """[since, until) from ``quarter`` (UTC) or from both ends, each with its zone."""
    if quarter is not None:
        if since is not None or until is not None:
            raise InvalidRequest("quarter: give either quarter or since/until", field="quarter")
        try:
            first, last = quarter_range(quarter)
        except ValueError as exc:
            raise InvalidRequest(f"quarter: {exc}", field="quarter") from None
        return (
            datetime(first.year, first.month, first.day, tzinfo=UTC),
            datetime(last.year, last.month, last.day, tzinfo=UTC),
        )
    for moment, name in ((since, "since"), (until, "until")):
        if moment is None:
            raise InvalidRequest(f"{name}: required (or give quarter, e.g. 2026Q2)", field=name)
        if moment.tzinfo is None:
            raise InvalidRequest(
                f"{name}: give a time zone (e.g. 2026-04-01T00:00:00Z)", field=name
            )
    assert since is not None and until is not None
    return since, until
