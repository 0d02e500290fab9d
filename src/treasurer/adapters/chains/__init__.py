"""Chain adapters: the networks Treasurer moves value on.

Public surface (the rest are private modules, split by noun):

- :class:`EvmChain` — any EVM network over a web3 provider; :meth:`EvmChain.over_rpc` for a
  JSON-RPC URL.
- ``evm_local.LocalEvm`` — the embedded ``evm-local`` chain (eth-tester) with a demo stablecoin
  and a faucet; import it from its module, so processes on real networks never load py-evm.
- :data:`NETWORKS`, :func:`evm_network`, :func:`custom_network` — named networks and chain ids.
- :class:`FeeSettings` — fee headroom and limits.
- Errors: :class:`ChainUnavailable`, :class:`ChainMisconfigured`, :class:`ChainRejected`,
  :class:`CallReverted`.

Why ``EvmChain`` and ``FeeSettings`` load lazily: web3 takes seconds to import, and a process
that only touches Solana (or only reads network names) should not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from treasurer.adapters.chains.evm_errors import (
    CallReverted,
    ChainMisconfigured,
    ChainRejected,
    ChainUnavailable,
)
from treasurer.adapters.chains.networks import (
    NETWORKS,
    EvmNetwork,
    custom_network,
    evm_network,
)

if TYPE_CHECKING:
    from treasurer.adapters.chains.evm import EvmChain
    from treasurer.adapters.chains.evm_tx import FeeSettings

_LAZY = {
    "EvmChain": "treasurer.adapters.chains.evm",
    "FeeSettings": "treasurer.adapters.chains.evm_tx",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "NETWORKS",
    "CallReverted",
    "ChainMisconfigured",
    "ChainRejected",
    "ChainUnavailable",
    "EvmChain",
    "EvmNetwork",
    "FeeSettings",
    "custom_network",
    "evm_network",
]
