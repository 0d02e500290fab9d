"""The ``treasurer`` console entry point: the CLI wired to real adapters, init and serve.

``init`` creates the data directory (owner-only), migrates, writes the first admin key to a
file only its owner can read, and on ``--demo`` applies the demo org and writes demo agent
session tokens beside it. ``serve`` runs the HTTP API under uvicorn with a background sweeper
that expires stale authorizations.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from treasurer import connect
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.yaml_files import dump_org_file, load_org_file, load_org_text
from treasurer.bootstrap import EmbeddedGovernance, build_app, open_governance
from treasurer.domain.errors import NotFound
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.credentials import create_admin_key
from treasurer.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

ADMIN_KEY_FILE = "admin.key"
DEMO_SESSIONS_FILE = "demo-sessions.json"
#: Demo agents that get a session token at ``init --demo`` (30 days).
DEMO_AGENTS = ("procurement_bot", "infra_bot", "ads_bot")
DEMO_SESSION_TTL_S = 30 * 86_400


def demo_org_file() -> dict[str, object]:
    """The packaged example org (``treasurer/examples/org.yaml``)."""
    text = resources.files("treasurer").joinpath("examples/org.yaml").read_text("utf-8")
    return load_org_text(text, source="examples/org.yaml")


def _write_secret(path: Path, text: str) -> None:
    """Create ``path`` readable by its owner only (0600) and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)


def initialize(settings: Settings, *, demo: bool) -> list[str]:
    """Create the data directory, migrate, write the first admin key; demo org on request."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    lines = [f"Data directory: {settings.data_dir.resolve()}"]
    with open_governance(settings.effective_database_url) as gov:
        lines.append(f"Database: {settings.effective_database_url}")
        key_file = settings.data_dir / ADMIN_KEY_FILE
        if not key_file.exists():
            credentials = SqlCredentialStore(gov.sql.db)
            _key, token = create_admin_key(
                credentials, "initial admin", "admin", now=gov.clock.now(), actor="init"
            )
            _write_secret(key_file, token + "\n")
            lines.append(f"Admin key written to {key_file.resolve()} (owner-only; keep it safe).")
        else:
            lines.append(f"Admin key: {key_file.resolve()} (kept from an earlier init).")
        if demo:
            lines.extend(_demo(gov, settings))
    return lines


def _demo(gov: EmbeddedGovernance, settings: Settings) -> list[str]:
    lines: list[str] = []
    if gov.cache.peek() is None:
        result = gov.apply(demo_org_file(), source="demo org", actor="init")
        lines.append(f"Demo organization applied ({len(result.plan.changes)} objects).")
    sessions_file = settings.data_dir / DEMO_SESSIONS_FILE
    if not sessions_file.exists():
        admin = CredentialAdmin(SqlCredentialStore(gov.sql.db), gov.clock)
        tokens = {}
        for agent in DEMO_AGENTS:
            if agent in gov.cache.get().agents:
                _session, token = admin.create_session(agent, "demo", DEMO_SESSION_TTL_S, "init")
                tokens[agent] = token
        _write_secret(sessions_file, json.dumps(tokens, indent=2) + "\n")
        lines.append(f"Demo agent session tokens written to {sessions_file.resolve()}.")
    return lines


def _sweep_forever(gov: EmbeddedGovernance, interval_s: float, stop: threading.Event) -> None:
    """Release authorizations past their expiry, every ``interval_s`` seconds."""
    while not stop.wait(interval_s):
        try:
            gov.expire_stale()
        except Exception:  # a failed sweep is retried on the next tick
            logging.getLogger("treasurer.sweeper").exception("expiry sweep failed")


def serve(settings: Settings) -> None:
    """Run the HTTP API on ``settings.host:settings.port`` until interrupted.

    With ``TREASURER_WORKERS`` > 1, uvicorn runs that many worker processes, each building
    its own app (:func:`worker_app`); this process then only sweeps expired authorizations.
    """
    import uvicorn  # noqa: PLC0415 - only the server needs it

    governance = open_governance(settings.effective_database_url)  # migrates once, here
    stop = threading.Event()
    sweeper = threading.Thread(
        target=_sweep_forever,
        args=(governance, settings.expiry_sweep_interval_s, stop),
        name="treasurer-expiry-sweeper",
        daemon=True,
    )
    sweeper.start()
    workers = f" ({settings.workers} workers)" if settings.workers > 1 else ""
    print(f"Treasurer listening on http://{settings.host}:{settings.port}{workers}", flush=True)
    options: dict[str, object] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning",
        "access_log": False,
    }
    try:
        if settings.workers > 1:
            uvicorn.run(
                "treasurer.bootstrap.cli:worker_app",
                factory=True,
                workers=settings.workers,
                **options,  # type: ignore[arg-type]
            )
        else:
            uvicorn.run(build_app(settings.effective_database_url), **options)  # type: ignore[arg-type]
    finally:
        stop.set()
        governance.close()


def worker_app() -> FastAPI:
    """The app of one worker process (settings from the environment, like the parent's)."""
    return build_app(Settings.from_env().effective_database_url)


def local_url(settings: Settings) -> str:
    """Where ``treasurer serve`` listens, as a client reaches it (a wildcard host is local)."""
    host = "127.0.0.1" if settings.host in ("", "0.0.0.0", "::") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def _open_local(settings: Settings) -> EmbeddedGovernance:
    """The embedded backend of the data directory; a clear error before ``init``."""
    if settings.database_url is None and not (settings.data_dir / "treasurer.db").exists():
        raise NotFound(
            f"no Treasurer data directory at {settings.data_dir.resolve()}; "
            "run `treasurer init` first (or set TREASURER_DATA_DIR / TREASURER_DATABASE_URL)",
            code="not_initialized",
        )
    return open_governance(settings.effective_database_url)


def main() -> None:
    """Console entry point."""
    settings = Settings.from_env()
    wiring = Wiring(
        open_backend=lambda: _open_local(settings),
        load_org_file=load_org_file,
        dump_org_file=dump_org_file,
        init=lambda demo: initialize(settings, demo=demo),
        serve=lambda: serve(settings),
        connect=connect,
        default_url=local_url(settings),
        default_key_file=settings.data_dir / ADMIN_KEY_FILE,
    )
    build_cli(wiring)()


if __name__ == "__main__":
    main()
