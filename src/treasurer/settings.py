"""One frozen Settings object, read once from ``TREASURER_*`` environment variables.

A bad value fails here, at start, with :class:`SettingsInvalid`: the message names the variable
and says what to write instead, so an operator never has to read a traceback to find a typo.

``TREASURER_CHAINS`` lists the networks this node connects to, separated by commas:

- ``evm-local``, ``solana-local``: the embedded dev chains (in-process, in memory, reset on
  every restart);
- ``NAME=URL``: a preconfigured EVM network over JSON-RPC (``base=https://mainnet.base.org``,
  ``anvil=http://127.0.0.1:8545``); its chain id is known and checked against the node;
- ``NAME:CHAIN_ID=URL``: any other EVM network (``mychain:31338=http://10.0.0.5:8545``). The
  id is required rather than read from the node, so a URL pointing at the wrong chain fails
  instead of signing there;
- ``none``: no chain connections at all (governance mode only).

Unset or empty means ``evm-local,solana-local``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from treasurer.adapters.chains.networks import NETWORKS
from treasurer.domain.errors import InvalidRequest

#: The embedded dev chains: built in process, their state lives in memory only.
EMBEDDED_CHAINS: Final = ("evm-local", "solana-local")
CHAINS_ENV: Final = "TREASURER_CHAINS"
_CHAINS_EXAMPLE: Final = "evm-local,solana-local,base=https://mainnet.base.org"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
#: scrypt's cost parameter must be a power of two; 2**20 needs 1 GiB per derivation.
_MAX_SCRYPT_N: Final = 2**20
_MAX_CONFIRM_INTERVAL_S: Final = 3600.0


class SettingsInvalid(InvalidRequest):
    """A ``TREASURER_*`` variable holds a value Treasurer cannot use; ``field`` names it."""

    code = "settings_invalid"


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """One network of ``TREASURER_CHAINS``: embedded (no URL) or an EVM network over RPC.

    The URL is kept out of ``repr``: provider URLs often carry an API key.
    """

    name: str
    rpc_url: str | None = field(default=None, repr=False)
    chain_id: int | None = None

    @property
    def embedded(self) -> bool:
        return self.rpc_url is None


DEFAULT_CHAINS: Final = tuple(ChainSpec(name) for name in EMBEDDED_CHAINS)


@dataclass(frozen=True, slots=True)
class Settings:
    """Where data lives, how the server listens and what it connects to. Units in the names."""

    data_dir: Path = Path(".treasurer")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8420
    expiry_sweep_interval_s: float = 5.0
    #: HTTP worker processes; more than one uses more cores (each with its own writer).
    workers: int = 1
    #: Networks this node connects to (``TREASURER_CHAINS``).
    chains: tuple[ChainSpec, ...] = DEFAULT_CHAINS
    #: ``TREASURER_VAULT_PASSPHRASE``; wins over any passphrase file. Never shown in ``repr``.
    vault_passphrase: str | None = field(default=None, repr=False)
    #: ``TREASURER_VAULT_PASSPHRASE_FILE``; default ``<data_dir>/vault.passphrase``.
    vault_passphrase_file: Path | None = None
    #: scrypt cost of key files written from now on; None = the vault's default (2**18).
    #: Lower it only for tests: it is what makes a stolen key file expensive to attack.
    vault_scrypt_n: int | None = None
    #: How often ``serve`` reads the receipts of broadcast payments.
    confirm_interval_s: float = 0.5

    @property
    def effective_database_url(self) -> str:
        """``TREASURER_DATABASE_URL`` or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'treasurer.db').resolve()}"

    @property
    def vault_dir(self) -> Path:
        """The key vault: one encrypted file per custodial key."""
        return self.data_dir / "vault"

    @property
    def effective_vault_passphrase_file(self) -> Path:
        return self.vault_passphrase_file or self.data_dir / "vault.passphrase"

    @property
    def embedded_chains(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.chains if spec.embedded)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every setting; :class:`SettingsInvalid` names the first bad variable."""
        source = os.environ if env is None else env
        passphrase_file = source.get("TREASURER_VAULT_PASSPHRASE_FILE", "")
        scrypt_n = source.get("TREASURER_VAULT_SCRYPT_N", "")
        return cls(
            data_dir=Path(source.get("TREASURER_DATA_DIR", "") or ".treasurer"),
            database_url=source.get("TREASURER_DATABASE_URL") or None,
            host=source.get("TREASURER_HOST", "127.0.0.1"),
            port=_int(source, "TREASURER_PORT", 8420, 0, 65535),
            workers=max(1, _int(source, "TREASURER_WORKERS", 1, 0, 1024)),
            chains=parse_chains(source.get(CHAINS_ENV, "")),
            vault_passphrase=source.get("TREASURER_VAULT_PASSPHRASE") or None,
            vault_passphrase_file=Path(passphrase_file) if passphrase_file else None,
            vault_scrypt_n=_scrypt_n(scrypt_n) if scrypt_n else None,
            confirm_interval_s=_seconds(source, "TREASURER_CONFIRM_INTERVAL_S", 0.5),
        )


def parse_chains(value: str) -> tuple[ChainSpec, ...]:
    """``TREASURER_CHAINS`` as chain specs (syntax in the module docstring)."""
    text = value.strip()
    if not text:
        return DEFAULT_CHAINS
    if text.lower() == "none":
        return ()
    specs: list[ChainSpec] = []
    for entry in text.split(","):
        spec = _chain_entry(entry.strip())
        if any(seen.name == spec.name for seen in specs):
            raise _chains_error(f"{spec.name!r} is listed twice; list each network once")
        specs.append(spec)
    return tuple(specs)


def _chain_entry(entry: str) -> ChainSpec:
    if not entry:
        raise _chains_error("an entry is empty; separate networks with single commas")
    left, has_url, url = entry.partition("=")
    name, has_id, id_text = left.strip().partition(":")
    if not _NAME.fullmatch(name):
        raise _chains_error(
            f"{name!r} is not a network name (lowercase letters, digits and '-', at most 40)"
        )
    chain_id = _chain_id(name, id_text) if has_id else None
    if name in EMBEDDED_CHAINS:
        if has_url or has_id:
            raise _chains_error(
                f"{name} is an embedded chain (it runs inside Treasurer): write just {name!r}, "
                "without a URL or chain id"
            )
        return ChainSpec(name)
    if name.startswith("solana"):
        raise _chains_error(
            f"{name!r}: Solana over RPC is not supported yet; the embedded solana-local is"
        )
    if not has_url:
        hint = f"{name}=https://NODE" if name in NETWORKS else f"{name}:CHAIN_ID=https://NODE"
        raise _chains_error(f"{name} needs an RPC URL (write {hint})")
    url = url.strip()
    if not re.fullmatch(r"https?://\S+", url):
        raise _chains_error(f"the RPC URL of {name} must start with http:// or https://")
    known = NETWORKS.get(name)
    if known is None and chain_id is None:
        listed = ", ".join(sorted(n for n in NETWORKS if n not in EMBEDDED_CHAINS))
        raise _chains_error(
            f"{name} is not a preconfigured network (those are: {listed}); give its chain id "
            f"as {name}:CHAIN_ID=URL"
        )
    if known is not None and chain_id is not None and chain_id != known.chain_id:
        raise _chains_error(
            f"{name} has chain id {known.chain_id}, not {chain_id}; leave the id out for a "
            "preconfigured network, or use another name for another chain"
        )
    return ChainSpec(name, url, known.chain_id if known is not None else chain_id)


def _chain_id(name: str, text: str) -> int:
    try:
        chain_id = int(text.strip())
    except ValueError:
        chain_id = 0
    if not 0 < chain_id < 2**64:
        raise _chains_error(f"the chain id of {name} must be a positive whole number, not {text!r}")
    return chain_id


def _chains_error(problem: str) -> SettingsInvalid:
    return SettingsInvalid(
        f"{CHAINS_ENV}: {problem}. Example: {CHAINS_ENV}={_CHAINS_EXAMPLE} "
        f"(NAME:CHAIN_ID=URL for other EVM chains, 'none' for no chains)",
        field=CHAINS_ENV,
    )


def _int(source: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = source.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise SettingsInvalid(
            f"{name}: {text!r} is not a whole number from {low} to {high}", field=name
        )
    return value


def _seconds(source: Mapping[str, str], name: str, default: float) -> float:
    text = source.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= _MAX_CONFIRM_INTERVAL_S:  # also refuses nan
        raise SettingsInvalid(
            f"{name}: {text!r} is not a number of seconds above 0 and at most "
            f"{_MAX_CONFIRM_INTERVAL_S:g} (e.g. 0.5)",
            field=name,
        )
    return value


def _scrypt_n(text: str) -> int:
    name = "TREASURER_VAULT_SCRYPT_N"
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 2 or value & (value - 1) or value > _MAX_SCRYPT_N:
        raise SettingsInvalid(
            f"{name}: {text!r} is not a power of two from 2 to {_MAX_SCRYPT_N}; leave it unset "
            "for the safe default (it is lowered only for tests)",
            field=name,
        )
    return value
