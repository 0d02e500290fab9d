"""The org config, cached in memory and reloaded the moment it changes.

Decisions read the whole config on every call; reading it from the database each time would
dominate the hot path. Every config write bumps ``config_version`` in the same transaction, so
checking that one integer before a decision is enough to be exact across processes and nodes.
"""

from __future__ import annotations

import threading

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import NotFound
from treasurer.service.ports import Store


class ConfigCache:
    """Holds the last loaded config with its version; thread-safe reload."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._snapshot: tuple[int, OrgConfig | None] = (-1, None)
        self._lock = threading.Lock()

    def versioned(self) -> tuple[int, OrgConfig | None]:
        """The current config (None before the first apply) and the version it was read at."""
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
        with self._lock:
            self._snapshot = (-1, None)
