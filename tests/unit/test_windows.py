"""Budget windows: calendar periods in the org timezone, DST, rolling buckets, quarters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treasurer.domain.windows import (
    ROLLING_BUCKETS,
    Period,
    Window,
    WindowKind,
    epoch_s,
    period_of,
    quarter_range,
    rolling_bucket,
    rolling_cutoff,
)

NY = "America/New_York"
BERLIN = "Europe/Berlin"
DAY = Window(WindowKind.DAY)
WEEK = Window(WindowKind.WEEK)
MONTH = Window(WindowKind.MONTH)
QUARTER = Window(WindowKind.QUARTER)
YEAR = Window(WindowKind.YEAR)
US = timedelta(microseconds=1)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


# ---------------------------------------------------------------- keys and bounds


@pytest.mark.parametrize(
    ("window", "key", "start", "end"),
    [
        (DAY, "day:2026-03-10", utc(2026, 3, 10, 4), utc(2026, 3, 11, 4)),
        (WEEK, "week:2026-W11", utc(2026, 3, 9, 4), utc(2026, 3, 16, 4)),
        (MONTH, "month:2026-03", utc(2026, 3, 1, 5), utc(2026, 4, 1, 4)),
        (QUARTER, "quarter:2026Q1", utc(2026, 1, 1, 5), utc(2026, 4, 1, 4)),
        (YEAR, "year:2026", utc(2026, 1, 1, 5), utc(2027, 1, 1, 5)),
    ],
)
def test_calendar_period_keys_and_bounds_in_new_york(
    window: Window, key: str, start: datetime, end: datetime
) -> None:
    """Tuesday 2026-03-10 11:00 New York falls in the expected day/week/month/quarter/year."""
    period = period_of(window, utc(2026, 3, 10, 15), NY)
    assert period == Period(key=key, start=start, end=end)


def test_quarter_two_and_four_bounds() -> None:
    """Q2 runs April 1 to July 1 local; Q4 ends at the next New Year's local midnight."""
    q2 = period_of(QUARTER, utc(2026, 5, 15, 12), NY)
    assert (q2.key, q2.start, q2.end) == (
        "quarter:2026Q2",
        utc(2026, 4, 1, 4),
        utc(2026, 7, 1, 4),
    )
    q4 = period_of(QUARTER, utc(2026, 12, 31, 12), NY)
    assert (q4.key, q4.start, q4.end) == (
        "quarter:2026Q4",
        utc(2026, 10, 1, 4),
        utc(2027, 1, 1, 5),
    )


def test_december_month_ends_at_next_year() -> None:
    """The December period ends at local midnight of January 1st of the next year."""
    period = period_of(MONTH, utc(2026, 12, 15), "UTC")
    assert (period.key, period.end) == ("month:2026-12", utc(2027, 1, 1))


def test_february_in_a_leap_year() -> None:
    """February 2028 has 29 days."""
    period = period_of(MONTH, utc(2028, 2, 10), "UTC")
    assert period.end is not None and period.start is not None
    assert period.end - period.start == timedelta(days=29)


def test_utc_evening_can_be_the_previous_local_year() -> None:
    """2026-01-01 03:00 UTC is still New Year's Eve 2025 in New York."""
    moment = utc(2026, 1, 1, 3)
    assert period_of(DAY, moment, NY).key == "day:2025-12-31"
    assert period_of(YEAR, moment, NY).key == "year:2025"
    assert period_of(DAY, moment, "UTC").key == "day:2026-01-01"


def test_week_key_uses_iso_year() -> None:
    """Wednesday 2025-12-31 belongs to ISO week 2026-W01, which starts Monday 2025-12-29."""
    period = period_of(WEEK, utc(2025, 12, 31, 12), "UTC")
    assert (period.key, period.start) == ("week:2026-W01", utc(2025, 12, 29))


def test_week_starts_monday_and_sunday_closes_it() -> None:
    """Sunday 23:59 local is the same week as Monday 00:00; Monday 00:00 starts a new one."""
    monday = period_of(WEEK, utc(2026, 3, 9, 4), NY)
    sunday_night = period_of(WEEK, utc(2026, 3, 16, 4) - US, NY)
    next_monday = period_of(WEEK, utc(2026, 3, 16, 4), NY)
    assert monday == sunday_night
    assert monday.key == "week:2026-W11"
    assert next_monday.key == "week:2026-W12"
    assert monday.start is not None
    assert monday.start.astimezone(ZoneInfo(NY)).weekday() == 0


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        (WindowKind.LIFETIME, "lifetime"),
        (WindowKind.PER_TRANSACTION, "per_transaction"),
    ],
)
def test_unbounded_windows(kind: WindowKind, key: str) -> None:
    """Lifetime and per-transaction windows have one unbounded period."""
    assert period_of(Window(kind), utc(2026, 3, 10), NY) == Period(key, None, None)


def test_rolling_window_has_one_unbounded_period() -> None:
    """A rolling window is one balance row keyed by its length."""
    period = period_of(Window(WindowKind.ROLLING, 3600), utc(2026, 3, 10), NY)
    assert period == Period("rolling:3600", None, None)


# ---------------------------------------------------------------- rollover at local midnight


@pytest.mark.parametrize(
    ("tz", "midnight"), [(NY, utc(2026, 3, 11, 4)), (BERLIN, utc(2026, 3, 10, 23))]
)
def test_day_rolls_over_exactly_at_local_midnight(tz: str, midnight: datetime) -> None:
    """One microsecond before local midnight is the old day; local midnight is the new day."""
    before = period_of(DAY, midnight - US, tz)
    at = period_of(DAY, midnight, tz)
    assert before.key == "day:2026-03-10"
    assert at.key == "day:2026-03-11"
    assert before.end == at.start == midnight


def test_month_rolls_over_exactly_at_local_midnight() -> None:
    """The last microsecond of March (New York) is March; the next instant is April."""
    midnight = utc(2026, 4, 1, 4)
    assert period_of(MONTH, midnight - US, NY).key == "month:2026-03"
    assert period_of(MONTH, midnight, NY).key == "month:2026-04"


# ---------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("tz", "day", "start", "hours"),
    [
        (NY, date(2026, 3, 8), utc(2026, 3, 8, 5), 23),
        (NY, date(2026, 11, 1), utc(2026, 11, 1, 4), 25),
        (NY, date(2026, 3, 9), utc(2026, 3, 9, 4), 24),
        (BERLIN, date(2026, 3, 29), utc(2026, 3, 28, 23), 23),
        (BERLIN, date(2026, 10, 25), utc(2026, 10, 24, 22), 25),
    ],
)
def test_dst_change_days_are_23_or_25_hours(
    tz: str, day: date, start: datetime, hours: int
) -> None:
    """A day with a DST change is 23 or 25 hours long, bounded by real local midnights."""
    period = period_of(DAY, start + timedelta(hours=12), tz)
    assert period.key == f"day:{day.isoformat()}"
    assert period.start == start
    assert period.end == start + timedelta(hours=hours)


def test_fall_back_hour_that_repeats_stays_in_its_day() -> None:
    """Both passes of 01:30 on 2026-11-01 in New York are in day 2026-11-01."""
    first = utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    second = utc(2026, 11, 1, 6, 30)  # 01:30 EST
    assert period_of(DAY, first, NY) == period_of(DAY, second, NY)


TIMEZONES = (
    "UTC",
    NY,
    BERLIN,
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # DST changes at local midnight
    "America/Havana",  # DST changes at local midnight
    "Pacific/Chatham",  # +12:45 / +13:45
    "Pacific/Apia",  # skipped 2011-12-30 entirely
)
CALENDAR = (DAY, WEEK, MONTH, QUARTER, YEAR)


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2005, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
    tz=st.sampled_from(TIMEZONES),
    window=st.sampled_from(CALENDAR),
)
def test_period_contains_its_moment_and_periods_tile(
    moment: datetime, tz: str, window: Window
) -> None:
    """Every moment lies in [start, end) of its period, and the next period starts at end."""
    period = period_of(window, moment, tz)
    assert period.start is not None and period.end is not None
    assert period.start <= moment < period.end
    assert period_of(window, period.start, tz).key == period.key
    assert period_of(window, period.end - US, tz).key == period.key
    following = period_of(window, period.end, tz)
    assert following.key != period.key
    assert following.start == period.end


@settings(max_examples=200, deadline=None)
@given(
    day=st.dates(min_value=date(2005, 1, 1), max_value=date(2040, 1, 1)),
    tz=st.sampled_from((NY, BERLIN, "Europe/London", "Australia/Sydney")),
)
def test_days_are_23_24_or_25_hours(day: date, tz: str) -> None:
    """In zones with a one-hour DST shift, every local day is 23, 24 or 25 hours long."""
    moment = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    period = period_of(DAY, moment, tz)
    assert period.start is not None and period.end is not None
    assert period.end - period.start in {timedelta(hours=h) for h in (23, 24, 25)}


# ---------------------------------------------------------------- quarters


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026Q1", date(2026, 1, 1), date(2026, 4, 1)),
        ("2026Q2", date(2026, 4, 1), date(2026, 7, 1)),
        ("2026q3", date(2026, 7, 1), date(2026, 10, 1)),
        ("2026Q4", date(2026, 10, 1), date(2027, 1, 1)),
    ],
)
def test_quarter_range(text: str, start: date, end: date) -> None:
    """quarter_range gives the half-open date range of a quarter (case-insensitive Q)."""
    assert quarter_range(text) == (start, end)


@pytest.mark.parametrize("text", ["2026Q5", "2026Q0", "Q2", "2026-Q2", "2026", "26Q2x", ""])
def test_quarter_range_refuses_bad_text(text: str) -> None:
    """Anything but YYYYQn with n in 1..4 is refused."""
    with pytest.raises(ValueError, match="2026Q2"):
        quarter_range(text)


def test_quarter_range_agrees_with_period_of() -> None:
    """The quarter key of period_of and quarter_range describe the same dates."""
    period = period_of(QUARTER, utc(2026, 5, 15, 12), "UTC")
    start, end = quarter_range(period.key.removeprefix("quarter:"))
    assert period.start == datetime(start.year, start.month, start.day, tzinfo=UTC)
    assert period.end == datetime(end.year, end.month, end.day, tzinfo=UTC)


# ---------------------------------------------------------------- rolling windows


@pytest.mark.parametrize(
    ("rolling_s", "bucket_s"), [(1, 1), (30, 1), (60, 1), (61, 2), (3600, 60), (86400, 1440)]
)
def test_rolling_bucket_width(rolling_s: int, bucket_s: int) -> None:
    """A rolling window is cut into at most 60 buckets of at least one second."""
    window = Window(WindowKind.ROLLING, rolling_s)
    assert window.bucket_s == bucket_s
    assert ROLLING_BUCKETS == 60


def test_rolling_bucket_expires_exactly_when_its_last_second_is_a_window_old() -> None:
    """A 1h window (60s buckets): a spend at 12:00:30 expires at 13:01:00, not before."""
    window = Window(WindowKind.ROLLING, 3600)
    spend = utc(2026, 3, 10, 12, 0, 30)
    bucket = rolling_bucket(window, spend)
    assert not bucket < rolling_cutoff(window, utc(2026, 3, 10, 13, 0, 59))
    assert bucket < rolling_cutoff(window, utc(2026, 3, 10, 13, 1, 0))


def test_window_adjectives() -> None:
    """Windows read naturally in messages."""
    assert Window(WindowKind.DAY).adjective == "daily"
    assert Window(WindowKind.ROLLING, 3600).adjective == "rolling 3600s"
    assert str(Window(WindowKind.ROLLING, 3600)) == "rolling 3600s"
    assert str(Window(WindowKind.LIFETIME)) == "lifetime"


_ROLLING_S = st.one_of(
    st.integers(min_value=1, max_value=366 * 86400), st.sampled_from([1, 59, 60, 61, 3600, 86400])
)
_MOMENTS = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=200, deadline=None)
@given(
    rolling_s=_ROLLING_S,
    spend=_MOMENTS,
    later=st.integers(min_value=0, max_value=400 * 86400),
    inside=st.integers(min_value=0, max_value=10**12),
)
def test_rolling_bucket_never_expires_early(
    rolling_s: int, spend: datetime, later: int, inside: int
) -> None:
    """Once a bucket is expired, the window has passed since every moment inside it."""
    window = Window(WindowKind.ROLLING, rolling_s)
    now = spend + timedelta(seconds=later, microseconds=later % 1_000_000)
    bucket = rolling_bucket(window, spend)
    if bucket < rolling_cutoff(window, now):
        # Any moment inside the bucket, including its very last microsecond.
        width_us = window.bucket_s * 1_000_000
        offset_us = inside % width_us
        bucket_start = datetime.fromtimestamp(bucket * window.bucket_s, tz=UTC)
        moment = bucket_start + timedelta(microseconds=offset_us)
        assert rolling_bucket(window, moment) == bucket
        assert now - moment >= timedelta(seconds=rolling_s)
        last = bucket_start + timedelta(microseconds=width_us - 1)
        assert now - last >= timedelta(seconds=rolling_s)


@settings(max_examples=200, deadline=None)
@given(rolling_s=_ROLLING_S, spend=_MOMENTS, later=st.integers(0, 400 * 86400))
def test_rolling_bucket_expires_once_window_has_passed_its_end(
    rolling_s: int, spend: datetime, later: int
) -> None:
    """A bucket expires exactly when its end is a full window old (no later than needed)."""
    window = Window(WindowKind.ROLLING, rolling_s)
    now = spend + timedelta(seconds=later)
    bucket = rolling_bucket(window, spend)
    bucket_end_s = (bucket + 1) * window.bucket_s
    expired = bucket < rolling_cutoff(window, now)
    assert expired == (epoch_s(now) - rolling_s >= bucket_end_s)
