"""One frozen Settings object, read once from ``TREASURER_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    """Where data lives and how the server listens. Units are in the names."""

    data_dir: Path = Path(".treasurer")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8420
    expiry_sweep_interval_s: float = 5.0
    #: HTTP worker processes; more than one uses more cores (each with its own writer).
    workers: int = 1

    @property
    def effective_database_url(self) -> str:
        """``TREASURER_DATABASE_URL`` or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'treasurer.db').resolve()}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        return cls(
            data_dir=Path(source.get("TREASURER_DATA_DIR", ".treasurer")),
            database_url=source.get("TREASURER_DATABASE_URL") or None,
            host=source.get("TREASURER_HOST", "127.0.0.1"),
            port=int(source.get("TREASURER_PORT", "8420")),
            workers=max(1, int(source.get("TREASURER_WORKERS", "1"))),
        )
