"""Composing vendor pre-sign hooks: which vendors' callbacks this server answers.

A hook is configured by a file in the data directory: ``fireblocks.yaml`` turns on the
Fireblocks API Co-Signer callback handler (``POST /v1/vendors/fireblocks/v2/tx_sign_request``;
format in :mod:`treasurer.adapters.vendors.config`). Without the file the route answers 404
``vendor_not_configured``. A file that is present but wrong stops the start, with the reason:
a co-signer left without its handler would fail every signature without saying why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

from treasurer.adapters.vendors.config import load_fireblocks_config
from treasurer.adapters.vendors.fireblocks import VENDOR as FIREBLOCKS
from treasurer.adapters.vendors.fireblocks import FireblocksCallback
from treasurer.service.admin import Governance
from treasurer.service.vendor_hooks import PreSignGate, VendorHook

if TYPE_CHECKING:
    from fastapi import FastAPI

FIREBLOCKS_FILE: Final = "fireblocks.yaml"


def vendor_hooks(governance: Governance, data_dir: Path) -> dict[str, VendorHook]:
    """The hooks configured in ``data_dir``, deciding through ``governance``."""
    hooks: dict[str, VendorHook] = {}
    path = data_dir / FIREBLOCKS_FILE
    if path.exists():
        config = load_fireblocks_config(path)
        hooks[FIREBLOCKS] = FireblocksCallback(PreSignGate(governance), config, governance.clock)
    return hooks


def install_vendor_hooks(
    app: FastAPI, data_dir: Path, hooks: Mapping[str, VendorHook] | None = None
) -> None:
    """Give ``app`` its vendor hooks (``hooks``, or those configured in ``data_dir``), over
    the app's own governance."""
    if hooks is None:
        hooks = vendor_hooks(app.state.treasurer.governance, data_dir)
    app.state.vendor_hooks = dict(hooks)
