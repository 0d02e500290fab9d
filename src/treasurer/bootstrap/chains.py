"""The chains this node connects to, built from ``TREASURER_CHAINS``, and the dev faucet.

Embedded chains (``evm-local``: eth-tester; ``solana-local``: LiteSVM) run *inside* the
process that builds them. Their state lives in memory only: every restart starts from a fresh
chain with nothing but the demo contracts, so balances, transactions and nonces from before are
gone (the database still remembers the payments; their receipts then read ``dropped``). They are
for development and demos, never for value. Because the state is in one process's memory, the
HTTP app and the confirmer must share the very same objects, and several worker processes
cannot share them at all (``serve`` refuses ``TREASURER_WORKERS`` > 1 with embedded chains).

The demo tokens have the same address in every process, so an org file can name them: the EVM
demo stablecoin is the first contract eth-tester's first account deploys (nonce 0), and the
Solana demo mint's keypair derives from a fixed seed. :data:`EVM_DEMO_TOKEN` and
:data:`SOLANA_DEMO_MINT` are those addresses (tests check them against fresh chains).

RPC chains (``NAME=URL``) are :meth:`EvmChain.over_rpc` clients; each process builds its own.

Adapters are imported when first built: web3 and py-evm take seconds to import, and a node
with ``TREASURER_CHAINS=none`` should not pay for them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from treasurer.domain.config import OrgConfig
from treasurer.domain.errors import TreasurerError
from treasurer.domain.org import Custody, WalletStatus
from treasurer.service.chain_ports import Chain
from treasurer.settings import ChainSpec

if TYPE_CHECKING:
    from treasurer.adapters.chains.evm_local import LocalEvm
    from treasurer.adapters.chains.evm_nonces import NonceLedger
    from treasurer.adapters.chains.solana import SolanaLocal

log = logging.getLogger("treasurer.chains")

#: The demo stablecoin on ``evm-local`` ("Demo USD", DUSD, 6 decimals).
EVM_DEMO_TOKEN: Final = "0xF2E246BB76DF876Cef8b38ae84130F4F55De395b"  # noqa: S105 - an address
#: The demo stablecoin mint on ``solana-local`` (6 decimals).
SOLANA_DEMO_MINT: Final = "Aid5hxci3iWr1CWHaZ7vmfHP4Q9qFidmNbhXuGtiZHM5"
DEMO_TOKEN_SYMBOL: Final = "DUSD"  # noqa: S105 - a ticker
DEMO_TOKEN_DECIMALS: Final = 6

#: What the faucet gives each custodial wallet at start: gas money and demo tokens.
FAUCET_ETH_WEI: Final = 100 * 10**18
FAUCET_SOL_LAMPORTS: Final = 100 * 10**9
FAUCET_DEMO_TOKEN_UNITS: Final = 10_000 * 10**DEMO_TOKEN_DECIMALS


@dataclass
class NodeChains:
    """Every chain of this node by network name, and the embedded ones for their faucets."""

    chains: dict[str, Chain] = field(default_factory=dict)
    evm_local: LocalEvm | None = None
    solana_local: SolanaLocal | None = None

    @property
    def embedded(self) -> list[str]:
        """The embedded networks, which live in this process only."""
        found = [("evm-local", self.evm_local), ("solana-local", self.solana_local)]
        return [name for name, chain in found if chain is not None]


def build_chains(specs: Sequence[ChainSpec], nonce_ledger: NonceLedger | None = None) -> NodeChains:
    """Build the chain adapters of ``specs`` (no network calls: RPC ids are checked on use).

    ``nonce_ledger``: where RPC chains take their nonces when several nodes send from the same
    wallets (PostgreSQL deployments); embedded chains live in one process and need none.
    """
    node = NodeChains()
    for spec in specs:
        if spec.name == "evm-local":
            from treasurer.adapters.chains.evm_local import LocalEvm  # noqa: PLC0415

            node.evm_local = LocalEvm()
            node.chains[spec.name] = node.evm_local.chain
        elif spec.name == "solana-local":
            from treasurer.adapters.chains.solana import SolanaLocal  # noqa: PLC0415

            node.solana_local = SolanaLocal()
            node.chains[spec.name] = node.solana_local
        else:
            from treasurer.adapters.chains.evm import EvmChain  # noqa: PLC0415

            assert spec.rpc_url is not None and spec.chain_id is not None  # parse_chains did
            node.chains[spec.name] = EvmChain.over_rpc(
                spec.name, spec.rpc_url, chain_id=spec.chain_id, nonce_ledger=nonce_ledger
            )
    return node


def fund_dev_wallets(node: NodeChains, config: OrgConfig | None) -> list[str]:
    """Give every active custodial wallet on an embedded chain gas money and demo tokens.

    Embedded chains start empty on every start, so without this no demo payment could pay its
    fee. A wallet the faucet cannot fund (a malformed address) is logged and skipped: the rest
    of the node still works.
    """
    if config is None or not node.embedded:
        return []
    funded: dict[str, int] = {}
    for wallet in sorted(config.wallets.values(), key=lambda w: w.id):
        if wallet.custody is not Custody.LOCAL or wallet.status is not WalletStatus.ACTIVE:
            continue
        try:
            if wallet.chain == "evm-local" and node.evm_local is not None:
                node.evm_local.faucet(wallet.address, FAUCET_ETH_WEI, FAUCET_DEMO_TOKEN_UNITS)
            elif wallet.chain == "solana-local" and node.solana_local is not None:
                node.solana_local.airdrop(wallet.address, FAUCET_SOL_LAMPORTS)
                node.solana_local.mint_to(wallet.address, FAUCET_DEMO_TOKEN_UNITS)
            else:
                continue
        except TreasurerError as exc:
            log.warning("dev faucet: cannot fund wallet %s: %s", wallet.id, exc.message)
            continue
        funded[wallet.chain] = funded.get(wallet.chain, 0) + 1
    if not funded:
        return []
    where = ", ".join(f"{count} on {chain}" for chain, count in sorted(funded.items()))
    return [
        f"Dev faucet funded the custodial wallets ({where}) with 100 ETH or SOL and "
        f"10,000 {DEMO_TOKEN_SYMBOL} each. Embedded chains are dev chains: they hold no real "
        "value and reset when the server restarts."
    ]
