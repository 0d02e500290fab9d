"""Reading a vendor hook's configuration file: ``fireblocks.yaml`` in the data directory.

```yaml
cosigner_public_key: cosigner.pub.pem   # the Co-Signer's RSA public key (PEM)
callback_private_key: callback.key.pem  # this handler's RSA private key (PEM, unencrypted)
wallets:                                # vault account [":" asset] -> Treasurer wallet id
  "0": pb-fireblocks
  "3:USDC": ops-usdc
assets:                                 # Fireblocks asset id -> Treasurer asset (optional)
  USDC: base:USDC
```

Key paths are relative to the file. The private key file must not be readable by others
(like the vault's files): a callback signed with it approves spends.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from treasurer.adapters.vendors.fireblocks import FireblocksConfig
from treasurer.domain.errors import InvalidRequest

_KEYS = frozenset({"cosigner_public_key", "callback_private_key", "wallets", "assets"})


def _invalid(path: Path, problem: str) -> InvalidRequest:
    return InvalidRequest(f"{path}: {problem}", field=str(path), code="vendor_config_invalid")


def _mapping(path: Path, data: dict[str, Any], name: str) -> dict[str, str]:
    value = data.get(name) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str | int) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(path, f'{name} must map names to ids (quote vault numbers: "0")')
    return {str(k): v for k, v in value.items()}


def _read_key(path: Path, name: str, value: object, *, private: bool) -> bytes:
    if not isinstance(value, str) or not value:
        raise _invalid(path, f"{name} must name a PEM file")
    key_path = (path.parent / value).resolve()
    try:
        if private and key_path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise _invalid(path, f"{key_path} is readable by others; chmod 600 it")
        return key_path.read_bytes()
    except OSError as exc:
        raise _invalid(path, f"cannot read {name} {key_path}: {exc.strerror}") from None


def load_fireblocks_config(path: Path) -> FireblocksConfig:
    """The Fireblocks handler configuration in ``path`` (format in the module docstring)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise _invalid(path, f"cannot read it: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid(path, "the top level must be a mapping")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise _invalid(path, f"unknown key(s) {', '.join(unknown)}; known: {sorted(_KEYS)}")
    public = _read_key(path, "cosigner_public_key", data.get("cosigner_public_key"), private=False)
    private = _read_key(
        path, "callback_private_key", data.get("callback_private_key"), private=True
    )
    wallets = _mapping(path, data, "wallets")
    if not wallets:
        raise _invalid(path, "wallets is empty: map at least one vault account to a wallet")
    try:
        return FireblocksConfig.from_pem(public, private, wallets, _mapping(path, data, "assets"))
    except ValueError as exc:
        raise _invalid(path, str(exc)) from None
