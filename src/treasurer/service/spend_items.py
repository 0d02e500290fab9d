"""The itemized spend report: every authorization that counts as spend, page by page.

``GET /v1/spend`` answers "how much"; the auditor also asks "which spends, and why was each
allowed". The items are exactly the rows the totals sum (see :meth:`Store.spend
<treasurer.service.ports.Store.spend>`), so adding up every page gives the totals back, cent
for cent. Each item is a stored :class:`Authorization` whose ``decision`` explains it.

The cursor is opaque to callers: ``<created µs since epoch>:<authorization id>``, the keyset
of the (created_at, id) order, so a page never skips or repeats a row as new spends arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from treasurer.domain.authorization import Authorization
from treasurer.domain.errors import InvalidRequest
from treasurer.service.ports import Store

#: Filters the itemized report takes, the same as the totals' (``department`` included).
ITEM_FILTERS = ("department", "agent", "wallet", "chain", "asset", "vendor")
#: The largest page, as for every list of the HTTP API.
MAX_ITEMS_PAGE = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class SpendPage:
    """One page of spend items and the cursor of the next (None on the last page)."""

    items: list[Authorization]
    next: str | None


def item_cursor(auth: Authorization) -> str:
    """The cursor that resumes right after ``auth``."""
    return f"{(auth.created_at - _EPOCH) // _MICRO}:{auth.id}"


def parse_item_cursor(text: str) -> tuple[datetime, str]:
    """``after`` back to its (created_at, id) keyset; a malformed cursor is the caller's
    mistake (invalid_request on ``after``), not a reason to start over silently."""
    micros, sep, ident = text.partition(":")
    if not (sep and ident and micros.isascii() and micros.isdigit() and len(micros) <= 18):
        raise InvalidRequest(
            "after: not a cursor of this list (pass the previous page's next)", field="after"
        )
    return _EPOCH + int(micros) * _MICRO, ident


def spend_page(
    store: Store,
    *,
    since: datetime | None,
    until: datetime | None,
    filters: dict[str, str],
    departments: Sequence[str] | None,
    limit: int,
    after: str | None,
) -> SpendPage:
    """Validate like the totals do, then read ``limit + 1`` rows (the extra one only says
    that there is a next page)."""
    for moment, name in ((since, "since"), (until, "until")):
        if moment is not None and moment.tzinfo is None:
            raise InvalidRequest(
                f"{name}: give a time zone (e.g. 2026-04-01T00:00:00Z)", field=name
            )
    unknown = set(filters) - set(ITEM_FILTERS)
    if unknown:
        raise InvalidRequest(f"unknown filter(s): {', '.join(sorted(unknown))}", field="filters")
    if not 1 <= limit <= MAX_ITEMS_PAGE:
        raise InvalidRequest(f"limit: must be between 1 and {MAX_ITEMS_PAGE}", field="limit")
    cursor = None if after is None else parse_item_cursor(after)
    rows = store.spend_authorizations(since, until, dict(filters), departments, limit + 1, cursor)
    items = rows[:limit]
    more = len(rows) > limit
    return SpendPage(items, item_cursor(items[-1]) if more and items else None)
