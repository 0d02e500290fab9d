"""The system clock (UTC, aware datetimes)."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """Reads the real time; the only place outside tests that does."""

    def now(self) -> datetime:
        return datetime.now(UTC)
