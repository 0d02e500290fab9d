"""Budget windows: calendar periods in the org's timezone, rolling windows and lifetime.

A calendar window (day, week, month, quarter, year) is keyed by its period, e.g.
``day:2026-03-08``; the period boundaries are local midnights of the org timezone converted to
UTC, so a DST change makes a day 23 or 25 hours long, as a finance team expects.

A rolling window is one balance row plus time buckets of captured spend. A bucket is dropped
only once *all* of it is older than the window, so rolling windows can deny early, never
allow over the limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo


class WindowKind(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"
    ROLLING = "rolling"
    LIFETIME = "lifetime"
    PER_TRANSACTION = "per_transaction"


CALENDAR_KINDS = frozenset(
    {WindowKind.DAY, WindowKind.WEEK, WindowKind.MONTH, WindowKind.QUARTER, WindowKind.YEAR}
)
#: Number of buckets a rolling window is cut into (precision of its early expiry).
ROLLING_BUCKETS = 60


@dataclass(frozen=True, slots=True)
class Window:
    kind: WindowKind
    rolling_s: int | None = None

    def __str__(self) -> str:
        if self.kind is WindowKind.ROLLING:
            return f"rolling {self.rolling_s}s"
        return self.kind.value

    @property
    def bucket_s(self) -> int:
        """Width of one rolling bucket in seconds (at least one second)."""
        assert self.rolling_s is not None
        return max(1, math.ceil(self.rolling_s / ROLLING_BUCKETS))

    @property
    def adjective(self) -> str:
        """Word for messages: "daily budget", "rolling 3600s budget", "lifetime budget"."""
        return {
            WindowKind.DAY: "daily",
            WindowKind.WEEK: "weekly",
            WindowKind.MONTH: "monthly",
            WindowKind.QUARTER: "quarterly",
            WindowKind.YEAR: "yearly",
            WindowKind.LIFETIME: "lifetime",
            WindowKind.PER_TRANSACTION: "per-transaction",
        }.get(self.kind, f"rolling {self.rolling_s}s")


@dataclass(frozen=True, slots=True)
class Period:
    """One instance of a window: its key and its UTC bounds (``None`` when unbounded)."""

    key: str
    start: datetime | None
    end: datetime | None


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def period_of(window: Window, now: datetime, timezone: str) -> Period:
    """The period of ``window`` that contains ``now`` (an aware datetime)."""
    if window.kind not in CALENDAR_KINDS:
        return _period_of_day(window, None, timezone)
    return _period_of_day(window, now.astimezone(ZoneInfo(timezone)).date(), timezone)


@lru_cache(maxsize=4096)
def _period_of_day(window: Window, local: date | None, timezone: str) -> Period:
    """Periods depend only on the local date: cached, as every decision asks for several."""
    tz = ZoneInfo(timezone)
    kind = window.kind
    if local is None:
        key = f"rolling:{window.rolling_s}" if kind is WindowKind.ROLLING else kind.value
        return Period(key=key, start=None, end=None)
    if kind is WindowKind.DAY:
        start_day, end_day = local, local + timedelta(days=1)
        key = f"day:{local.isoformat()}"
    elif kind is WindowKind.WEEK:
        start_day = local - timedelta(days=local.weekday())
        end_day = start_day + timedelta(days=7)
        iso = local.isocalendar()
        key = f"week:{iso.year}-W{iso.week:02d}"
    elif kind is WindowKind.MONTH:
        start_day = local.replace(day=1)
        end_day = (start_day + timedelta(days=32)).replace(day=1)
        key = f"month:{local.year}-{local.month:02d}"
    elif kind is WindowKind.QUARTER:
        quarter = (local.month - 1) // 3 + 1
        start_day = date(local.year, 3 * quarter - 2, 1)
        end_day = (
            date(local.year + 1, 1, 1) if quarter == 4 else date(local.year, 3 * quarter + 1, 1)
        )
        key = f"quarter:{local.year}Q{quarter}"
    else:
        start_day, end_day = date(local.year, 1, 1), date(local.year + 1, 1, 1)
        key = f"year:{local.year}"
    return Period(key=key, start=_local_midnight(start_day, tz), end=_local_midnight(end_day, tz))


def epoch_s(moment: datetime) -> int:
    return int(moment.timestamp())


def rolling_bucket(window: Window, moment: datetime) -> int:
    """Bucket index a spend captured at ``moment`` is recorded in."""
    return epoch_s(moment) // window.bucket_s


def rolling_cutoff(window: Window, now: datetime) -> int:
    """Buckets with an index below this are entirely older than the window and may expire."""
    assert window.rolling_s is not None
    return (epoch_s(now) - window.rolling_s) // window.bucket_s


def quarter_range(text: str) -> tuple[date, date]:
    """``"2026Q2"`` → (2026-04-01, 2026-07-01): the half-open date range of a quarter."""
    year_text, sep, quarter_text = text.upper().partition("Q")
    if not sep or not year_text.isdigit() or quarter_text not in {"1", "2", "3", "4"}:
        raise ValueError(f"quarter {text!r} must look like 2026Q2")
    year, quarter = int(year_text), int(quarter_text)
    start = date(year, 3 * quarter - 2, 1)
    end = date(year + 1, 1, 1) if quarter == 4 else date(year, 3 * quarter + 1, 1)
    return start, end
