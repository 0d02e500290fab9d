"""The ``treasurer`` console entry point: the CLI wired to real adapters, and ``init``.

``init`` creates the data directory (owner-only), migrates, writes the first admin key to a
file only its owner can read, and prepares the key vault: a random passphrase file (0600)
unless ``TREASURER_VAULT_PASSPHRASE`` gives one, and the vault directory bound to it. On
``--demo`` it creates one EVM and one Solana key in the vault, applies the demo org with
custodial wallets at those addresses (:mod:`.demo`) and writes demo agent session tokens.
``serve`` lives in :mod:`.server`.

Configuration and start-up errors (a bad ``TREASURER_*`` value, a wrong vault passphrase) are
printed as one line with their code and exit with the CLI's exit code for their kind, never as
a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from treasurer import connect
from treasurer.adapters.sql.credential_store import SqlCredentialStore
from treasurer.adapters.yaml_files import dump_org_file, load_org_file
from treasurer.bootstrap import EmbeddedGovernance, open_governance
from treasurer.bootstrap.demo import (
    DEMO_AGENTS,
    EVM_WALLET,
    SOLANA_WALLET,
    custodial_demo_org,
    packaged_demo_org,
)
from treasurer.bootstrap.files import audit_signer, write_secret
from treasurer.domain.errors import NotFound, TreasurerError
from treasurer.interfaces.cli import output
from treasurer.interfaces.cli.app import Wiring, build_cli
from treasurer.service.auth_admin import CredentialAdmin
from treasurer.service.chain_ports import ChainFamily
from treasurer.service.credentials import create_admin_key
from treasurer.settings import Settings

if TYPE_CHECKING:
    from treasurer.adapters.vault import FileVault

__all__ = ["demo_org_file", "initialize", "local_url", "main"]

ADMIN_KEY_FILE = "admin.key"
DEMO_SESSIONS_FILE = "demo-sessions.json"
DEMO_SESSION_TTL_S = 30 * 86_400
T = TypeVar("T")


def demo_org_file() -> dict[str, object]:
    """The packaged example org (``treasurer/examples/org.yaml``), without custodial wallets."""
    return packaged_demo_org()


def initialize(settings: Settings, *, demo: bool) -> list[str]:
    """Create the data directory, migrate, write the first admin key, prepare the vault;
    on ``demo``, the demo org with custodial wallets and demo session tokens."""
    from treasurer.bootstrap.custody import prepare_vault  # noqa: PLC0415 - see _serve

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
            write_secret(key_file, token + "\n")
            lines.append(f"Admin key written to {key_file.resolve()} (owner-only; keep it safe).")
        else:
            lines.append(f"Admin key: {key_file.resolve()} (kept from an earlier init).")
        vault, vault_lines = prepare_vault(settings)
        lines.extend(vault_lines)
        with vault:
            if demo:
                lines.extend(_demo(gov, vault, settings))
    return lines


def _demo(gov: EmbeddedGovernance, vault: FileVault, settings: Settings) -> list[str]:
    """The demo org (only while no org is configured) and demo sessions (only once)."""
    lines: list[str] = []
    if gov.cache.peek() is None:
        evm = vault.create_key(ChainFamily.EVM)
        solana = vault.create_key(ChainFamily.SOLANA)
        result = gov.apply(custodial_demo_org(evm, solana), source="demo org", actor="init")
        lines.append(f"Demo organization applied ({len(result.plan.changes)} objects).")
        lines.append(
            f"Custodial demo wallets of procurement_bot: {EVM_WALLET} {evm} (evm-local), "
            f"{SOLANA_WALLET} {solana} (solana-local); their keys are in the vault."
        )
    sessions_file = settings.data_dir / DEMO_SESSIONS_FILE
    if not sessions_file.exists():
        admin = CredentialAdmin(SqlCredentialStore(gov.sql.db), gov.clock)
        tokens = {}
        for agent in DEMO_AGENTS:
            if agent in gov.cache.get().agents:
                _session, token = admin.create_session(agent, "demo", DEMO_SESSION_TTL_S, "init")
                tokens[agent] = token
        write_secret(sessions_file, json.dumps(tokens, indent=2) + "\n")
        lines.append(f"Demo agent session tokens written to {sessions_file.resolve()}.")
    return lines


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
    signer = audit_signer(settings.data_dir)
    return open_governance(settings.effective_database_url, audit_signer=signer)


def _serve(settings: Settings) -> None:
    """``treasurer serve``. The vault and the server load only for the commands that need
    them: eth-account alone takes over half a second to import, on every other command."""
    from treasurer.bootstrap.server import serve  # noqa: PLC0415

    serve(settings)


def _export_key(settings: Settings, address: str) -> str:
    from treasurer.bootstrap.custody import export_key  # noqa: PLC0415 - see _serve

    return export_key(settings, address)


def _reported(action: Callable[[], T]) -> T:
    """Run ``action``; a Treasurer error becomes one printed line and its exit code."""
    try:
        return action()
    except TreasurerError as exc:
        raise SystemExit(output.fail(exc)) from None


def main() -> None:
    """Console entry point."""
    settings = _reported(Settings.from_env)
    wiring = Wiring(
        open_backend=lambda: _open_local(settings),
        load_org_file=load_org_file,
        dump_org_file=dump_org_file,
        init=lambda demo: _reported(lambda: initialize(settings, demo=demo)),
        serve=lambda: _reported(lambda: _serve(settings)),
        connect=connect,
        default_url=local_url(settings),
        default_key_file=settings.data_dir / ADMIN_KEY_FILE,
        export_key=lambda address: _export_key(settings, address),
    )
    build_cli(wiring)()


if __name__ == "__main__":
    main()
