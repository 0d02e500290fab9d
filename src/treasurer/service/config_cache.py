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
    """Holds the last loaded config and its version; thread-safe reload."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._version = -1
        self._config: OrgConfig | None = None
        self._lock = threading.Lock()

    def get(self) -> OrgConfig:
        """The current config; raises NotFound when no org file was applied yet."""
        version = self._store.config_version()
        if version != self._version:
            with self._lock:
                if version != self._version:
                    self._version, self._config = self._store.load_config_versioned()
        if self._config is None:
            raise NotFound(
                "no organization is configured yet; apply an org file first "
                "(treasurer apply -f org.yaml)",
                code="org_not_configured",
            )
        return self._config

    def peek(self) -> OrgConfig | None:
        """The current config or None (for apply, which may create the first one)."""
        try:
            return self.get()
        except NotFound:
            return None

    def invalidate(self) -> None:
        with self._lock:
            self._version = -1
