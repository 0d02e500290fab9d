"""Reports: ``/v1/spend`` (aggregates), ``/v1/audit`` (the event log), ``/v1/audit/verify``.

A key scoped to a department sees the spend of its department and the teams below it only;
the audit log is org-wide, so it needs an unscoped key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from treasurer.domain.errors import Forbidden, InvalidRequest
from treasurer.interfaces.http.deps import Ctx, Pages, Reader, Reporter, stored_page
from treasurer.interfaces.http.problems import COMMON, NotImplementedYet, responses
from treasurer.interfaces.http.views import audit_event_out, spend_row_out
from treasurer.service.admin import GROUPS
from treasurer.service.auth_access import require_org_wide
from treasurer.service.ports import SpendRow
from treasurer.wire import AuditEventOut, Page, SpendReport

router = APIRouter(tags=["reports"], responses=COMMON)
Filter = Annotated[str | None, Query(max_length=200)]


def _merge(rows: list[SpendRow]) -> list[SpendRow]:
    """Sum rows of the same group (one query per department of a scoped key)."""
    merged: dict[str, SpendRow] = {}
    for row in rows:
        old = merged.get(row.group)
        merged[row.group] = (
            row
            if old is None
            else SpendRow(
                row.group,
                old.captured_usd_micros + row.captured_usd_micros,
                old.pending_usd_micros + row.pending_usd_micros,
                old.captured_count + row.captured_count,
                old.pending_count + row.pending_count,
            )
        )
    return [merged[k] for k in sorted(merged)]


@router.get("/v1/spend", responses=responses(400))
def spend(
    ctx: Ctx,
    who: Reporter,
    group_by: Annotated[str, Query(description=", ".join(GROUPS))] = "agent",
    since: datetime | None = None,
    until: datetime | None = None,
    department: Filter = None,
    agent: Filter = None,
    wallet: Filter = None,
    chain: Filter = None,
    asset: Filter = None,
    vendor: Filter = None,
) -> SpendReport:
    """Captured and reserved USD per group, over authorizations created in [since, until)."""
    for moment, name in ((since, "since"), (until, "until")):
        if moment is not None and moment.tzinfo is None:
            raise InvalidRequest(
                f"{name}: give a time zone (e.g. 2026-04-01T00:00:00Z)", field=name
            )
    given = {"agent": agent, "wallet": wallet, "chain": chain, "asset": asset, "vendor": vendor}
    filters = {k: v for k, v in given.items() if v is not None}
    rows: list[SpendRow] = []
    for dept in _departments(ctx.view(who).departments_in_scope(), department):
        extra = {"department": dept} if dept is not None else {}
        rows += ctx.governance.spend(by=group_by, since=since, until=until, **filters, **extra)
    return SpendReport(
        group_by=group_by, since=since, until=until, rows=[spend_row_out(r) for r in _merge(rows)]
    )


def _departments(scoped: list[str] | None, wanted: str | None) -> list[str | None]:
    """The department filters to query: the one asked for, or every one a scoped key covers."""
    if scoped is None:
        return [wanted]
    if wanted is not None and wanted not in scoped:
        raise Forbidden("department: outside this key's scope", field="department")
    return [wanted] if wanted is not None else list(scoped)


@router.get("/v1/audit", responses=responses(400))
def audit(ctx: Ctx, who: Reader, pages: Pages) -> Page[AuditEventOut]:
    """Audit events in order; pass ``next`` as ``after`` to continue."""
    require_org_wide(who, "the audit log")
    after = pages.after or "0"
    if not after.isdigit():
        raise InvalidRequest("after: the audit cursor is an event id (digits)", field="after")
    rows = ctx.governance.store.audit_events(pages.limit + 1, int(after))
    items, nxt = stored_page(rows, lambda e: str(e["id"]), pages.limit)
    return Page[AuditEventOut](items=[audit_event_out(e) for e in items], next=nxt)


@router.get("/v1/audit/verify", responses=responses(501))
def verify_audit(ctx: Ctx, who: Reader) -> dict[str, str]:
    """Verify the hash chain of the audit log. Not available yet (501): the chain comes later."""
    require_org_wide(who, "the audit log")
    raise NotImplementedYet(
        "audit verification is not available yet: the audit log is not hash-chained in this "
        "release; the audit-chain feature adds chaining, checkpoints and verify"
    )
