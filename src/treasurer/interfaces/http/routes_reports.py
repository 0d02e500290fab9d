"""Reports: ``/v1/spend`` (aggregates), ``/v1/spend/items`` (the same spend, itemized),
``/v1/audit`` (the event log), ``/v1/audit/verify``.

A key scoped to a department sees the spend of its department and the teams below it only;
the audit log is org-wide, so it needs an unscoped key.

The audit routes use the audit trail the composition root attached to the governance
(``governance.audit``, see :func:`treasurer.service.audit.audit_of`); without one, the list
answers unfiltered as before and verification answers 501.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from treasurer.domain.errors import Forbidden, InvalidRequest
from treasurer.interfaces.audit_views import verification_out
from treasurer.interfaces.csv_text import spend_csv, spend_items_csv
from treasurer.interfaces.http.deps import Ctx, Pages, Reader, Reporter, stored_page
from treasurer.interfaces.http.problems import COMMON, NotImplementedYet, responses
from treasurer.interfaces.http.views import audit_event_out, authorization_out, spend_row_out
from treasurer.service.admin import GROUPS
from treasurer.service.audit import audit_of
from treasurer.service.audit_ports import AuditEntry, AuditQuery
from treasurer.service.audit_signing import public_key_from_text
from treasurer.service.auth_access import require_org_wide
from treasurer.service.ports import SpendRow
from treasurer.wire import AuditEventOut, AuthorizationOut, Page, SpendReport
from treasurer.wire_audit import AuditVerificationOut

router = APIRouter(tags=["reports"], responses=COMMON)
Filter = Annotated[str | None, Query(max_length=200)]
#: Event ids are BIGINT: a larger cursor cannot name an event (and would overflow the driver).
MAX_EVENT_ID = 2**63 - 1


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
                _merge_amounts(old.captured_amounts, row.captured_amounts),
            )
        )
    return [merged[k] for k in sorted(merged)]


def _merge_amounts(
    a: tuple[tuple[str, int, int | None], ...], b: tuple[tuple[str, int, int | None], ...]
) -> tuple[tuple[str, int, int | None], ...]:
    sums: dict[str, tuple[int, int | None]] = {}
    for asset, units, decimals in (*a, *b):
        sums[asset] = (sums.get(asset, (0, decimals))[0] + units, decimals)
    return tuple((asset, units, dec) for asset, (units, dec) in sorted(sums.items()))


@router.get(
    "/v1/spend",
    response_model=SpendReport,
    responses={**responses(400), 200: {"content": {"text/csv": {}}}},
)
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
    format: Annotated[
        Literal["json", "csv"], Query(description="csv: text/csv, USD as exact decimals")
    ] = "json",
) -> SpendReport | Response:
    """Captured and reserved USD per group, over authorizations created in [since, until)."""
    since, until = _aware(since, "since"), _aware(until, "until")
    given = {"agent": agent, "wallet": wallet, "chain": chain, "asset": asset, "vendor": vendor}
    filters = {k: v for k, v in given.items() if v is not None}
    rows: list[SpendRow] = []
    for dept in _departments(ctx.view(who).departments_in_scope(), department):
        extra = {"department": dept} if dept is not None else {}
        rows += ctx.governance.spend(by=group_by, since=since, until=until, **filters, **extra)
    out = [spend_row_out(r) for r in _merge(rows)]
    if format == "csv":
        return Response(spend_csv(group_by, out), media_type="text/csv; charset=utf-8")
    return SpendReport(group_by=group_by, since=since, until=until, rows=out)


@router.get(
    "/v1/spend/items",
    response_model=Page[AuthorizationOut],
    responses={**responses(400), 200: {"content": {"text/csv": {}}}},
)
def spend_items(
    ctx: Ctx,
    who: Reporter,
    pages: Pages,
    since: datetime | None = None,
    until: datetime | None = None,
    department: Filter = None,
    agent: Filter = None,
    wallet: Filter = None,
    chain: Filter = None,
    asset: Filter = None,
    vendor: Filter = None,
    format: Annotated[
        Literal["json", "csv"],
        Query(description="csv: one row per item (this page), exact decimals"),
    ] = "json",
) -> Page[AuthorizationOut] | Response:
    """Every authorization ``/v1/spend`` sums, one by one, with the decision that allowed it.

    Same range, filters and department scoping as ``/v1/spend``, so the captured and reserved
    USD of all pages add up to its totals. Ordered by creation time, then id; pass ``next``
    as ``after`` to continue (with csv, the cursor is in the ``Treasurer-Next`` header).
    """
    since, until = _aware(since, "since"), _aware(until, "until")
    given = {"agent": agent, "wallet": wallet, "chain": chain, "asset": asset, "vendor": vendor}
    filters = {k: v for k, v in given.items() if v is not None}
    depts = _departments(ctx.view(who).departments_in_scope(), department)
    page = ctx.governance.spend_items(
        since=since,
        until=until,
        limit=pages.limit,
        after=pages.after,
        departments=None if depts == [None] else [d for d in depts if d is not None],
        **filters,
    )
    items = [authorization_out(auth) for auth in page.items]
    if format == "csv":
        headers = {} if page.next is None else {"Treasurer-Next": page.next}
        return Response(
            spend_items_csv(items), media_type="text/csv; charset=utf-8", headers=headers
        )
    return Page[AuthorizationOut](items=items, next=page.next)


def _aware(moment: datetime | None, name: str) -> datetime | None:
    """A query time must say its zone: a bare time is ambiguous across offices."""
    if moment is not None and moment.tzinfo is None:
        raise InvalidRequest(f"{name}: give a time zone (e.g. 2026-04-01T00:00:00Z)", field=name)
    return moment


def _departments(scoped: list[str] | None, wanted: str | None) -> list[str | None]:
    """The department filters to query: the one asked for, or every one a scoped key covers."""
    if scoped is None:
        return [wanted]
    if wanted is not None and wanted not in scoped:
        raise Forbidden("department: outside this key's scope", field="department")
    return [wanted] if wanted is not None else list(scoped)


@router.get("/v1/audit", responses=responses(400, 501))
def audit(
    ctx: Ctx,
    who: Reader,
    pages: Pages,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: Filter = None,
    actor: Filter = None,
    subject: Filter = None,
    agent: Filter = None,
    department: Filter = None,
    wallet: Filter = None,
    chain: Filter = None,
    outcome: Annotated[
        Literal["allowed", "denied"] | None, Query(description="of decisions")
    ] = None,
) -> Page[AuditEventOut]:
    """Audit events in id order; pass ``next`` as ``after`` to continue.

    Every filter is an indexed query. ``at`` in [since, until); ``kind``, ``actor`` and
    ``subject`` match exactly; ``agent``, ``department``, ``wallet``, ``chain`` and
    ``outcome`` are what each event concerns, resolved when the event is sealed into the hash
    chain (this call seals first, so only events of still-open transactions can be missing).
    Each event carries ``seq``, ``hash`` and ``prev_hash`` as in an export line; they are null
    until it is sealed (the unfiltered list does not seal first).
    """
    require_org_wide(who, "the audit log")
    after = _event_cursor(pages.after)
    query = AuditQuery(
        since=_aware(since, "since"),
        until=_aware(until, "until"),
        kind=kind,
        actor=actor,
        subject=subject,
        agent=agent,
        department=department,
        wallet=wallet,
        chain=chain,
        outcome=outcome,
    )
    trail = audit_of(ctx.governance)
    if trail is None:
        if query != AuditQuery():
            raise NotImplementedYet(
                "audit filters need the audit trail, and this server was built without one"
            )
        rows = ctx.governance.store.audit_events(pages.limit + 1, after)
        items, nxt = stored_page(rows, lambda e: str(e["id"]), pages.limit)
        return Page[AuditEventOut](items=[audit_event_out(e) for e in items], next=nxt)
    entries = trail.events(query, pages.limit + 1, after)
    chunk, nxt = stored_page(entries, lambda e: str(e.id), pages.limit)
    return Page[AuditEventOut](items=[_event_out(e) for e in chunk], next=nxt)


def _event_cursor(after: str | None) -> int:
    text = after or "0"
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_EVENT_ID:
        raise InvalidRequest("after: the audit cursor is an event id (digits)", field="after")
    return int(text)


def _event_out(entry: AuditEntry) -> AuditEventOut:
    payload = entry.payload if isinstance(entry.payload, dict) else {"raw": entry.payload}
    return AuditEventOut(
        id=entry.id,
        at=entry.at,
        kind=entry.kind,
        actor=entry.actor,
        subject=entry.subject,
        payload=payload,
        seq=entry.seq,
        hash=entry.hash,
        prev_hash=entry.prev_hash,
    )


@router.get("/v1/audit/verify", responses=responses(400, 501))
def verify_audit(
    ctx: Ctx,
    who: Reader,
    public_key: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Ed25519 public key (64 hex digits) every checkpoint must be signed by",
        ),
    ] = None,
) -> AuditVerificationOut:
    """Verify the hash chain of the live audit log and its signed checkpoints.

    Seals what can be sealed, then recomputes every hash from event 1. A broken chain is an
    answer, not an error: ``ok`` is false and ``first_broken`` names the first event that was
    altered, removed, inserted or reordered.
    """
    require_org_wide(who, "the audit log")
    trusted = public_key_from_text(public_key) if public_key is not None else None
    trail = audit_of(ctx.governance)
    if trail is None:
        raise NotImplementedYet("this server was built without the audit trail")
    live = trail.verify_live(trusted)
    return verification_out(live.report, live.unsealed)
