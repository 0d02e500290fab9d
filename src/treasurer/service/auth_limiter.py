"""Counting failed authentications per source, to stop token guessing.

An in-memory sliding window per source (client address): after ``max_failures`` failures
within ``window_s`` seconds, every further request from that source is refused with
``rate_limited`` until the oldest failure leaves the window. In memory on purpose: the point is
to make guessing slow on each node cheaply, not to be exact across nodes, and a restart that
forgets the counts only helps an attacker for one window. Memory is bounded: at most
``max_sources`` sources are tracked, the least recently failing are forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from datetime import datetime

from treasurer.domain.errors import RateLimited
from treasurer.service.ports import Clock

DEFAULT_MAX_FAILURES = 10
DEFAULT_WINDOW_S = 60.0
DEFAULT_MAX_SOURCES = 10_000


class SourceBlocked(RateLimited):
    """Too many failed authentications from one source; ``retry_after_s`` says how long."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FailureLimiter:
    """Sliding-window failure counts per source; thread-safe."""

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int = DEFAULT_MAX_FAILURES,
        window_s: float = DEFAULT_WINDOW_S,
        max_sources: int = DEFAULT_MAX_SOURCES,
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window_s = window_s
        self._max_sources = max_sources
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, source: str, now: datetime) -> deque[datetime]:
        times = self._failures.get(source)
        if times is None:
            return deque(maxlen=self.max_failures)
        while times and (now - times[0]).total_seconds() >= self.window_s:
            times.popleft()
        if not times:
            del self._failures[source]
        return times

    def retry_after_s(self, source: str) -> int | None:
        """Seconds until ``source`` may try again, or None when it is not blocked."""
        now = self._clock.now()
        with self._lock:
            times = self._recent(source, now)
            if len(times) < self.max_failures:
                return None
            remaining = self.window_s - (now - times[0]).total_seconds()
        return max(1, int(remaining + 0.999))

    def check(self, source: str) -> None:
        """Raise :class:`SourceBlocked` when ``source`` has failed too often lately."""
        retry = self.retry_after_s(source)
        if retry is not None:
            raise SourceBlocked(
                f"too many failed authentications from this address; retry in {retry} s",
                retry_after_s=retry,
            )

    def record_failure(self, source: str) -> bool:
        """Count one failure; True when this failure is the one that blocks the source."""
        now = self._clock.now()
        with self._lock:
            times = self._recent(source, now)
            times.append(now)
            self._failures[source] = times
            self._failures.move_to_end(source)
            while len(self._failures) > self._max_sources:
                self._failures.popitem(last=False)
            return len(times) == self.max_failures
