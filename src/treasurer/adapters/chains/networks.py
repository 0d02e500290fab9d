"""Preconfigured EVM networks: a name people write, the chain id a node must answer with.

Why only names and ids: which RPC endpoint to use is deployment configuration (a provider key,
a self-hosted node), never something to hard-code here. A configured network is checked
against the node's ``eth_chainId`` before the first transaction, so a Sepolia name pointed at a
mainnet URL fails instead of spending real money. Any other chain works by giving its id
(:func:`custom_network`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from treasurer.domain.errors import InvalidRequest, NotFound

_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


@dataclass(frozen=True, slots=True)
class EvmNetwork:
    """One EVM chain: its name, chain id and native coin; ``testnet`` marks value-free chains."""

    name: str
    chain_id: int
    native_symbol: str = "ETH"
    native_decimals: int = 18
    testnet: bool = False


#: eth-tester's fixed chain id, which the embedded ``evm-local`` chain answers with.
EVM_LOCAL_CHAIN_ID: Final = 131277322940537
#: anvil's default chain id.
ANVIL_CHAIN_ID: Final = 31337

_ALL: Final = (
    EvmNetwork("ethereum", 1),
    EvmNetwork("base", 8453),
    EvmNetwork("arbitrum", 42161),
    EvmNetwork("optimism", 10),
    EvmNetwork("polygon", 137, native_symbol="POL"),
    EvmNetwork("sepolia", 11155111, testnet=True),
    EvmNetwork("base-sepolia", 84532, testnet=True),
    EvmNetwork("arbitrum-sepolia", 421614, testnet=True),
    EvmNetwork("optimism-sepolia", 11155420, testnet=True),
    EvmNetwork("polygon-amoy", 80002, native_symbol="POL", testnet=True),
    EvmNetwork("evm-local", EVM_LOCAL_CHAIN_ID, testnet=True),
    EvmNetwork("anvil", ANVIL_CHAIN_ID, testnet=True),
)

NETWORKS: Final[dict[str, EvmNetwork]] = {network.name: network for network in _ALL}
"""Every preconfigured network by name."""


def evm_network(name: str) -> EvmNetwork:
    """The preconfigured network called ``name``; :class:`NotFound` lists the known names."""
    try:
        return NETWORKS[name]
    except KeyError:
        known = ", ".join(sorted(NETWORKS))
        raise NotFound(
            f"no preconfigured EVM network {name!r}; known: {known} (or give a chain id)",
            field="network",
        ) from None


def custom_network(
    name: str, chain_id: int, *, native_symbol: str = "ETH", native_decimals: int = 18
) -> EvmNetwork:
    """A network that is not preconfigured. A preconfigured name must keep its own chain id."""
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"network name {name!r} must be lowercase letters, digits and '-' (at most 40)",
            field="network",
        )
    if chain_id <= 0 or chain_id >= 2**64:
        raise InvalidRequest(f"chain id {chain_id} is out of range", field="chain_id")
    known = NETWORKS.get(name)
    if known is not None and known.chain_id != chain_id:
        raise InvalidRequest(
            f"network {name!r} has chain id {known.chain_id}, not {chain_id}",
            field="chain_id",
        )
    return known or EvmNetwork(name, chain_id, native_symbol, native_decimals, testnet=False)
