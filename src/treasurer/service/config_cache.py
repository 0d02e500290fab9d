"""The org config, cached in memory and reloaded the moment it changes.

Decisions read the whole config on every call; reading it from the database each time would
dominate the hot path. Every config write bumps ``config_version`` in the same transaction, so
checking that one integer before a decision is enough to be exact across processes and nodes.

Within one request that only decides (an authorization, a dry run), the version is read once:
:func:`request_scope` memoizes the first check for the rest of the request. The check still
happens after the request arrived, so a change committed before the request is always seen;
the route just no longer pays one database round trip per look at the config (three for an
authorization over HTTP before the scope: the agent check, the wallet check, the decision).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import NotFound
from treasurer.service.ports import Store

#: Per request: the snapshot each cache returned first (by ``id`` of the cache).
_REQUEST: ContextVar[dict[int, tuple[int, OrgConfig | None]] | None] = ContextVar(
    "treasurer_config_request", default=None
)


@contextmanager
def request_scope() -> Iterator[None]:
    """Check the config version at most once in this context (one decision request).

    Only for work that writes no configuration: a write inside the scope would be followed
    by reads of the memoized, older snapshot. Contexts are copied into worker threads, so a
    scope opened by ASGI middleware covers the route's thread too.
    """
    token = _REQUEST.set({})
    try:
        yield
    finally:
        _REQUEST.reset(token)


class ConfigCache:
    """Holds the last loaded config with its version; thread-safe reload."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._snapshot: tuple[int, OrgConfig | None] = (-1, None)
        self._lock = threading.Lock()

    def versioned(self) -> tuple[int, OrgConfig | None]:
        """The current config (None before the first apply) and the version it was read at."""
        memo = _REQUEST.get()
        if memo is not None and (seen := memo.get(id(self))) is not None:
            return seen
        snapshot = self._fresh()
        if memo is not None:
            memo[id(self)] = snapshot
        return snapshot

    def _fresh(self) -> tuple[int, OrgConfig | None]:
        version = self._store.config_version()
        snapshot = self._snapshot
        if version != snapshot[0]:
            with self._lock:
                snapshot = self._snapshot
                if version != snapshot[0]:
                    snapshot = self._store.load_config_versioned()
                    self._snapshot = snapshot
        return snapshot

    def get(self) -> OrgConfig:
        """The current config; raises NotFound when no org file was applied yet."""
        config = self.versioned()[1]
        if config is None:
            raise NotFound(
                "no organization is configured yet; apply an org file first "
                "(treasurer apply -f org.yaml)",
                code="org_not_configured",
            )
        return config

    def peek(self) -> OrgConfig | None:
        """The current config or None (for apply, which may create the first one)."""
        return self.versioned()[1]

    def invalidate(self) -> None:
        memo = _REQUEST.get()
        if memo is not None:
            memo.pop(id(self), None)
        with self._lock:
            self._snapshot = (-1, None)
