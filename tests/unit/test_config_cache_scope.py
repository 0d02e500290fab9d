"""``ConfigCache.request_scope``: one config version check per decision request, no fewer.

A store stub counts the version reads. Inside a scope the first look at the config reads the
version and later looks reuse it; outside any scope every look reads it (so a change made by
another node is seen by the next request); scopes are per context, so two requests in flight
never share a memo; and an invalidation inside a scope drops the memo.
"""

from __future__ import annotations

import threading
from typing import Any

from treasurer.service.config_cache import ConfigCache, request_scope


class CountingStore:
    """Just what the cache calls: the version (counted) and the versioned config."""

    def __init__(self) -> None:
        self.version = 1
        self.version_reads = 0

    def config_version(self) -> int:
        self.version_reads += 1
        return self.version

    def load_config_versioned(self) -> tuple[int, Any]:
        return self.version, f"config v{self.version}"


def _cache() -> tuple[ConfigCache, CountingStore]:
    store = CountingStore()
    return ConfigCache(store), store  # type: ignore[arg-type]


def test_outside_a_scope_every_look_reads_the_version() -> None:
    cache, store = _cache()
    for _ in range(3):
        cache.versioned()
    assert store.version_reads == 3


def test_inside_a_scope_the_version_is_read_once() -> None:
    cache, store = _cache()
    with request_scope():
        first = cache.versioned()
        store.version = 2  # another node changes the config mid-request
        assert cache.versioned() == first
    assert store.version_reads == 1
    assert cache.versioned() == (2, "config v2")  # the next request sees it


def test_scopes_of_concurrent_requests_are_separate() -> None:
    cache, store = _cache()
    seen: list[tuple[int, Any]] = []
    ready, go = threading.Event(), threading.Event()

    def other_request() -> None:
        with request_scope():
            ready.set()
            go.wait(5)
            seen.append(cache.versioned())

    thread = threading.Thread(target=other_request)
    thread.start()
    ready.wait(5)
    with request_scope():
        assert cache.versioned() == (1, "config v1")
        store.version = 2
        go.set()
        thread.join(5)
    assert seen == [(2, "config v2")]


def test_invalidate_drops_the_memo_of_the_scope() -> None:
    cache, store = _cache()
    with request_scope():
        cache.versioned()
        store.version = 3
        cache.invalidate()
        assert cache.versioned() == (3, "config v3")
    assert store.version_reads == 2
