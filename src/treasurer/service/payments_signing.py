"""The last checks and the signing hand-off of a payment.

:func:`frozen_reason` is the freeze re-check made just before signing: a decision may be a few
milliseconds old, and an admin who froze an agent in between must win (kill switch).
:class:`RecordingSigner` wraps the vault's signer so the pipeline keeps the signed bytes that
the chain adapter broadcasts (for re-broadcast after a restart) without the adapter exposing
them.
"""

from __future__ import annotations

from treasurer.domain.config import OrgConfig
from treasurer.domain.org import AgentStatus, Scope, ScopeKind, WalletStatus
from treasurer.service.chain_ports import ChainFamily, Signer


def frozen_reason(config: OrgConfig, agent_id: str, wallet_id: str) -> str | None:
    """Why the agent or wallet may not sign now (any frozen scope over them), else None."""
    agent = config.agents.get(agent_id)
    wallet = config.wallets.get(wallet_id)
    if agent is None or agent.status is not AgentStatus.ACTIVE:
        return f"agent {agent_id} is {'gone' if agent is None else agent.status.value}"
    if wallet is None or wallet.status is not WalletStatus.ACTIVE:
        return f"wallet {wallet_id} is {'gone' if wallet is None else wallet.status.value}"
    scopes = [Scope(ScopeKind.WALLET, wallet_id), Scope(ScopeKind.AGENT, agent_id)]
    scopes += [Scope(ScopeKind.DEPARTMENT, d) for d in config.departments_of(agent)]
    scopes.append(Scope(ScopeKind.ORG, config.org.id))
    for scope in scopes:
        if scope in config.frozen:
            return f"{scope} is frozen"
    return None


class RecordingSigner:
    """A :class:`Signer` that remembers the last EVM transaction it signed."""

    def __init__(self, inner: Signer) -> None:
        self._inner = inner
        self.raw: bytes | None = None

    @property
    def address(self) -> str:
        return self._inner.address

    @property
    def family(self) -> ChainFamily:
        return self._inner.family

    def sign_evm_transaction(self, transaction: dict[str, object]) -> bytes:
        raw = self._inner.sign_evm_transaction(transaction)
        self.raw = raw  # the last one wins: a nonce retry signs again, and that one is sent
        return raw

    def sign_message(self, message: bytes) -> bytes:
        return self._inner.sign_message(message)

    @property
    def raw_hex(self) -> str | None:
        return None if self.raw is None else "0x" + self.raw.hex()
