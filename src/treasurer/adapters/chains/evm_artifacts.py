"""Compiled contracts shipped with the package (see ``scripts/compile_contracts.sh``).

Why committed artifacts: the runtime and the test suite deploy the demo token without a
Solidity compiler; only the compile script needs solc. Each artifact records the SHA-256 of its
source, so a test can tell when the two drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

DEMO_STABLECOIN: Final = "DemoStablecoin"
REVERTER: Final = "Reverter"


@dataclass(frozen=True, slots=True)
class ContractArtifact:
    """ABI and creation bytecode of one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    source_sha256: str
    evm_version: str


@cache
def load_artifact(name: str) -> ContractArtifact:
    """Read ``contracts/<name>.json`` from the installed package."""
    folder = resources.files("treasurer.adapters.chains").joinpath("contracts")
    data = json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8"))
    return ContractArtifact(
        name=data["contractName"],
        abi=data["abi"],
        bytecode=data["bytecode"],
        source_sha256=data["sourceSha256"],
        evm_version=data["evmVersion"],
    )
